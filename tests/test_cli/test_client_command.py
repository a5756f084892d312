"""``hface client URL``, run as a user would, against hface's own server and proxy.

The servers run in a thread of the test process (an anyio blocking portal)
on 127.0.0.1; the command runs in a subprocess, so stdout, stderr and the
exit code are exactly what a user gets.
"""

from __future__ import annotations

import hashlib
import os
import pty
import re
import select
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import pytest

from hface.cli._client_command import EXIT_CODES, exit_code
from hface.cli._progress import ProgressBar, format_size
from hface.client import Origin
from hface.client.errors import ConnectError, ProxyError, TLSVerificationError
from hface.errors import TransportError
from hface.server import ASGIServer, Endpoint, ProxyServer, ServerProtocol
from hface.server.examples import asgi_echo
from tests.helpers.certs import TLSFiles
from tests.helpers.peers import free_port

#: The command, as a user would run it.
HFACE_CLIENT = (sys.executable, "-m", "hface", "client")
VERSIONS = {"1.1": "--http1", "2": "--http2", "3": "--http3"}
BACKENDS = ["asyncio", "trio"]
_BLOCK = bytes(range(256)) * 256  # 64 KiB

Scope = dict[str, Any]
Message = MutableMapping[str, Any]


def pattern(size: int) -> bytes:
    """``size`` bytes of the repeating pattern ``/bytes/N`` answers."""
    full, rest = divmod(size, len(_BLOCK))
    return _BLOCK * full + _BLOCK[:rest]


