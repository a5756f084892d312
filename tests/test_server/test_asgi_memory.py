"""ASGIServer's memory stays bounded while a client reads a huge response slowly.

The server runs in a process of its own (:mod:`tests.test_server.asgi_server_process`,
on the test's backend) so that its resident set size can be read from
``/proc/PID/status``. A client reads an endless response at about 1 MiB/s for
5 seconds over each HTTP version; the server's RSS must grow by less than
64 MiB meanwhile (without backpressure it would buffer the whole ~GiB the
application can produce in that time).
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from hface.common import AddressType
from hface.events import ConnectionTerminated, DataReceived, StreamReset
from tests.helpers.certs import TLSFiles
from tests.test_server.asgi_server_process import read_port, server_process
from tests.test_server.conftest import client, fetch, send_request

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

MiB = 1024 * 1024
#: How fast the client reads, and for how long.
READ_RATE = 1 * MiB
READ_SECONDS = 5.0
#: The most the server's resident memory may grow meanwhile.
MAX_GROWTH = 64 * MiB


def resident_memory(pid: int) -> int:
    """The resident set size of process ``pid``, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS in /proc/{pid}/status")


async def read_slowly(http_version: str, address: AddressType, tls_files: TLSFiles) -> int:
    """Read the endless response at :data:`READ_RATE` for :data:`READ_SECONDS`.

    Returns how many body bytes were read.
    """
    received = 0
    async with client(http_version, address, tls_files.client_config()) as connection:
        stream_id = await send_request(connection, path=b"/endless")
        start = anyio.current_time()
        with anyio.move_on_after(READ_SECONDS):
            while True:
                event = await connection.receive_event()
                if isinstance(event, (ConnectionTerminated, StreamReset)):
                    raise AssertionError(f"the response ended early: {event!r}")
                if isinstance(event, DataReceived) and event.stream_id == stream_id:
                    received += len(event.data)
                    ahead = received / READ_RATE - (anyio.current_time() - start)
                    if ahead > 0:
                        await anyio.sleep(ahead)
    return received


async def test_a_slow_reader_keeps_memory_bounded(
    http_version: str, anyio_backend: str, tls_files: TLSFiles
) -> None:
    certfile, keyfile = tls_files.server_cert_file, tls_files.server_key_file
    with server_process(anyio_backend, certfile, keyfile) as process:
        port = await read_port(process)
        address = ("127.0.0.1", port)
        # Warm up this version's code paths before taking the baseline.
        warm_up = await fetch(http_version, address, tls_files.client_config(), path=b"/small")
        assert warm_up.body == b"ok"
        baseline = resident_memory(process.pid)
        peak = baseline

        async def sample() -> None:
            nonlocal peak
            while True:
                peak = max(peak, resident_memory(process.pid))
                await anyio.sleep(0.1)

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(sample)
            received = await read_slowly(http_version, address, tls_files)
            task_group.cancel_scope.cancel()
        peak = max(peak, resident_memory(process.pid))
        assert process.poll() is None, "the memory server died"
    # The client did read at about the rate asked: the response was flowing.
    assert 3 * MiB <= received <= READ_SECONDS * READ_RATE + MiB, received
    growth = peak - baseline
    assert growth < MAX_GROWTH, f"RSS grew by {growth / MiB:.1f} MiB"


async def test_a_websocket_client_that_never_reads_keeps_memory_bounded(
    http_version: str, anyio_backend: str, tls_files: TLSFiles
) -> None:
    """The application sends 200 MiB on a WebSocket whose client reads nothing."""
    from tests.helpers.ws_client import websocket

    certfile, keyfile = tls_files.server_cert_file, tls_files.server_key_file
    with server_process(anyio_backend, certfile, keyfile) as process:
        port = await read_port(process)
        address = ("127.0.0.1", port)
        config = tls_files.client_config()
        # Warm up this version's code paths before taking the baseline.
        async with websocket(http_version, address, config, h1_tls=True) as ws:
            assert ws.handshake.status in (101, 200)
            message = await ws.receive()
            assert isinstance(message, bytes)
            assert len(message) == 65536
        baseline = resident_memory(process.pid)
        peak = baseline
        async with websocket(http_version, address, config, h1_tls=True):
            for _ in range(30):  # 3 seconds of the application sending, nobody reading
                peak = max(peak, resident_memory(process.pid))
                await anyio.sleep(0.1)
        assert process.poll() is None, "the memory server died"
    growth = peak - baseline
    assert growth < MAX_GROWTH, f"RSS grew by {growth / MiB:.1f} MiB"
