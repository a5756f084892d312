"""``hface client --alt-svc FILE``: HTTP/3 discovery, and curl's cache file."""

from __future__ import annotations

from pathlib import Path

from .test_client_command import Servers, hface_client, ok, one_line_error
from .test_client_command import servers as servers  # the fixture


def test_alt_svc_file(servers: Servers, tmp_path: Path) -> None:
    cache = tmp_path / "alt-svc.txt"
    port = servers.https.rsplit(":", 1)[1]
    args = ("--cacert", servers.cafile, "--alt-svc", str(cache), "-w")
    # The server imports its HTTP/3 stack at its first QUIC datagram (some
    # tenths of a second, more under load): not a race this test is about.
    assert ok(hface_client("--cacert", servers.cafile, "--http3", servers.https + "/"))
    # One run: the first request learns HTTP/3, the second goes there.
    twice = ("-o", "/dev/null", "-o", "/dev/null", servers.https + "/", servers.https + "/")
    result = hface_client(*args, "%{http_version}\\n", *twice)
    assert ok(result) == b"2\n3\n"
    lines = [line for line in cache.read_text().splitlines() if not line.startswith("#")]
    assert len(lines) == 1
    assert lines[0].startswith(f"h2 127.0.0.1 {port} h3 127.0.0.1 {port} ")
    # The next run reads the file: HTTP/3 at once.
    result = hface_client(*args, "%{http_version}", "-o", "/dev/null", servers.https + "/")
    assert ok(result) == b"3"


def test_without_alt_svc_no_discovery(servers: Servers) -> None:
    twice = ("-o", "/dev/null", "-o", "/dev/null", servers.https + "/", servers.https + "/")
    result = hface_client("--cacert", servers.cafile, "-w", "%{http_version}\\n", *twice)
    assert ok(result) == b"2\n2\n"


def test_alt_svc_through_a_proxy_is_a_usage_error(servers: Servers, tmp_path: Path) -> None:
    result = hface_client("--alt-svc", "", "-x", servers.proxy, servers.https + "/")
    assert result.returncode == 2
    assert "--alt-svc" in one_line_error(result)
