"""An HTTP/3 load generator on aioquic alone: a second opinion next to loadgen.py.

loadgen.py is built on hface's own client, so an HTTP/3 figure measured
with it also measures how hface's client talks to the server. No compiled
HTTP/3 load generator installs here (Debian's h2load is built without
ngtcp2, and neither oha nor quiche's tools are packaged), so this one is
written on aioquic's sans-IO objects directly, the way aioquic's own
examples use them: one ``QuicConnection`` with an ``H3Connection`` on a
plain asyncio ``DatagramProtocol`` per connection, one UDP socket each.

Theory of operation: each connection keeps ``-m`` requests in flight.
When a datagram arrives it is handed to aioquic, every event it produced
is handled (a finished response immediately starts the next request), and
only then are the datagrams aioquic has to send written out, so that what
one datagram triggers leaves in as few datagrams as aioquic packs it into
(and ACKs ride with requests). aioquic's timer is armed with
``loop.call_at``. No option of aioquic is changed: 1,200-byte datagrams,
aioquic's windows and ACK delay, QPACK as aioquic's ``H3Connection`` sets
it up (4,096-byte dynamic table offered).

With ``--processes P`` the connections are split over P copies of this
script sharing one measured window; the CPU they use is added up against
the cores they may run on, so a load pinned to one core reports that
core's saturation. ``--qlog DIR`` writes aioquic's qlog traces (one file per
connection, at its end) and ``--secrets-log FILE`` the TLS secrets for a
capture, for looking at what crosses the wire.

Usage (from the repository root)::

    hatch run bench:h3load https://127.0.0.1:8443/ -c 10 -m 10 -d 10 \\
        --cafile certs/cacert.pem [--processes 2] [--json]

Bounded like loadgen.py: no request starts after the deadline, those in
flight get ``GRACE`` seconds, and the process gives up ``HARD_LIMIT_MARGIN``
seconds after the deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import ssl
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, TextIO, cast
from urllib.parse import urlsplit

from _loadstats import Clock, Result, run_processes
from aioquic import tls
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, HandshakeCompleted, QuicEvent, StreamReset
from aioquic.quic.logger import QuicFileLogger

#: Seconds for the QUIC handshake.
CONNECT_TIMEOUT: Final = 5.0
#: Seconds that requests in flight at the deadline get to finish.
GRACE: Final = 5.0
#: Seconds past the deadline after which the run is abandoned as hung.
HARD_LIMIT_MARGIN: Final = 30.0
#: Seconds a copy started by ``--processes`` may take to import and start.
STARTUP: Final = 1.0


@dataclass(frozen=True)
class Mimicry:
    """What h3load may do as hface's client does, to measure what each costs the server.

    Off by default: h3load then talks as aioquic's examples do.
    """

    #: Send each request in a datagram of its own as soon as it is made
    #: (hface's ``send_headers`` flushes), instead of one datagram for all
    #: the requests that one received datagram set off.
    datagram_per_request: bool = False
    #: Send the pending ACK with every datagram that carries requests
    #: (hface's QUIC layer), instead of aioquic's 1 ms delayed ACK.
    eager_acks: bool = False


class _Request:
    __slots__ = ("body_bytes", "failed", "started")

    def __init__(self, started: float) -> None:
        self.started = started
        self.body_bytes = 0
        self.failed = False


class H3Client(asyncio.DatagramProtocol):
    """One QUIC connection keeping ``streams`` requests in flight until the deadline."""

    def __init__(
        self,
        *,
        configuration: QuicConfiguration,
        headers: list[tuple[bytes, bytes]],
        streams: int,
        clock: Clock,
        result: Result,
        mimic: Mimicry = Mimicry(),
    ) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._quic = QuicConnection(configuration=configuration)
        self._h3 = H3Connection(self._quic)
        self._headers = headers
        self._streams = streams
        self._clock = clock
        self._result = result
        self._requests: dict[int, _Request] = {}
        self._transport: asyncio.DatagramTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._mimic = mimic
        self._requests_unsent = False
        #: Set once the handshake is done; its value says whether it succeeded.
        self.connected: asyncio.Future[bool] = loop.create_future()
        #: Set when the connection has ended (closed by either side).
        self.ended: asyncio.Future[None] = loop.create_future()

    # -- asyncio's side ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)
        address = self._transport.get_extra_info("peername")
        self._quic.connect(address, now=self._loop.time())
        self._transmit()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self._quic.receive_datagram(data, addr, now=self._loop.time())
        self._process_events()
        self._transmit()

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors: aioquic's loss detection and idle timeout handle them

    def connection_lost(self, exc: Exception | None) -> None:
        self._end()

    # -- the load ------------------------------------------------------------

    def close(self) -> None:
        """Close the connection (CONNECTION_CLOSE, no error)."""
        if not self.ended.done():
            self._quic.close()
            self._transmit()

    def in_flight(self) -> int:
        """Requests sent and not yet answered."""
        return len(self._requests)

    def _start_request(self) -> None:
        if time.monotonic() >= self._clock.stop_at:
            return
        stream_id = self._quic.get_next_available_stream_id()
        self._h3.send_headers(stream_id, self._headers, end_stream=True)
        self._requests[stream_id] = _Request(time.perf_counter())
        self._requests_unsent = True
        if self._mimic.datagram_per_request:
            self._transmit()

    def _finish(self, stream_id: int, *, failed: bool = False) -> None:
        request = self._requests.pop(stream_id, None)
        if request is None:
            return
        if failed or request.failed:
            self._result.errors += 1
        elif self._clock.measure_from <= time.monotonic() <= self._clock.stop_at:
            self._result.record(time.perf_counter() - request.started, request.body_bytes)
        self._start_request()

    def _process_events(self) -> None:
        event = self._quic.next_event()
        while event is not None:
            self._quic_event(event)
            event = self._quic.next_event()

    def _quic_event(self, event: QuicEvent) -> None:
        if isinstance(event, HandshakeCompleted):
            if not self.connected.done():
                self.connected.set_result(True)
            for _ in range(self._streams):
                self._start_request()
            return
        if isinstance(event, ConnectionTerminated):
            self._end()
            return
        if isinstance(event, StreamReset):
            self._finish(event.stream_id, failed=True)
            return
        for h3_event in self._h3.handle_event(event):
            if isinstance(h3_event, HeadersReceived):
                request = self._requests.get(h3_event.stream_id)
                if request is not None and not request.body_bytes:
                    status = dict(h3_event.headers).get(b":status", b"0")
                    request.failed = not status.startswith((b"1", b"2", b"3"))
            elif isinstance(h3_event, DataReceived):
                request = self._requests.get(h3_event.stream_id)
                if request is not None:
                    request.body_bytes += len(h3_event.data)
            else:
                continue
            if h3_event.stream_ended:
                self._finish(h3_event.stream_id)

    def _end(self) -> None:
        for stream_id in list(self._requests):
            self._result.errors += 1
            del self._requests[stream_id]
        if not self.connected.done():
            self.connected.set_result(False)
        if not self.ended.done():
            self.ended.set_result(None)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._transport is not None:
            self._transport.close()

    # -- aioquic's output and timer ------------------------------------------

    def _transmit(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        now = self._loop.time()
        if self._mimic.eager_acks and self._requests_unsent:
            # What hface's FlowControlledQuicConnection.datagrams_to_send does:
            # a delayed ACK is made overdue so that it leaves with the requests.
            space = self._quic._spaces[tls.Epoch.ONE_RTT]
            if space.ack_at is not None and space.ack_at >= now:
                space.ack_at = math.nextafter(now, -math.inf)
        self._requests_unsent = False
        for data, _ in self._quic.datagrams_to_send(now=now):
            transport.sendto(data)
        timer_at = self._quic.get_timer()
        if timer_at != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if timer_at is not None:
                self._timer = self._loop.call_at(timer_at, self._on_timer)
            self._timer_at = timer_at

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self._quic.handle_timer(now=self._loop.time())
        self._process_events()
        self._transmit()


async def _keep_connection(
    address: tuple[str, int],
    *,
    configuration: QuicConfiguration,
    headers: list[tuple[bytes, bytes]],
    streams: int,
    clock: Clock,
    result: Result,
    failures: list[str],
    mimic: Mimicry,
) -> None:
    """Open connections one after another until the deadline."""
    loop = asyncio.get_running_loop()
    while time.monotonic() < clock.stop_at:
        transport, client = await loop.create_datagram_endpoint(
            lambda: H3Client(
                configuration=configuration,
                headers=headers,
                streams=streams,
                clock=clock,
                result=result,
                mimic=mimic,
            ),
            remote_addr=address,
        )
        try:
            try:
                handshake = asyncio.shield(client.connected)
                connected = await asyncio.wait_for(handshake, CONNECT_TIMEOUT)
            except asyncio.TimeoutError:  # not the builtin before Python 3.11
                connected = False
            if not connected:
                failures.append(f"no HTTP/3 connection to {address[0]}:{address[1]}")
                result.errors += 1
                if result.connections == 0:
                    return  # the server is not there: no point retrying
                await asyncio.sleep(0.01)
                continue
            result.connections += 1
            remaining = clock.stop_at - time.monotonic()
            done, _ = await asyncio.wait([client.ended], timeout=max(remaining, 0))
            if done:
                continue  # the server closed it: open another
            deadline = time.monotonic() + GRACE
            while client.in_flight() and time.monotonic() < deadline:
                await asyncio.wait([client.ended], timeout=0.01)
            client.close()
            await asyncio.wait([client.ended], timeout=1.0)
        finally:
            transport.close()


async def run(
    url: str,
    *,
    connections: int,
    streams: int,
    clock: Clock,
    cafile: str | None,
    insecure: bool,
    qlog: str | None = None,
    secrets_log: TextIO | None = None,
    mimic: Mimicry = Mimicry(),
) -> Result:
    """Load ``url`` until the clock's deadline; what was measured.

    :raises RuntimeError: if no connection could be made at all.
    """
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"invalid URL {url!r}: expected https://HOST:PORT/PATH")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = [
        (b":method", b"GET"),
        (b":scheme", b"https"),
        (b":authority", parts.netloc.rpartition("@")[2].encode()),
        (b":path", path.encode()),
        (b"user-agent", b"h3load"),
    ]
    configuration = QuicConfiguration(alpn_protocols=H3_ALPN, is_client=True)
    configuration.server_name = parts.hostname
    if insecure:
        configuration.verify_mode = ssl.CERT_NONE
    elif cafile:
        configuration.load_verify_locations(cafile=cafile)
    if qlog:
        configuration.quic_logger = QuicFileLogger(qlog)
    configuration.secrets_log_file = secrets_log
    address = (parts.hostname, parts.port or 443)
    result = Result()
    failures: list[str] = []
    limit = clock.stop_at - time.monotonic() + HARD_LIMIT_MARGIN
    keepers = [
        _keep_connection(
            address,
            configuration=configuration,
            headers=headers,
            streams=streams,
            clock=clock,
            result=result,
            failures=failures,
            mimic=mimic,
        )
        for _ in range(connections)
    ]
    try:
        await asyncio.wait_for(asyncio.gather(*keepers), limit)
    except asyncio.TimeoutError:
        message = f"the run did not end {HARD_LIMIT_MARGIN:g} s after its deadline"
        raise TimeoutError(message) from None
    if result.connections == 0 and failures:
        raise RuntimeError(f"cannot connect: {failures[0]}")
    return clock.finish(result)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="h3load", description=(__doc__ or "").split("\n\n", maxsplit=1)[0]
    )
    parser.add_argument("url", help="https://HOST:PORT/PATH")
    parser.add_argument("-c", "--connections", type=int, default=10, help="connections")
    parser.add_argument("-m", "--streams", type=int, default=10, help="requests in flight each")
    parser.add_argument("-d", "--duration", type=float, default=10.0, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring")
    parser.add_argument("--processes", type=int, default=1, help="processes to split over")
    parser.add_argument("--cafile", help="CA certificates to trust (PEM)")
    parser.add_argument("--insecure", action="store_true", help="do not verify the server")
    parser.add_argument("--qlog", metavar="DIR", help="write aioquic's qlog traces into DIR")
    parser.add_argument("--secrets-log", metavar="FILE", help="append the TLS secrets to FILE")
    parser.add_argument(
        "--datagram-per-request",
        action="store_true",
        help="send each request in a datagram of its own, as hface's client does",
    )
    parser.add_argument(
        "--eager-acks",
        action="store_true",
        help="send the pending ACK with every datagram of requests, as hface's client does",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--measure-from", type=float, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the load generator; print a summary (or JSON); return the exit code."""
    parser = _parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if args.connections < 1 or args.streams < 1 or args.processes < 1:
        parser.error("-c, -m and --processes must be at least 1")
    if args.processes > args.connections:
        parser.error("--processes cannot exceed -c (each process needs a connection)")
    if not 0 < args.duration <= 3600 or not 0 <= args.warmup <= 600:
        parser.error("-d must be in (0, 3600] and --warmup in [0, 600]")
    try:
        if args.processes > 1:
            result = run_processes(
                __file__,
                argv,
                processes=args.processes,
                connections=args.connections,
                warmup=args.warmup,
                startup=STARTUP,
                time_limit=STARTUP + args.warmup + args.duration + HARD_LIMIT_MARGIN + 10,
            )
        else:
            clock = Clock(
                duration=args.duration, warmup=args.warmup, measure_from=args.measure_from
            )
            secrets = open(args.secrets_log, "a") if args.secrets_log else None  # noqa: SIM115
            try:
                result = asyncio.run(
                    run(
                        args.url,
                        connections=args.connections,
                        streams=args.streams,
                        clock=clock,
                        cafile=args.cafile,
                        insecure=args.insecure,
                        qlog=args.qlog,
                        secrets_log=secrets,
                        mimic=Mimicry(
                            datagram_per_request=args.datagram_per_request,
                            eager_acks=args.eager_acks,
                        ),
                    )
                )
            finally:
                if secrets is not None:
                    secrets.close()
    except (RuntimeError, TimeoutError, OSError, ValueError) as error:
        print(f"h3load: error: {str(error) or type(error).__name__}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    print(json.dumps(result.to_json()) if args.json else result.summary("h3load"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
