"""``hface server --backend uvloop``: asyncio on uvloop's event loop, or one clear line."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from tests.helpers.peers import free_port

from .test_server_options import get, hface_process, one_line_error, run_hface, write_module

HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The environment of a user whose data directory is empty."""
    return {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")}


@pytest.mark.skipif(not HAVE_UVLOOP, reason="uvloop is not installed (the test envs have it)")
def test_uvloop_backend_runs_the_app_on_uvloop(tmp_path: Path, env: dict[str, str]) -> None:
    write_module(
        tmp_path,
        "loop_app",
        """
        import asyncio

        async def app(scope, receive, send):
            assert scope["type"] == "http"
            body = type(asyncio.get_running_loop()).__module__.encode()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": body})
        """,
    )
    port = free_port()
    args = ["server", "loop_app:app", f"http://127.0.0.1:{port}", "--backend", "uvloop"]
    with hface_process(args, env=env, port=port, log_file=tmp_path / "log", cwd=tmp_path) as server:
        status, body = get(port)
        assert status == 200
        assert body.startswith(b"uvloop"), body
        assert server.stop() == 0


def test_uvloop_backend_without_uvloop_is_one_line(tmp_path: Path, env: dict[str, str]) -> None:
    # First on the path, a uvloop that fails to import, as a missing one does.
    shadow = tmp_path / "shadow"
    (shadow / "uvloop").mkdir(parents=True)
    (shadow / "uvloop" / "__init__.py").write_text("raise ImportError('no uvloop here')\n")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(shadow), env.get("PYTHONPATH")]))
    port = free_port()
    result = run_hface("server", f"http://127.0.0.1:{port}", "--backend", "uvloop", env=env)
    assert result.returncode != 0
    assert "needs uvloop" in one_line_error(result)
