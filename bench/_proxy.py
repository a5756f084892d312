"""The proxy section's pieces: ``hface proxy`` on core 0, and one large download.

A download is made by curl or by hface's client (bench/_clients.py),
directly or tunnelled through the proxy, on core 1; each returns a
:class:`~_tools.Measure` in MB/s with the window the download took
(``time.monotonic()``), over which bench/run.py reads the proxy's CPU time.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from subprocess import Popen
from typing import Final

from _servers import BIN, ROOT, Certificates, free_port, start_process, wait_until_listening
from _tools import MARGIN, Measure, ToolError, run_tool

#: Seconds one download may take.
DOWNLOAD_LIMIT: Final = 120.0


@contextmanager
def start_proxy(certs: Certificates, *, logs: Path) -> Iterator[tuple[str, Popen[bytes]]]:
    """``hface proxy`` on TLS and QUIC, on core 0, allowed to reach the loopback origin.

    Yields its origin and its process.
    """
    port = free_port()
    argv = [str(BIN / "hface"), "proxy", f"https://127.0.0.1:{port}"]
    argv += ["--cert", certs.certfile, "--key", certs.keyfile]
    argv += ["--allow-private-targets", "--log-level", "warning", "--graceful-timeout", "1"]
    log_file = logs / "proxy.log"
    with start_process(argv, log_file=log_file) as process:
        wait_until_listening(process, port, udp=True, log_file=log_file)
        yield f"https://127.0.0.1:{port}", process


def curl_download(url: str, *, cafile: str, size: int, proxy: str | None = None) -> Measure:
    """GET ``url`` with curl (HTTP/1.1), through the HTTP/1.1 ``proxy`` if given.

    :raises ToolError: if curl fails or does not receive ``size`` bytes.
    """
    argv = ["curl", "--silent", "--show-error", "--output", "/dev/null"]
    argv += ["--write-out", "%{size_download} %{time_total}"]
    argv += ["--max-time", str(int(DOWNLOAD_LIMIT)), "--cacert", cafile, "--http1.1"]
    if proxy is not None:
        argv += ["--proxy", proxy, "--proxy-cacert", cafile]
    received, seconds = run_tool([*argv, url], time_limit=DOWNLOAD_LIMIT + MARGIN).split()
    end = time.monotonic()  # curl exits as the download ends
    if int(received) != size:
        raise ToolError(f"received {received} bytes of {size}")
    return Measure(
        rps=1 / float(seconds),
        mbps=int(received) / float(seconds) / 1e6,
        window=(end - float(seconds), end),
    )


def hface_download(
    url: str,
    *,
    cafile: str,
    size: int,
    proxy: str | None = None,
    proxy_version: str = "1.1",
) -> Measure:
    """GET ``url`` with hface's client, tunnelled through ``proxy`` over ``proxy_version``.

    :raises ToolError: if the client fails or does not receive ``size`` bytes.
    """
    argv = [sys.executable, str(ROOT / "bench" / "_clients.py"), "download", url]
    argv += ["--cafile", cafile, "--time-limit", str(DOWNLOAD_LIMIT)]
    if proxy is not None:
        argv += ["--proxy", proxy, "--proxy-version", proxy_version]
    data = json.loads(run_tool(argv, time_limit=DOWNLOAD_LIMIT + MARGIN))
    if data["bytes"] != size:
        raise ToolError(f"received {data['bytes']} bytes of {size}")
    start, end = data["window"]
    return Measure(
        rps=1 / data["seconds"],
        mbps=data["bytes"] / data["seconds"] / 1e6,
        window=(float(start), float(end)),
    )
