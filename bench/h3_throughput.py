"""HTTP/3 bulk throughput on loopback: one upload and one download on one stream.

Usage (from the repository root)::

    hatch run python bench/h3_throughput.py [--mib 50] [--backend asyncio|trio]
                                            [--version 3|2|1.1] [--diagnose]

Prints MB/s for each direction. ``--diagnose`` (HTTP/3 only) also counts,
per direction, what limits a QUIC sender: packets declared lost, probe
timeouts, datagrams the listener dropped because a connection's queue was
full, window updates (MAX_STREAM_DATA / MAX_DATA) sent, the final and
smallest congestion windows, and how the sender spent its time (sampled
every millisecond: blocked by stream or connection flow control, by the
congestion window, or with nothing to send). The diagnostics patch aioquic
and hface internals, so they are for this script only, never for tests.

Everything runs in one process on 127.0.0.1, with certificates made by
trustme, and each transfer is bounded by a time limit.
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import trustme

from hface.common import ClientTLSConfig, ServerTLSConfig
from hface.connections import (
    HTTPConnection,
    HTTPListener,
    HTTPOverQUICListener,
    HTTPOverQUICOpener,
    HTTPOverTCPListener,
    HTTPOverTCPOpener,
)
from hface.events import ConnectionTerminated, DataReceived, HeadersReceived
from hface.protocols.http1 import HTTP1ClientFactory, HTTP1ServerFactory
from hface.protocols.http2 import HTTP2ClientFactory, HTTP2ServerFactory
from hface.protocols.http3 import HTTP3ClientFactory, HTTP3ServerFactory

CHUNK = 64 * 1024
TIME_LIMIT = 120.0

counters: collections.Counter[str] = collections.Counter()
connections: list[Any] = []  # FlowControlledQuicConnection objects, for sampling


def _install_diagnostics() -> None:
    from aioquic.quic import connection as quic_connection
    from aioquic.quic import recovery

    from hface.networking import _quic as listener_module
    from hface.protocols.http3 import _quic as fc_module

    original_lost = recovery.QuicPacketRecovery._on_packets_lost

    def on_packets_lost(self: Any, *, packets: Any, **kwargs: Any) -> None:
        counters["packets lost"] += len(packets)
        original_lost(self, packets=packets, **kwargs)

    recovery.QuicPacketRecovery._on_packets_lost = on_packets_lost  # type: ignore[method-assign]

    original_pto = recovery.QuicPacketRecovery.on_loss_detection_timeout

    def on_timeout(self: Any, *, now: float) -> None:
        if self._get_loss_space() is None:
            counters["PTOs"] += 1
        original_pto(self, now=now)

    recovery.QuicPacketRecovery.on_loss_detection_timeout = on_timeout  # type: ignore[method-assign]

    original_deliver = listener_module._QUICListenerStream._deliver

    def deliver(self: Any, datagram: Any) -> None:
        if len(self._datagrams) >= self._queue_size:
            counters["datagrams dropped by listener"] += 1
        counters["datagrams routed by listener"] += 1
        original_deliver(self, datagram)

    listener_module._QUICListenerStream._deliver = deliver  # type: ignore[method-assign]

    fc = fc_module.FlowControlledQuicConnection
    original_stream_limits = fc._write_stream_limits
    original_connection_limits = fc._write_connection_limits
    original_init = fc.__init__

    def init(self: Any, **kwargs: Any) -> None:
        original_init(self, **kwargs)
        connections.append(self)

    def stream_limits(self: Any, builder: Any, space: Any, stream: Any) -> None:
        before = stream.max_stream_data_local_sent
        original_stream_limits(self, builder, space, stream)
        if stream.max_stream_data_local_sent != before:
            counters["MAX_STREAM_DATA sent"] += 1

    def connection_limits(self: Any, builder: Any, space: Any) -> None:
        before = self._local_max_data.sent
        original_connection_limits(self, builder, space)
        if self._local_max_data.sent != before:
            counters["MAX_DATA sent"] += 1

    fc.__init__ = init  # type: ignore[method-assign]
    fc._write_stream_limits = stream_limits  # type: ignore[method-assign]
    fc._write_connection_limits = connection_limits  # type: ignore[method-assign]

    original_receive = quic_connection.QuicConnection.receive_datagram

    def receive_datagram(self: Any, data: bytes, addr: Any, now: float) -> None:
        counters["datagrams received"] += 1
        original_receive(self, data, addr, now)

    quic_connection.QuicConnection.receive_datagram = receive_datagram  # type: ignore[method-assign]


def _sample_sender() -> None:
    """Classify what holds back the QUIC connection with the most unsent bytes."""
    best = None
    for quic in connections:
        for stream in list(quic._streams.values()):
            sender = stream.sender
            unsent = sender._buffer_stop - sender.highest_offset
            if unsent > 0 and (best is None or unsent > best[2]):
                best = (quic, stream, unsent)
    if best is None:
        counters["sample: nothing to send"] += 1
        return
    quic, stream, _ = best
    cc = quic._loss._cc
    if stream.sender.highest_offset >= stream.max_stream_data_remote:
        counters["sample: stream flow control"] += 1
    elif quic._remote_max_data_used >= quic._remote_max_data:
        counters["sample: connection flow control"] += 1
    elif cc.bytes_in_flight + quic._max_datagram_size > cc.congestion_window:
        counters["sample: congestion window"] += 1
    else:
        counters["sample: sendable"] += 1
    window = cc.congestion_window
    counters["ssthresh"] = cc.ssthresh or 0
    counters["smoothed rtt (us)"] = int(quic._loss._rtt_smoothed * 1e6)
    counters["min rtt (us)"] = int(min(quic._loss._rtt_min, 1e3) * 1e6)
    counters["latest rtt (us)"] = int(quic._loss._rtt_latest * 1e6)
    counters["pacing packet_time (us)"] = int((quic._loss._pacer.packet_time or 0) * 1e6)
    counters["min cwnd"] = min(counters.get("min cwnd", window), window)
    counters["cwnd"] = window


async def _sampler(diagnose: bool) -> None:
    if not diagnose:
        return
    while True:
        _sample_sender()
        await anyio.sleep(0.001)


async def _server(connection: HTTPConnection) -> None:
    sizes: dict[int, int] = {}
    async with anyio.create_task_group() as task_group:
        while True:
            event = await connection.receive_event()
            if isinstance(event, ConnectionTerminated):
                task_group.cancel_scope.cancel()
                return
            if isinstance(event, HeadersReceived):
                path = dict(event.headers).get(b":path", b"/")
                sizes[event.stream_id] = 0
                if path.startswith(b"/bytes/"):
                    task_group.start_soon(
                        _send_body, connection, event.stream_id, int(path.rsplit(b"/", 1)[1])
                    )
                    continue
            elif isinstance(event, DataReceived):
                sizes[event.stream_id] = sizes.get(event.stream_id, 0) + len(event.data)
            else:
                continue
            if event.end_stream:
                size = sizes.pop(event.stream_id)
                headers = [(b":status", b"200"), (b"x-size", str(size).encode())]
                await connection.send_headers(event.stream_id, headers, end_stream=True)


async def _send_body(connection: HTTPConnection, stream_id: int, total: int) -> None:
    await connection.send_headers(stream_id, [(b":status", b"200")])
    chunk = bytes(CHUNK)
    sent = 0
    while sent < total:
        size = min(CHUNK, total - sent)
        sent += size
        await connection.send_data(stream_id, chunk[:size], end_stream=sent >= total)


def _request(path: str, method: bytes) -> list[tuple[bytes, bytes]]:
    return [
        (b":method", method),
        (b":scheme", b"https"),
        (b":authority", b"localhost"),
        (b":path", path.encode()),
    ]


async def _read_to_end(
    connection: HTTPConnection, stream_id: int
) -> tuple[dict[bytes, bytes], int]:
    headers: dict[bytes, bytes] = {}
    received = 0
    while True:
        event = await connection.receive_event()
        if isinstance(event, ConnectionTerminated):
            raise RuntimeError(f"connection ended: {event}")
        if getattr(event, "stream_id", None) != stream_id:
            continue
        if isinstance(event, HeadersReceived):
            headers = headers or dict(event.headers)
        elif isinstance(event, DataReceived):
            received += len(event.data)
        if getattr(event, "end_stream", False):
            return headers, received


async def _listen(version: str, tls: ServerTLSConfig) -> HTTPListener:
    address = ("127.0.0.1", 0)
    if version == "3":
        return await HTTPOverQUICListener.create(
            HTTP3ServerFactory(), local_address=address, tls_config=tls
        )
    factory = HTTP2ServerFactory() if version == "2" else HTTP1ServerFactory()
    return await HTTPOverTCPListener.create(factory, local_address=address, tls_config=tls)


async def _connect(version: str, address: Any, tls: ClientTLSConfig) -> HTTPConnection:
    if version == "3":
        opener3 = HTTPOverQUICOpener(HTTP3ClientFactory(), tls_config=tls)
        return await opener3(address, tls=True, server_name="localhost")
    factory = HTTP2ClientFactory() if version == "2" else HTTP1ClientFactory()
    opener = HTTPOverTCPOpener(factory, tls_config=tls)
    return await opener(address, tls=True, server_name="localhost")


def _report(title: str, size: int, elapsed: float, cpu: float) -> None:
    print(
        f"{title}: {size / 1e6:.1f} MB in {elapsed:.2f} s = {size / elapsed / 1e6:.1f} MB/s"
        f" (CPU {cpu:.2f} s)"
    )
    if counters:
        for name in sorted(counters):
            print(f"    {name}: {counters[name]}")
    counters.clear()


async def _main(args: argparse.Namespace, tls_dir: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert_file, ca_file = tls_dir / "cert.pem", tls_dir / "ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    ca.cert_pem.write_to_path(str(ca_file))
    server_tls = ServerTLSConfig(certfile=str(cert_file), keyfile=str(cert_file))
    client_tls = ClientTLSConfig(cafile=str(ca_file))
    size = args.mib * 1024 * 1024
    listener = await _listen(args.version, server_tls)
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(listener.serve, _server)
        task_group.start_soon(_sampler, args.diagnose)
        address = listener.local_addresses[0]
        with anyio.fail_after(TIME_LIMIT):
            async with await _connect(args.version, address, client_tls) as connection:
                chunk = bytes(CHUNK)
                counters.clear()
                # Upload.
                start, cpu = time.perf_counter(), time.process_time()
                stream_id = connection.get_available_stream_id()
                await connection.send_headers(stream_id, _request("/upload", b"POST"))
                sent = 0
                while sent < size:
                    sent += CHUNK
                    await connection.send_data(stream_id, chunk, end_stream=sent >= size)
                headers, _ = await _read_to_end(connection, stream_id)
                assert headers[b"x-size"] == str(size).encode(), headers
                _report("upload", size, time.perf_counter() - start, time.process_time() - cpu)
                # Download.
                start, cpu = time.perf_counter(), time.process_time()
                stream_id = connection.get_available_stream_id()
                await connection.send_headers(
                    stream_id, _request(f"/bytes/{size}", b"GET"), end_stream=True
                )
                _, received = await _read_to_end(connection, stream_id)
                assert received == size, received
                _report("download", size, time.perf_counter() - start, time.process_time() - cpu)
        await listener.aclose()
        task_group.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--mib", type=int, default=50)
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--version", choices=["1.1", "2", "3"], default="3")
    parser.add_argument("--diagnose", action="store_true")
    args = parser.parse_args()
    if args.diagnose and args.version == "3":
        _install_diagnostics()
    else:
        args.diagnose = False
    with tempfile.TemporaryDirectory() as tls_dir:
        anyio.run(_main, args, Path(tls_dir), backend=args.backend)


if __name__ == "__main__":
    main()
