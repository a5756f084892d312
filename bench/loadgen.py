"""An HTTP load generator on hface's connection layer, for HTTP/1.1, HTTP/2 and HTTP/3.

It holds ``-c`` connections, each with ``-m`` requests in flight (one on
HTTP/1.1), for ``-d`` seconds after a warm-up, and reports requests/s,
body MB/s, latency percentiles, its CPU use and the measured window
(``time.monotonic()``, for the server's CPU time over it). Built on
hface's client, it also measures how hface's client talks: the HTTP/3
rows of bench/run.py use h3load.py (aioquic alone) instead, and the
validate section puts loadgen beside h2load (HTTP/2) and h3load (HTTP/3)
on the same server (``hatch run bench:run --only validate``). With
``--processes P`` the connections are split over P processes sharing one
measured window (worth it only with a core free for each).

Usage (from the repository root)::

    hatch run bench:loadgen https://127.0.0.1:8443/ --http 3 -c 10 -m 10 -d 10 \\
        --cafile certs/cacert.pem [--json]

Everything is bounded in time: the run stops starting requests at the
deadline, waits at most ``GRACE`` seconds for those in flight, and the
whole process gives up ``HARD_LIMIT_MARGIN`` seconds after the deadline.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

import anyio
from _loadstats import Clock, Result, run_processes

from hface.common import ClientTLSConfig
from hface.connections import HTTPConnection, HTTPOpener, HTTPOverQUICOpener, HTTPOverTCPOpener
from hface.errors import HTTPError
from hface.events import ConnectionTerminated, DataReceived, HeadersReceived, StreamReset
from hface.protocols.http1 import HTTP1ClientFactory
from hface.protocols.http2 import HTTP2ClientFactory
from hface.protocols.http3 import HTTP3ClientFactory

#: Seconds to connect (TCP and TLS, or the QUIC handshake).
CONNECT_TIMEOUT: Final = 5.0
#: Seconds that requests in flight at the deadline get to finish.
GRACE: Final = 5.0
#: Seconds past the deadline after which the run is abandoned as hung.
HARD_LIMIT_MARGIN: Final = 30.0
#: Seconds a copy started by ``--processes`` may take to import and start.
STARTUP: Final = 2.0


@dataclass(frozen=True, kw_only=True)
class Target:
    """Where to send requests, and how."""

    #: ``"1.1"``, ``"2"`` or ``"3"``.
    http_version: str
    #: ``(host, port)`` to connect to.
    address: tuple[str, int]
    #: Whether to use TLS (always for HTTP/3).
    tls: bool
    #: The name sent in SNI and verified.
    server_name: str
    #: The request headers (HTTP/2 style).
    headers: list[tuple[bytes, bytes]]


def make_target(url: str, http_version: str, server_name: str | None = None) -> Target:
    """Parse ``url`` into a :class:`Target`.

    :raises ValueError: if the URL cannot be used with ``http_version``.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"invalid URL {url!r}: expected http://HOST:PORT/PATH or https://...")
    if http_version not in ("1.1", "2", "3"):
        raise ValueError(f"invalid HTTP version {http_version!r}: expected 1.1, 2 or 3")
    tls = parts.scheme == "https"
    if http_version == "3" and not tls:
        raise ValueError("HTTP/3 needs an https:// URL")
    port = parts.port or (443 if tls else 80)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    authority = parts.netloc.rpartition("@")[2]
    return Target(
        http_version=http_version,
        address=(parts.hostname, port),
        tls=tls,
        server_name=server_name or parts.hostname,
        headers=[
            (b":method", b"GET"),
            (b":scheme", parts.scheme.encode()),
            (b":authority", authority.encode()),
            (b":path", path.encode()),
            (b"user-agent", b"hface-loadgen"),
        ],
    )


