"""The docs' commands work as they are: ``hface server NAME:app``, run in examples/frameworks.

One process per framework, as docs/frameworks/*.rst say to start it (with
the test certificate in place of the development one, and a free port).
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import httpx
import pytest

from tests.helpers.certs import TLSFiles
from tests.helpers.peers import free_port
from tests.test_cli.test_server_options import hface_process
from tests.test_frameworks.apps import EXAMPLES


@pytest.mark.slow  # a process each, with its framework to import: a few seconds
@pytest.mark.parametrize(
    "module", ["fastapi_app", "starlette_app", "quart_app", "litestar_app", "django_app"]
)
def test_hface_server_serves_the_example(module: str, tmp_path: Path, tls_files: TLSFiles) -> None:
    env = {
        **os.environ,
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "HFACE_DJANGO_DB": str(tmp_path / "db.sqlite3"),  # not touched by /items
        "PYTHONDONTWRITEBYTECODE": "1",  # no __pycache__ in examples/
    }
    port = free_port()
    args = ["server", f"{module}:app", f"https://127.0.0.1:{port}", "--no-access-log"]
    args += ["--cert", tls_files.server_cert_file, "--key", tls_files.server_key_file]
    with hface_process(args, env=env, port=port, log_file=tmp_path / "log", cwd=EXAMPLES) as server:
        verify = ssl.create_default_context(cafile=tls_files.ca_file)
        with httpx.Client(verify=verify, http2=True) as client:
            response = client.get(f"https://localhost:{port}/items?name=x")
        assert response.status_code == 200, server.output()
        assert response.json()["name"] == "x"
        assert response.json()["http_version"] == "2"
        assert server.stop() == 0, server.output()