async def app(
    scope: Scope,
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    """``/bytes/N``: N pattern bytes in 64 KiB chunks; ``/status/N``: an empty N;
    ``/slow``: no answer for an hour; ``/redirect/PATH``: 302 to ``/PATH``;
    anything else: the echo example."""
    path = scope.get("path", "")
    if scope["type"] == "http" and path.startswith("/redirect/"):
        location = path.removeprefix("/redirect").encode()
        await send(
            {"type": "http.response.start", "status": 302, "headers": [(b"location", location)]}
        )
        await send({"type": "http.response.body", "body": b""})
        return
    if scope["type"] != "http" or not path.startswith(("/bytes/", "/status/", "/slow")):
        await asgi_echo.application(scope, receive, send)
        return
    if path == "/slow":
        await anyio.sleep(3600)
    if path.startswith("/status/"):
        status = int(path.removeprefix("/status/"))
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    size = int(path.removeprefix("/bytes/"))
    headers = [(b"content-length", str(size).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for start in range(0, size, len(_BLOCK)):
        chunk = pattern(min(len(_BLOCK), size - start))
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


@dataclass(frozen=True, kw_only=True)
class Servers:
    """The running servers and the CA that trusts them."""

    #: ``https://127.0.0.1:PORT``: HTTP/1.1, HTTP/2 and HTTP/3.
    https: str
    #: ``http://127.0.0.1:PORT``: HTTP/1.1 and HTTP/2.
    http: str
    #: The ProxyServer, ``https://127.0.0.1:PORT``: HTTP/1.1, HTTP/2 and HTTP/3.
    proxy: str
    #: The CA certificate (PEM) of both.
    cafile: str


@pytest.fixture(scope="module")
def servers(tls_files: TLSFiles) -> Iterator[Servers]:
    """An ASGIServer (``app``) and a ProxyServer, running in a thread."""
    server = ASGIServer(app)
    server.tls_config = tls_files.server_config()
    server.handle_signals = False
    server.access_log = False
    proxy = ProxyServer()
    proxy.tls_config = tls_files.server_config()
    proxy.handle_signals = False
    https_port, http_port, proxy_port = free_port(), free_port(), free_port()
    with anyio.from_thread.start_blocking_portal() as portal:
        endpoints = [
            Endpoint("https", "127.0.0.1", https_port),
            Endpoint("http", "127.0.0.1", http_port),
        ]
        server_future, _ = portal.start_task(server.run, endpoints)
        proxy_future, _ = portal.start_task(proxy.run, [Endpoint("https", "127.0.0.1", proxy_port)])
        try:
            yield Servers(
                https=f"https://127.0.0.1:{https_port}",
                http=f"http://127.0.0.1:{http_port}",
                proxy=f"https://127.0.0.1:{proxy_port}",
                cafile=tls_files.ca_file,
            )
        finally:
            server_future.cancel()
            proxy_future.cancel()


def hface_client(
    *args: str, timeout: float = 60, **options: Any
) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m hface client ARGS`` to completion; output as bytes."""
    return subprocess.run(
        [*HFACE_CLIENT, *args],
        capture_output=True,
        timeout=timeout,
        stdin=options.pop("stdin", subprocess.DEVNULL),
        check=False,
        **options,
    )


def one_line_error(result: subprocess.CompletedProcess[bytes]) -> str:
    """The only ``hface...`` line on stderr (there must be one, and no traceback)."""
    stderr = result.stderr.decode(errors="replace")
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("hface")]
    assert len(lines) == 1, stderr
    return lines[0]


def ok(result: subprocess.CompletedProcess[bytes]) -> bytes:
    """stdout of a run that must have succeeded."""
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result.stdout


# -- fetching ---------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("version", list(VERSIONS))
def test_fetch_every_version(version: str, backend: str, servers: Servers) -> None:
    url = f"{servers.https}/some/path?q=1"
    flag = VERSIONS[version]
    result = hface_client(flag, "--cacert", servers.cafile, "--backend", backend, url)
    body = ok(result)
    assert body.startswith(f"GET /some/path?q=1 HTTP/{version}\r\n".encode()), body
    assert result.stderr == b""


def test_cleartext_and_alpn(servers: Servers) -> None:
    assert ok(hface_client(f"{servers.http}/")).startswith(b"GET / HTTP/1.1\r\n")
    assert ok(hface_client("--http2", f"{servers.http}/")).startswith(b"GET / HTTP/2\r\n")
    https = hface_client("--cacert", servers.cafile, f"{servers.https}/")
    assert ok(https).startswith(b"GET / HTTP/2\r\n")  # ALPN prefers HTTP/2


@pytest.mark.parametrize("version", list(VERSIONS))
def test_post_data_and_file(version: str, servers: Servers, tmp_path: Path) -> None:
    common = [VERSIONS[version], "--cacert", servers.cafile]
    result = hface_client(*common, "-d", "a=1", "-d", "b=2", f"{servers.https}/form")
    body = ok(result)
    assert body.startswith(f"POST /form HTTP/{version}\r\n".encode()), body
    assert b"\r\ncontent-type: application/x-www-form-urlencoded\r\n" in body
    assert body.endswith(b"\r\n\r\na=1&b=2")

    payload = bytes(range(256)) * 1000 + b"\r\n\0\xff"  # binary, not UTF-8
    data_file = tmp_path / "payload.bin"
    data_file.write_bytes(payload)
    result = hface_client(
        *common,
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/octet-stream",
        "-d",
        f"@{data_file}",
        f"{servers.https}/upload",
    )
    body = ok(result)
    assert body.startswith(f"PUT /upload HTTP/{version}\r\n".encode())
    assert f"\r\ncontent-length: {len(payload)}\r\n".encode() in body
    assert b"\r\ncontent-type: application/octet-stream\r\n" in body
    assert body.endswith(b"\r\n\r\n" + payload)


def test_data_from_stdin(servers: Servers) -> None:
    result = subprocess.run(
        [*HFACE_CLIENT, "-d", "@-", f"{servers.http}/in"],
        input=b"from stdin\n",
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert ok(result).endswith(b"\r\n\r\nfrom stdin\n")


def test_headers_are_sent(servers: Servers) -> None:
    result = hface_client(
        "-H", "X-One: 1", "-H", "x-two:  two words ", "-H", "User-Agent: tester", f"{servers.http}/"
    )
    body = ok(result)
    assert b"\r\nx-one: 1\r\n" in body
    assert b"\r\nx-two: two words\r\n" in body
    assert b"\r\nuser-agent: tester\r\n" in body
    assert b"user-agent: hface" not in body


@pytest.mark.parametrize("version", list(VERSIONS))
def test_include_prints_status_line_and_headers(version: str, servers: Servers) -> None:
    result = hface_client(VERSIONS[version], "-i", "--cacert", servers.cafile, f"{servers.https}/x")
    output = ok(result)
    head, separator, body = output.partition(b"\r\n\r\n")
    assert separator
    lines = head.split(b"\r\n")
    status_line = b"HTTP/1.1 200 OK" if version == "1.1" else f"HTTP/{version} 200".encode()
    assert lines[0] == status_line
    assert b"content-type: text/plain; charset=utf-8" in lines[1:]
    assert b"server: hface" in lines[1:]
    assert body.startswith(f"GET /x HTTP/{version}\r\n".encode())


TIMESTAMP = re.compile(r"^\+(\d+\.\d{3})s ")


@pytest.mark.parametrize("version", list(VERSIONS))
def test_verbose_shows_every_event(version: str, servers: Servers) -> None:
    result = hface_client(VERSIONS[version], "-v", "--cacert", servers.cafile, f"{servers.https}/v")
    assert ok(result).startswith(f"GET /v HTTP/{version}\r\n".encode())
    lines = result.stderr.decode().splitlines()
    times = []
    for line in lines:
        match = TIMESTAMP.match(line)
        assert match, line
        times.append(float(match.group(1)))
    assert times == sorted(times)
    text = "\n".join(lines)
    assert f"connecting to {servers.https} (HTTP/{version})" in lines[0]
    if version == "3":
        assert "#1 QUIC handshake with 127.0.0.1:" in text
        assert "#1 QUIC handshake completed: TLSv1.3, ALPN h3, speaking HTTP/3" in text
    else:
        alpn = "http/1.1" if version == "1.1" else "h2"
        connected = f"#1 connected, TLS established: TLSv1.3, ALPN {alpn}, speaking HTTP/{version}"
        assert connected in text
    stream_id = 0 if version == "3" else 1
    assert f"#1 submit_headers stream_id={stream_id} end_stream=True headers=[:method: GET" in text
    assert f"#1 HeadersReceived stream_id={stream_id} end_stream=False headers=[:status: 200" in (
        text
    )
    assert re.search(rf"#1 DataReceived stream_id={stream_id} size=\d+ end_stream=True", text)
    assert "response complete: status 200" in text
    # In the order they happened.
    order = ["connecting", "submit_headers", "HeadersReceived", "DataReceived", "response complete"]
    positions = [text.index(marker) for marker in order]
    assert positions == sorted(positions)


# -- output to a file ---------------------------------------------------------------------------


def test_output_to_file_without_a_terminal(servers: Servers, tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    result = hface_client("-o", str(target), f"{servers.http}/bytes/2000000")
    assert ok(result) == b""
    assert result.stderr == b""  # no progress bar: stderr is not a terminal
    assert target.read_bytes() == pattern(2000000)


def test_progress_bar_on_a_terminal(servers: Servers, tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    master, slave = pty.openpty()
    try:
        process = subprocess.Popen(
            [*HFACE_CLIENT, "-o", str(target), f"{servers.http}/bytes/3000000"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=slave,
        )
        os.close(slave)
        terminal = b""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                terminal += chunk
            elif process.poll() is not None:
                break
        assert process.wait(timeout=30) == 0, terminal
    finally:
        os.close(master)
    assert target.read_bytes() == pattern(3000000)
    text = terminal.decode()
    assert "\r[" in text
    assert "100%  2.9 MiB / 2.9 MiB" in text, text
    assert text.rstrip().endswith("/s"), text


def test_progress_bar_rendering() -> None:
    now = [0.0]
    lines: list[str] = []

    class Terminal:
        def write(self, text: str) -> int:
            lines.append(text)
            return len(text)

        def flush(self) -> None:
            pass

    bar = ProgressBar(Terminal(), 4 * 1024 * 1024, clock=lambda: now[0])  # type: ignore[arg-type]  # a TextIO stand-in
    now[0] = 1.0
    bar.update(1024 * 1024)
    assert bar.render(1.0) == "[" + "#" * 7 + " " * 23 + "]  25%  1.0 MiB / 4.0 MiB  1.0 MiB/s"
    now[0] = 1.05
    bar.update(1)
    assert len(lines) == 1  # not redrawn within 0.1 s
    bar.finish()
    bar.finish()
    assert lines[-1] == "\n"
    assert len(lines) == 3
    unknown = ProgressBar(Terminal(), None, clock=lambda: 2.0)  # type: ignore[arg-type]  # a TextIO stand-in
    assert unknown.render(2.0) == "0 B  "
    assert [format_size(n) for n in (0, 1023, 1536, 50 * 1024**2, 3 * 1024**4)] == [
        "0 B",
        "1023 B",
        "1.5 KiB",
        "50.0 MiB",
        "3.0 TiB",
    ]


#: Runs ``hface ARGS`` and writes the process's peak RSS (KiB) to $RSS_FILE.
PEAK_RSS = """
import os, resource, runpy, sys
sys.argv = ["hface", *sys.argv[1:]]
try:
    runpy.run_module("hface", run_name="__main__")
finally:
    with open(os.environ["RSS_FILE"], "w") as file:
        file.write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
"""


def _peak_rss_kib(
    args: list[str], rss_file: Path
) -> tuple[subprocess.CompletedProcess[bytes], int]:
    """Run ``hface ARGS``; return the result and the process's peak RSS (KiB)."""
    result = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, *args],
        capture_output=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        check=False,
        env={**os.environ, "RSS_FILE": str(rss_file)},
    )
    return result, int(rss_file.read_text())


@pytest.mark.slow
@pytest.mark.parametrize("version", list(VERSIONS))
def test_50_mib_download_streams_to_a_file(version: str, servers: Servers, tmp_path: Path) -> None:
    size = 50 * 1024 * 1024
    target = tmp_path / "big.bin"
    common = ["client", VERSIONS[version], "--cacert", servers.cafile]
    small, small_rss = _peak_rss_kib([*common, f"{servers.https}/bytes/1000"], tmp_path / "rss1")
    ok(small)
    result, big_rss = _peak_rss_kib(
        [*common, "-o", str(target), f"{servers.https}/bytes/{size}"], tmp_path / "rss2"
    )
    assert ok(result) == b""
    assert result.stderr == b""  # no progress bar: stderr is not a terminal
    assert target.stat().st_size == size
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    assert digest == hashlib.sha256(pattern(size)).hexdigest()
    # Streamed: the body was never held whole (that alone would be 50 MiB more).
    assert big_rss - small_rss < 20 * 1024, (small_rss, big_rss)


# -- proxy ------------------------------------------------------------------------------------


@pytest.mark.parametrize("proxy_flag", ["--proxy-http1", "--proxy-http2", "--proxy-http3"])
def test_through_the_proxy(proxy_flag: str, servers: Servers) -> None:
    result = hface_client(
        "--proxy",
        servers.proxy,
        proxy_flag,
        "--cacert",
        servers.cafile,
        "-v",
        f"{servers.https}/proxied",
    )
    assert ok(result).startswith(b"GET /proxied HTTP/2\r\n")
    trace = result.stderr.decode()
    proxy_version = {"--proxy-http1": "1.1", "--proxy-http2": "2", "--proxy-http3": "3"}[proxy_flag]
    assert f"through the proxy {servers.proxy} (HTTP/{proxy_version})" in trace
    assert "#1 (proxy) submit_headers stream_id=" in trace
    assert "headers=[:method: CONNECT | :authority: 127.0.0.1:" in trace
    assert "#2 (origin) connected, TLS established: TLSv1.3, ALPN h2, speaking HTTP/2" in trace
    assert "#2 (origin) HeadersReceived stream_id=1 end_stream=False headers=[:status: 200" in trace


def test_proxy_refusing_the_tunnel(servers: Servers) -> None:
    closed = free_port()
    result = hface_client(
        "--proxy", servers.proxy, "--cacert", servers.cafile, f"http://127.0.0.1:{closed}/"
    )
    assert result.returncode == 56
    assert "refused a tunnel" in one_line_error(result)


# -- TLS ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", list(VERSIONS))
def test_untrusted_certificate(version: str, servers: Servers) -> None:
    url = f"{servers.https}/secure"
    result = hface_client(VERSIONS[version], url)
    assert result.returncode == 60, result.stderr
    line = one_line_error(result)
    assert line.startswith("hface: error: cannot verify the TLS certificate of")
    assert len(result.stderr.splitlines()) == 1, result.stderr  # no library warnings either
    assert result.stdout == b""
    body = ok(hface_client(VERSIONS[version], "--insecure", url))
    assert body.startswith(f"GET /secure HTTP/{version}\r\n".encode())


@pytest.mark.parametrize("flag", ["--http1", "--http2"])
def test_tls_handshake_failure(flag: str, servers: Servers) -> None:
    cleartext_port = servers.http.rsplit(":", 1)[1]
    result = hface_client(flag, f"https://127.0.0.1:{cleartext_port}/")  # not a TLS server
    assert result.returncode == 35
    message = one_line_error(result)
    origin = f"https://127.0.0.1:{cleartext_port}"
    assert message.startswith(f"hface: error: cannot connect to {origin}: ")
    assert "the TLS handshake failed" in message


@pytest.mark.parametrize("flag", ["--http1", "--http2"])
def test_cleartext_to_a_tls_server(flag: str, servers: Servers) -> None:
    tls_port = servers.https.rsplit(":", 1)[1]
    result = hface_client(flag, f"http://127.0.0.1:{tls_port}/")
    assert result.returncode == 56
    assert "ended before the response was complete" in one_line_error(result)


# -- failures -------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("version", list(VERSIONS))
def test_connection_refused(version: str, backend: str) -> None:
    """Refused at once: TCP's RST, and for QUIC the kernel's ICMP port unreachable."""
    port = free_port()
    scheme = "https" if version == "3" else "http"
    url = f"{scheme}://127.0.0.1:{port}/"
    args = (VERSIONS[version], "--backend", backend, "--connect-timeout", "20", url)
    started = time.monotonic()
    result = hface_client(*args)
    elapsed = time.monotonic() - started
    line = one_line_error(result)
    assert result.returncode == 7, line
    assert f"cannot connect to {scheme}://127.0.0.1:{port}" in line
    if version == "3":
        assert f"nothing listens on UDP port {port} (ICMP port unreachable)" in line
    assert elapsed < 10, elapsed  # not the connect timeout


def test_cannot_resolve() -> None:
    result = hface_client("http://no-such-host.invalid/")
    assert result.returncode == 6
    assert "no-such-host.invalid" in one_line_error(result)


def test_cannot_resolve_the_proxy() -> None:
    result = hface_client("--proxy", "http://no-such-proxy.invalid:8080", "http://example.com/")
    assert result.returncode == 5
    assert "no-such-proxy.invalid" in one_line_error(result)


def test_max_time(servers: Servers) -> None:
    started = time.monotonic()
    result = hface_client("-m", "1", f"{servers.http}/slow")
    assert time.monotonic() - started < 20
    assert result.returncode == 28
    assert "timed out after 1.0 s (--max-time)" in one_line_error(result)


def test_fail_on_error_status(servers: Servers) -> None:
    assert hface_client(f"{servers.http}/status/404").returncode == 0
    result = hface_client("-f", f"{servers.http}/status/404")
    assert result.returncode == 22
    assert "the server answered 404" in one_line_error(result)


def test_closed_stdout_is_one_line(servers: Servers) -> None:
    process = subprocess.Popen(
        [*HFACE_CLIENT, f"{servers.http}/bytes/20000000"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    assert len(process.stdout.read(1000)) == 1000
    process.stdout.close()  # like `| head -c 1000`
    with process.stderr:
        stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) == 23
    assert "Traceback" not in stderr
    assert stderr.startswith("hface: error: cannot write the output"), stderr
    assert len(stderr.splitlines()) == 1, stderr


MISTAKES: list[tuple[list[str], int, str]] = [
    (["ftp://example.com/"], 2, "unsupported scheme 'ftp'"),
    (["http://"], 2, "no host"),
    (["http://exa mple.com/"], 2, "bad host"),
    (["http://example.com/a b"], 2, "characters not allowed"),
    (["--http3", "http://example.com/"], 2, "--http3 needs an https URL"),
    (["--http1", "--http2", "http://example.com/"], 2, "not allowed with argument"),
    (["--proxy-http2", "http://example.com/"], 2, "need --proxy"),
    (["--proxy", "ftp://p:1", "http://example.com/"], 2, "unsupported scheme"),
    (
        ["--proxy", "http://p:1", "--proxy-http1", "--http3", "https://example.com/"],
        2,
        "needs CONNECT-UDP",
    ),
    (["--proxy", "http://p:1", "--proxy-http3", "https://e/"], 2, "needs an https proxy"),
    (["-H", "no colon", "http://example.com/"], 2, "expected 'Name: value'"),
    (["--no-such", "value", "http://example.com/"], 2, "option --no-such: is unknown"),
    (["-d", "a", "-F", "b=1", "http://example.com/"], 2, "only select one HTTP request method"),
    (["-I", "-T", "x", "http://example.com/"], 2, "only select one HTTP request method"),
    (["--resolve", "nonsense", "http://example.com/"], 2, "invalid --resolve nonsense"),
    (["--connect-to", "x", "http://example.com/"], 2, "invalid --connect-to x"),
    (["-x", "http://p:1", "--resolve", "a:1:127.0.0.1", "http://e/"], 2, "through a proxy"),
    (["-T", "/nonexistent/file", "http://example.com/"], 26, "cannot read /nonexistent/file"),
    (["-F", "f=@/nonexistent/file", "http://example.com/"], 26, "cannot read /nonexistent/file"),
    (["-O", "http://example.com/"], 23, "no file name in http://example.com/"),
    (["-H", ":path: /x", "http://example.com/"], 2, "expected 'Name: value'"),
    (["-X", "GE T", "http://example.com/"], 2, "invalid HTTP method"),
    (["-m", "soon", "http://example.com/"], 2, "invalid number of seconds"),
    (["-d", "@/nonexistent/file", "http://example.com/"], 26, "cannot read /nonexistent/file"),
    (["--cacert", "/nonexistent.pem", "https://example.com/"], 77, "/nonexistent.pem"),
]


@pytest.mark.parametrize(("args", "code", "message"), MISTAKES)
def test_mistakes_get_one_line(args: list[str], code: int, message: str) -> None:
    result = hface_client(*args)
    assert result.returncode == code, result.stderr
    line = one_line_error(result)
    assert message in line, line
    assert line.startswith("hface client: error:" if code == 2 else "hface: error:")


def test_output_dash_is_stdout(servers: Servers) -> None:
    assert ok(hface_client("-o", "-", f"{servers.http}/bytes/1000")) == pattern(1000)


def test_output_file_that_cannot_be_written(servers: Servers, tmp_path: Path) -> None:
    target = tmp_path / "missing-directory" / "out"
    result = hface_client("-o", str(target), f"{servers.http}/")
    assert result.returncode == 23
    assert f"cannot write {target}" in one_line_error(result)


def test_help_documents_the_exit_codes() -> None:
    result = hface_client("--help")
    assert result.returncode == 0
    help_text = result.stdout.decode()
    assert help_text.startswith("usage: hface client")
    for code in EXIT_CODES:
        assert re.search(rf"^\s+{code}\s+\S", help_text, re.MULTILINE), code


def test_exit_codes_of_exceptions() -> None:
    origin = "https://example.com:443"
    resolve = ConnectError("cannot connect", origin=origin)
    resolve.__cause__ = TransportError("cannot connect")
    resolve.__cause__.__cause__ = OSError(-2, "Name or service not known")
    assert exit_code(resolve) == 7  # a plain OSError: not a resolution failure
    resolve.__cause__.__cause__ = socket.gaierror(-2, "Name or service not known")
    assert exit_code(resolve) == 6
    assert exit_code(resolve, proxy=Origin.parse(origin)) == 5
    assert exit_code(TLSVerificationError("untrusted", origin=origin)) == 60
    assert exit_code(ProxyError("refused", origin=origin, status=403)) == 56
    assert exit_code(TimeoutError("slow")) == 28
    assert exit_code(RuntimeError("bug")) == 1


# -- curl's options over every version (curl itself: test_curl_table.py) --------------------


@pytest.mark.parametrize("version", list(VERSIONS))
def test_curl_options_over_every_version(version: str, servers: Servers) -> None:
    """Redirects, a Host field, a body and -w, over HTTP/3 too (nginx has no HTTP/3)."""
    result = hface_client(
        VERSIONS[version],
        "--cacert",
        servers.cafile,
        "-L",
        "-H",
        "Host: example.test",
        "--json",
        '{"a": 1}',
        "-w",
        "\\n%{http_code} %{http_version} %{num_redirects} %{method} %{url_effective}",
        f"{servers.https}/redirect/echo/landed",
    )
    lines = ok(result).split(b"\r\n")
    # 302 after a POST: a GET, without the body (curl's rule); the Host field
    # is the authority on every version (HTTP/2 and HTTP/3: :authority).
    assert lines[0] == f"GET /echo/landed HTTP/{version}".encode()
    assert b"host: example.test" in lines or b":authority: example.test" in lines, lines
    assert lines[-1] == (f"\n200 {version} 1 GET {servers.https}/echo/landed".encode())


@pytest.mark.parametrize("version", list(VERSIONS))
def test_times_over_every_version(version: str, servers: Servers) -> None:
    names = ("namelookup", "connect", "appconnect", "pretransfer", "starttransfer", "total")
    result = hface_client(
        VERSIONS[version],
        "--cacert",
        servers.cafile,
        "-o",
        "/dev/null",
        "-w",
        " ".join(f"%{{time_{name}}}" for name in names),
        f"{servers.https}/bytes/1000",
    )
    times = [float(value) for value in ok(result).split()]
    assert all(value > 0 for value in times), times  # TLS or QUIC: every moment happened
    assert times == sorted(times), times
    assert times[-1] < 30


@pytest.mark.parametrize("version", list(VERSIONS))
def test_parallel_over_one_connection(version: str, servers: Servers, tmp_path: Path) -> None:
    """-Z: HTTP/2 and HTTP/3 carry every transfer on one connection."""
    urls = [f"{servers.https}/bytes/{1000 + number}" for number in range(10)]
    outputs = [argument for number in range(10) for argument in ("-o", f"out{number}")]
    result = hface_client(
        VERSIONS[version],
        "--cacert",
        servers.cafile,
        "-Z",
        *outputs,
        "-w",
        "%{num_connects}\\n",
        *urls,
        cwd=tmp_path,
    )
    connects = [int(line) for line in ok(result).split()]
    assert len(connects) == 10
    if version == "1.1":
        assert sum(connects) >= 1
    else:
        assert sum(connects) == 1
    for number in range(10):
        assert (tmp_path / f"out{number}").read_bytes() == pattern(1000 + number)


def test_http2_to_a_server_without_http2_says_so(tls_files: TLSFiles) -> None:
    """hface's server with --protocol http1 completes TLS choosing no ALPN protocol."""
    server = ASGIServer(app)
    server.tls_config = tls_files.server_config()
    server.handle_signals = False
    server.access_log = False
    server.protocol = ServerProtocol.HTTP1
    port = free_port()
    with anyio.from_thread.start_blocking_portal() as portal:
        future, _ = portal.start_task(server.run, [Endpoint("https", "127.0.0.1", port)])
        try:
            url = f"https://127.0.0.1:{port}/"
            result = hface_client("--http2", "--cacert", tls_files.ca_file, url)
            assert result.returncode == 35
            assert one_line_error(result) == (
                f"hface: error: cannot connect to {url[:-1]}: the TLS handshake failed: "
                "the server speaks none of the protocols offered by ALPN (h2), only HTTP/1.1"
            )
            assert ok(hface_client("--http1.1", "--cacert", tls_files.ca_file, url))
        finally:
            future.cancel()