def make_opener(target: Target, tls_config: ClientTLSConfig) -> HTTPOpener:
    """An opener of connections of the target's HTTP version."""
    if target.http_version == "3":
        return HTTPOverQUICOpener(HTTP3ClientFactory(), tls_config=tls_config)
    factory = HTTP2ClientFactory() if target.http_version == "2" else HTTP1ClientFactory()
    return HTTPOverTCPOpener(factory, tls_config=tls_config)


class _Pending:
    """One request in flight."""

    __slots__ = ("body_bytes", "done", "failed")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.body_bytes = 0
        self.failed = False


class _ConnectionState:
    """The requests in flight on one connection, routed by the dispatcher."""

    def __init__(self, connection: HTTPConnection) -> None:
        self.connection = connection
        self.pending: dict[int, _Pending] = {}
        self.room = anyio.Event()
        self.dead = False

    def wake(self) -> None:
        """Tell the workers waiting for a free stream to look again."""
        room, self.room = self.room, anyio.Event()
        room.set()

    def finish(self, stream_id: int, *, failed: bool = False) -> None:
        """Complete the request on ``stream_id``."""
        pending = self.pending.pop(stream_id, None)
        if pending is not None:
            pending.failed = pending.failed or failed
            pending.done.set()
        self.wake()

    def kill(self) -> None:
        """The connection is gone: fail whatever is in flight."""
        self.dead = True
        for stream_id in list(self.pending):
            self.finish(stream_id, failed=True)
        self.wake()


