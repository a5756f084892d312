"""The proxy and udp sections: ``hface proxy`` on core 0, and one large download.

A download is made by curl or by hface's client (bench/_clients.py),
directly or tunnelled through the proxy, on core 1; each returns a
:class:`~_tools.Measure` in MB/s with the window the download took
(``time.monotonic()``), over which bench/run.py reads the proxy's CPU time.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import partial
from pathlib import Path
from subprocess import Popen
from typing import Final

from _rounds import short
from _servers import BIN, ROOT, Certificates, free_port, start_process, wait_until_listening
from _table import Row
from _tools import MARGIN, Measure, ToolError, run_tool

#: What runs one cell (bench/run.py's ``Bench._measure``).
MeasureCell = Callable[..., Row]
#: The file the downloads fetch, made sparse in the origin's document root.
BIG_FILE: Final = "big.bin"

#: Seconds one download may take.
DOWNLOAD_LIMIT: Final = 120.0


@contextmanager
def start_proxy(
    certs: Certificates, *, logs: Path, loop: str = "asyncio"
) -> Iterator[tuple[str, Popen[bytes]]]:
    """``hface proxy`` on TLS and QUIC, on core 0, allowed to reach the loopback origin.

    ``loop`` is its ``--backend``: the event loop the servers of the run use.

    Yields its origin and its process.
    """
    port = free_port()
    argv = [str(BIN / "hface"), "proxy", f"https://127.0.0.1:{port}"]
    argv += ["--cert", certs.certfile, "--key", certs.keyfile]
    argv += ["--allow-private-targets", "--log-level", "warning", "--graceful-timeout", "1"]
    argv += ["--backend", loop]
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
    version: str = "1.1",
) -> Measure:
    """GET ``url`` with hface's client, tunnelled through ``proxy`` over ``proxy_version``.

    ``version`` is the one spoken to the origin: ``"3"`` goes through CONNECT-UDP.

    :raises ToolError: if the client fails or does not receive ``size`` bytes.
    """
    argv = [sys.executable, str(ROOT / "bench" / "_clients.py"), "download", url]
    argv += ["--cafile", cafile, "--time-limit", str(DOWNLOAD_LIMIT), "--version", version]
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


# -- the sections (bench/run.py's proxy and udp) --------------------------------------


@contextmanager
def _big_file(docroot: Path, mib: int) -> Iterator[str]:
    """A sparse file of ``mib`` MiB in ``docroot`` while the block runs; yields its name."""
    big = docroot / BIG_FILE
    with big.open("wb") as file:
        file.truncate(mib * 1024 * 1024)
    try:
        yield BIG_FILE
    finally:
        big.unlink(missing_ok=True)


def _failed(case: str, error: BaseException) -> Row:
    return Row(case=case, subject="-", value=None, unit="MB/s", note=short(error))


def proxy_rows(
    measure: MeasureCell,
    mib: int,
    docroot: Path,
    certs: Certificates,
    logs: Path,
    h2o: Callable[[], AbstractContextManager[str]],
    *,
    loop: str,
) -> tuple[list[Row], list[Row]]:
    """A download from h2o through ``hface proxy`` (CONNECT) on each version, vs direct.

    Returns hface's client's rows and curl's (over an HTTP/1.1 proxy leg).
    """
    case = f"proxy {mib} MiB download (h1 inside; srv: the proxy)"
    curl_case = f"proxy {mib} MiB download with curl (h1 proxy)"
    rows: list[Row] = []
    curl_rows: list[Row] = []
    try:
        with (
            _big_file(docroot, mib) as name,
            h2o() as origin,
            start_proxy(certs, logs=logs, loop=loop) as (
                proxy,
                process,
            ),
        ):
            url = f"{origin}/{name}"
            size = mib * 1024 * 1024
            curl = partial(curl_download, url, cafile=certs.cafile, size=size)
            hface = partial(hface_download, url, cafile=certs.cafile, size=size)
            # curl is far faster than hface's client: these rows measure the proxy alone.
            curl_rows.append(measure(curl_case, "direct", "MB/s", curl))
            through = partial(curl, proxy=proxy)
            curl_rows.append(
                measure(curl_case, "via hface proxy h1", "MB/s", through, server=process)
            )
            rows.append(measure(case, "direct", "MB/s", hface))
            for version in ("1.1", "2", "3"):
                subject = f"via hface proxy h{version[0]}"
                through = partial(hface, proxy=proxy, proxy_version=version)
                rows.append(measure(case, subject, "MB/s", through, server=process))
    except RuntimeError as error:
        rows.append(_failed(case, error))
    return rows, curl_rows


def udp_proxy_rows(
    measure: MeasureCell,
    mib: int,
    docroot: Path,
    certs: Certificates,
    logs: Path,
    gtlsserver: Callable[[], AbstractContextManager[str]],
    *,
    loop: str,
) -> list[Row]:
    """An HTTP/3 download from gtlsserver through ``hface proxy`` (CONNECT-UDP), vs direct.

    The proxy is reached over HTTP/3 (QUIC DATAGRAM frames) and over HTTP/2
    (DATAGRAM capsules); QUIC runs inside the tunnel (issue 17).
    """
    case = f"proxy {mib} MiB HTTP/3 download (CONNECT-UDP; srv: the proxy)"
    rows: list[Row] = []
    try:
        with (
            _big_file(docroot, mib) as name,
            gtlsserver() as origin,
            start_proxy(certs, logs=logs, loop=loop) as (proxy, process),
        ):
            url = f"{origin}/{name}"
            hface = partial(
                hface_download, url, cafile=certs.cafile, size=mib * 1024 * 1024, version="3"
            )
            rows.append(measure(case, "direct h3", "MB/s", hface))
            for leg in ("3", "2"):
                through = partial(hface, proxy=proxy, proxy_version=leg)
                subject = f"via hface proxy h{leg}"
                rows.append(measure(case, subject, "MB/s", through, server=process))
    except RuntimeError as error:
        rows.append(_failed(case, error))
    return rows
