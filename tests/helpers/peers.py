"""Helpers for tests against real peers: curl, nghttp, ngtcp2's examples, h2o and nginx.

The peers are Debian packages (``.ci/run`` installs them). A test that needs
one is decorated with :func:`needs_peer`, which skips it with the package to
install when the binary is missing. Servers started here bind loopback
addresses only, every subprocess has a timeout, and :func:`spawn` kills what
it started when the block ends.
"""

from __future__ import annotations

import functools
import os
import pwd
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Final, TypeAlias, TypeVar

import anyio
import anyio.to_thread
import pytest

#: The Debian package that provides each peer.
PEER_PACKAGES: Final[Mapping[str, str]] = {
    "curl": "curl",
    "nghttp": "nghttp2-client",
    "gtlsclient": "ngtcp2-client",
    "gtlsserver": "ngtcp2-server",
    "h2o": "h2o",
    "nginx": "nginx",
}

#: Searched after PATH: Debian installs gtlsserver in /usr/sbin, which users' PATH may lack.
_SBIN_PATH: Final = "/usr/local/sbin:/usr/sbin:/sbin"

TestFunction = TypeVar("TestFunction", bound=Callable[..., object])

#: A peer server started by :func:`spawn`.
Popen: TypeAlias = "subprocess.Popen[bytes]"

#: Seconds a peer command may run before it is killed.
PEER_TIMEOUT: Final = 30.0

#: Seconds a peer server may take to start listening.
STARTUP_TIMEOUT: Final = 10.0


def find_peer(name: str) -> str | None:
    """The path of the peer's executable, or ``None`` if it is not installed."""
    return shutil.which(name) or shutil.which(name, path=_SBIN_PATH)


def needs_peer(name: str) -> Callable[[TestFunction], TestFunction]:
    """Mark a test ``peer(name)``, and skip it where the peer is not installed."""
    package = PEER_PACKAGES.get(name, name)
    missing = pytest.mark.skipif(
        find_peer(name) is None,
        reason=f"{name} is not installed (Debian package {package}; .ci/run installs it)",
    )

    def mark(test: TestFunction) -> TestFunction:
        marked: TestFunction = pytest.mark.peer(name)(missing(test))
        return marked

    return mark


def require_peer(name: str) -> str:
    """The path of the peer's executable; skips the test if it is not installed."""
    path = find_peer(name)
    if path is None:
        package = PEER_PACKAGES.get(name, name)
        pytest.skip(f"{name} is not installed (Debian package {package})")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """A port of ``host`` that is free for both TCP and UDP right now.

    Another process may take it before the caller binds it; callers that can
    bind port 0 themselves should prefer that.
    """
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port: int = tcp.getsockname()[1]
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                    udp.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no port free for both TCP and UDP")


def udp_port_is_bound(host: str, port: int) -> bool:
    """Whether some socket already holds UDP ``host``:``port`` (a server is up)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        try:
            udp.bind((host, port))
        except OSError:
            return True
    return False


def run_peer(
    argv: Sequence[str],
    *,
    time_limit: float = PEER_TIMEOUT,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a peer command to completion and capture its output (blocking).

    :raises AssertionError: if it runs longer than ``time_limit`` seconds (it is killed),
        with whatever it printed until then.
    """
    full_env = None if env is None else {**os.environ, **env}
    try:
        return subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=time_limit,
            cwd=cwd,
            env=full_env,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(
            f"{' '.join(argv)} did not finish within {time_limit}s\n"
            f"stdout: {_text(exc.stdout)}\nstderr: {_text(exc.stderr)}"
        ) from None


async def run_peer_in_thread(
    argv: Sequence[str],
    *,
    time_limit: float = PEER_TIMEOUT,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """:func:`run_peer` in a worker thread, so the event loop keeps serving meanwhile."""
    run = functools.partial(run_peer, argv, time_limit=time_limit, cwd=cwd, env=env)
    return await anyio.to_thread.run_sync(run)


def _text(output: str | bytes | None) -> str:
    if output is None:
        return ""
    return output.decode(errors="replace") if isinstance(output, bytes) else output


def describe(result: subprocess.CompletedProcess[str]) -> str:
    """The command, exit status and output of a finished peer, for assertion messages."""
    return (
        f"$ {' '.join(result.args)}\nexit status {result.returncode}\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )


@contextmanager
def spawn(argv: Sequence[str], *, log_file: Path, cwd: Path | None = None) -> Iterator[Popen]:
    """Start a peer server in the background, its output going to ``log_file``.

    When the block ends the server gets SIGTERM, and SIGKILL if it is still
    running five seconds later.
    """
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=cwd
        )
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def wait_until_listening(
    process: Popen, *, host: str, port: int, transport: str, log_file: Path
) -> None:
    """Wait until the server ``process`` listens on ``host``:``port`` (``tcp`` or ``udp``).

    :raises AssertionError: if it exits or is not listening within
        :data:`STARTUP_TIMEOUT`, with its log.
    """
    with anyio.move_on_after(STARTUP_TIMEOUT):
        while process.poll() is None:
            if transport == "udp":
                if udp_port_is_bound(host, port):
                    return
            else:
                try:
                    stream = await anyio.connect_tcp(host, port)
                except OSError:
                    pass
                else:
                    await stream.aclose()
                    return
            await anyio.sleep(0.05)
    status = process.poll()
    state = "is not listening" if status is None else f"exited with status {status}"
    log = await anyio.Path(log_file).read_text(errors="replace")
    raise AssertionError(f"{process.args!r} {state} on {transport} {host}:{port}\n{log}")


def write_h2o_config(
    directory: Path, *, port: int, cert_file: str, key_file: str, document_root: Path
) -> Path:
    """Write an h2o configuration that serves ``document_root`` over TLS on 127.0.0.1:``port``.

    Returns the path of the configuration file (``h2o -c PATH``).
    """
    # As root h2o drops privileges to "nobody" unless told otherwise, and
    # nobody cannot read pytest's private temporary directories.
    user = f"user: {pwd.getpwuid(os.geteuid()).pw_name}\n" if os.geteuid() == 0 else ""
    config = (
        "listen:\n"
        "  host: 127.0.0.1\n"
        f"  port: {port}\n"
        "  ssl:\n"
        f'    certificate-file: "{cert_file}"\n'
        f'    key-file: "{key_file}"\n'
        f"{user}"
        f'error-log: "{directory / "h2o-error.log"}"\n'
        "num-threads: 1\n"
        "hosts:\n"
        "  default:\n"
        "    paths:\n"
        "      /:\n"
        f'        file.dir: "{document_root}"\n'
    )
    path = directory / "h2o.conf"
    path.write_text(config)
    return path