class LoadGenerator:
    """Keeps ``connections`` x ``streams`` requests in flight until the deadline."""

    def __init__(
        self,
        target: Target,
        *,
        tls_config: ClientTLSConfig,
        connections: int,
        streams: int,
        clock: Clock,
    ) -> None:
        self.target = target
        self.opener = make_opener(target, tls_config)
        self.connections = connections
        # HTTP/1.1 has one exchange at a time per connection (no pipelining).
        self.streams = 1 if target.http_version == "1.1" else streams
        self.clock = clock
        self.result = Result()
        self._measure_from = clock.measure_from
        self._stop_at = clock.stop_at
        self._failures: list[str] = []

    async def run(self) -> Result:
        """Run for warm-up plus duration; return what was measured.

        :raises RuntimeError: if no connection could be made at all.
        """
        with anyio.fail_after(self._stop_at - time.monotonic() + HARD_LIMIT_MARGIN):
            async with anyio.create_task_group() as task_group:
                for _ in range(self.connections):
                    task_group.start_soon(self._keep_connection)
        if self.result.connections == 0 and self._failures:
            raise RuntimeError(f"cannot connect: {self._failures[0]}")
        return self.clock.finish(self.result)

    async def _keep_connection(self) -> None:
        """Open connections one after another until the deadline."""
        while time.monotonic() < self._stop_at:
            try:
                # The deadline covers connecting and the handshake only.
                with anyio.CancelScope(deadline=anyio.current_time() + CONNECT_TIMEOUT) as scope:
                    connection = await self.opener(
                        self.target.address,
                        tls=self.target.tls,
                        server_name=self.target.server_name,
                    )
                    async with connection:
                        scope.deadline = math.inf
                        self.result.connections += 1
                        await self._use(connection)
                if scope.cancelled_caught:
                    raise TimeoutError(f"no connection within {CONNECT_TIMEOUT:g} s")
            except (HTTPError, OSError, TimeoutError) as error:
                self._failures.append(f"{type(error).__name__}: {error}")
                self.result.errors += 1
                if self.result.connections == 0:
                    return  # the server is not there: no point retrying
                await anyio.sleep(0.01)

    async def _use(self, connection: HTTPConnection) -> None:
        state = _ConnectionState(connection)
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(self._dispatch, state)
            with anyio.move_on_after(self._stop_at - time.monotonic() + GRACE):
                async with anyio.create_task_group() as workers:
                    for _ in range(self.streams):
                        workers.start_soon(self._worker, state)
            task_group.cancel_scope.cancel()

    async def _dispatch(self, state: _ConnectionState) -> None:
        connection = state.connection
        while True:
            event = await connection.receive_event()
            if isinstance(event, ConnectionTerminated):
                state.kill()
                return
            if isinstance(event, HeadersReceived):
                pending = state.pending.get(event.stream_id)
                if pending is not None and not pending.body_bytes:
                    status = dict(event.headers).get(b":status", b"0")
                    pending.failed = pending.failed or not status.startswith((b"1", b"2", b"3"))
                if event.end_stream:
                    state.finish(event.stream_id)
            elif isinstance(event, DataReceived):
                pending = state.pending.get(event.stream_id)
                if pending is not None:
                    pending.body_bytes += len(event.data)
                if event.end_stream:
                    state.finish(event.stream_id)
            elif isinstance(event, StreamReset):
                state.finish(event.stream_id, failed=True)

    async def _worker(self, state: _ConnectionState) -> None:
        connection = state.connection
        while not state.dead:
            now = time.monotonic()
            if now >= self._stop_at:
                return
            if not connection.is_available():
                if connection.has_expired():
                    return
                with anyio.move_on_after(self._stop_at - now):
                    await state.room.wait()
                continue
            stream_id = connection.get_available_stream_id()
            pending = _Pending()
            state.pending[stream_id] = pending
            started = time.perf_counter()
            try:
                await connection.send_headers(stream_id, self.target.headers, end_stream=True)
            except HTTPError:
                state.kill()
                self.result.errors += 1
                return
            await pending.done.wait()
            finished = time.perf_counter()
            if pending.failed:
                self.result.errors += 1
            elif self._measure_from <= time.monotonic() <= self._stop_at:
                self.result.record(finished - started, pending.body_bytes)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loadgen", description=(__doc__ or "").split("\n\n", maxsplit=1)[0]
    )
    parser.add_argument("url", help="http://HOST:PORT/PATH or https://HOST:PORT/PATH")
    parser.add_argument("--http", choices=["1.1", "2", "3"], default="2", help="HTTP version")
    parser.add_argument("-c", "--connections", type=int, default=10, help="connections")
    parser.add_argument("-m", "--streams", type=int, default=10, help="requests in flight each")
    parser.add_argument("-d", "--duration", type=float, default=10.0, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring")
    parser.add_argument("--processes", type=int, default=1, help="processes to split over")
    parser.add_argument("--cafile", help="CA certificates to trust (PEM)")
    parser.add_argument("--insecure", action="store_true", help="do not verify the server")
    parser.add_argument("--server-name", help="name for SNI and verification (default: host)")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--measure-from", type=float, help=argparse.SUPPRESS)
    return parser


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.connections < 1 or args.streams < 1 or args.processes < 1:
        parser.error("-c, -m and --processes must be at least 1")
    if args.processes > args.connections:
        parser.error("--processes cannot exceed -c (each process needs a connection)")
    if not 0 < args.duration <= 3600 or not 0 <= args.warmup <= 600:
        parser.error("-d must be in (0, 3600] and --warmup in [0, 600]")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the load generator; print a summary (or JSON); return the exit code."""
    parser = _parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    _check(parser, args)
    try:
        target = make_target(args.url, args.http, args.server_name)
    except ValueError as error:
        parser.error(str(error))
    tls_config = ClientTLSConfig(insecure=args.insecure, cafile=args.cafile)
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
            generator = LoadGenerator(
                target,
                tls_config=tls_config,
                connections=args.connections,
                streams=args.streams,
                clock=clock,
            )
            result = anyio.run(generator.run, backend=args.backend)
    except (RuntimeError, TimeoutError, OSError, HTTPError) as error:
        print(f"loadgen: error: {str(error) or type(error).__name__}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    print(json.dumps(result.to_json()) if args.json else result.summary("loadgen"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
