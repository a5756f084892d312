"""The six-task scripts (``examples/six_tasks.py`` and its httpx twin) run and agree.

Both run as they are, in a directory holding the ``certs/`` they read,
against hface's ASGI server serving :mod:`.api_app`; they must print the
same, and hface's must be no longer than httpx's (lines neither blank nor
comments, docstring included).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import anyio
import pytest

from hface.common import ServerTLSConfig
from hface.server import ASGIServer
from tests.helpers.certs import TLSFiles
from tests.test_server.conftest import running

from .api_app import app

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _code_lines(path: Path) -> int:
    lines = [line.strip() for line in path.read_text().splitlines()]
    return sum(1 for line in lines if line and not line.startswith("#"))


def test_hface_is_no_longer_than_httpx() -> None:
    hface_lines = _code_lines(EXAMPLES / "six_tasks.py")
    assert hface_lines <= _code_lines(EXAMPLES / "six_tasks_httpx.py")


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_both_scripts_print_the_same(
    tmp_path: Path, tls_files: TLSFiles, server_tls_config: ServerTLSConfig
) -> None:
    (tmp_path / "certs").mkdir()
    shutil.copy(tls_files.ca_file, tmp_path / "certs" / "cacert.pem")
    server = ASGIServer(app)
    server.tls_config = server_tls_config
    outputs = []
    async with running(server) as (_host, port):
        base = f"https://localhost:{port}"
        for script in ("six_tasks.py", "six_tasks_httpx.py"):
            argv = [sys.executable, str(EXAMPLES / script), base]
            with anyio.fail_after(60):
                result = await anyio.run_process(argv, cwd=tmp_path, check=False)
            assert result.returncode == 0, result.stderr.decode()
            outputs.append(result.stdout.decode())
            assert (tmp_path / "download.bin").stat().st_size == 1_000_000
            (tmp_path / "download.bin").unlink()
    hface_output, httpx_output = outputs
    assert hface_output == httpx_output
    assert hface_output.splitlines() == [
        "{'q': ['hface']}",
        '{"name":"hface"}',
        "1000000",
        str([str(n) for n in range(20)]),
        f"200 {base}/get",
        "200 {'user': 'ann'}",
    ]
