"""The attacks of the soak (bench/soak.py): raw HTTP/1.1, HTTP/2 and HTTP/3 on loopback.

Each attack is a function of a :class:`Target` that makes one attempt on
fresh connections and returns the outcome it saw, as a short label
(``"GOAWAY(0xb)"``, ``"431"``, ``"closed(0x107)"``...). Everything blocks
with a time limit: sockets have timeouts and every loop a bound in count and
time, so an attempt ends within :data:`ATTEMPT_LIMIT` seconds whatever the
server does. The frames are written by hand (HTTP/2) or on aioquic's QUIC
layer without its HTTP/3 one (HTTP/3), so that they may break any rule; the
expected answers are those tests/test_protocols/test_http2_conformance.py
and test_http3_conformance.py check in memory.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Final

import pylsqpack
from aioquic.buffer import encode_uint_var
from aioquic.h3.connection import FrameType, StreamType, encode_frame
from aioquic.quic import events as quic_events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from hpack import Encoder
from hyperframe.frame import Frame, GoAwayFrame, PingFrame, RstStreamFrame

#: Seconds one attempt of any attack may take at most (sockets time out sooner).
ATTEMPT_LIMIT: Final = 25.0
#: Seconds a flood may go on before the attack gives up on an answer.
_FLOOD_TIME: Final = 10.0
#: Seconds a socket operation may block.
SOCKET_TIMEOUT: Final = 5.0

# HTTP/2 frame types, flags and error codes (RFC 9113 §6, §7).
_DATA, _HEADERS, _PRIORITY, _RST_STREAM, _SETTINGS = 0x0, 0x1, 0x2, 0x3, 0x4
_PING, _CONTINUATION = 0x6, 0x9
_END_STREAM, _END_HEADERS = 0x1, 0x4
_PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_SETTINGS_INITIAL_WINDOW_SIZE = 0x4

#: Seconds an HTTP/3 attack waits for the server's answer (QUIC in Python is slow
#: on a busy machine: the soak's own client threads share one interpreter).
_H3_WAIT: Final = 10.0

# HTTP/3 error codes (RFC 9114 §8.1, RFC 9204 §6).
H3_REQUEST_CANCELLED: Final = 0x10C


@dataclass(frozen=True, kw_only=True)
class Target:
    """Where the server under attack listens: TCP and UDP on one port."""

    #: The port (TLS over TCP, and QUIC).
    port: int
    #: The development CA that signed the server's certificate.
    cafile: str
    #: The server's ``--header-timeout``, which ends slowloris connections.
    header_timeout: float
    #: The host, always loopback.
    host: str = "127.0.0.1"


@dataclass(frozen=True, kw_only=True)
class Attack:
    """One attack the soak repeats."""

    #: Its name in the table.
    name: str
    #: The HTTP version it uses (``"1.1"``, ``"2"``, ``"3"``).
    version: str
    #: One attempt; returns the outcome seen.
    run: Callable[[Target], str]
    #: The outcomes that mean the server held (as the conformance tests expect).
    expected: frozenset[str]
    #: Seconds between attempts, so that the attacks leave the good traffic some CPU.
    pause: float = 1.0


# --- HTTP/1.1 -----------------------------------------------------------------------


def _tls(target: Target, alpn: str) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=target.cafile)
    context.set_alpn_protocols([alpn])
    raw = socket.create_connection((target.host, target.port), timeout=SOCKET_TIMEOUT)
    try:
        return context.wrap_socket(raw, server_hostname="localhost")
    except BaseException:
        raw.close()
        raise


def _status(sock: ssl.SSLSocket, deadline: float) -> str:
    """The status code of the first response on ``sock``, or ``closed``/``timeout``."""
    data = b""
    while b"\r\n" not in data and time.monotonic() < deadline:
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            return "timeout"
        except OSError:
            return "closed"
        if not chunk:
            return "closed" if not data else "truncated"
        data += chunk
    parts = data.split(b" ", 2)
    return parts[1].decode("ascii", "replace") if len(parts) > 1 else "garbage"


def h1_slowloris(target: Target) -> str:
    """Ten connections each dripping a header line per second; the server must cut them off."""
    deadline = time.monotonic() + min(target.header_timeout + 8, ATTEMPT_LIMIT)
    sockets = []
    try:
        for _ in range(10):
            sock = _tls(target, "http/1.1")
            sock.sendall(b"GET / HTTP/1.1\r\nhost: localhost\r\n")
            sockets.append(sock)
        outcomes: list[str] = []
        beat = 0
        while sockets and time.monotonic() < deadline:
            readable, _, _ = select.select(sockets, [], [], 1.0)
            for sock in readable:
                outcomes.append(_status(sock, deadline))
                sockets.remove(sock)
                sock.close()
            beat += 1
            for sock in list(sockets):
                try:
                    sock.sendall(b"x-drip-%d: 1\r\n" % beat)
                except OSError:
                    outcomes.append("closed")
                    sockets.remove(sock)
                    sock.close()
        if sockets:
            return "held"  # past the header timeout and the margin: the defence failed
        return "+".join(sorted(set(outcomes)))
    finally:
        for sock in sockets:
            sock.close()


#: Request smuggling vectors (RFC 9112 §6.3, §5.2, §7.1) and invalid header fields.
SMUGGLING: Final = (
    b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n"
    b"0\r\n\r\n",
    b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 4\r\ncontent-length: 5\r\n\r\nabcde",
    b"GET / HTTP/1.1\r\nhost: a\r\nx-folded: a\r\n b\r\n\r\n",
    b"GET / HTTP/1.1\r\nhost: a\r\ncontent-length : 0\r\n\r\n",
    b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    b"GET / HTTP/1.1\r\nhost: a\r\nx-bad\x01name: 1\r\n\r\n",
    b"GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n",
    b"GET / HTTP/1.1\r\nhost: a\r\ncontent-length: -1\r\n\r\n",
)


def h1_smuggling(target: Target) -> str:
    """Each smuggling vector on its own connection; each must get a 4xx, never a 2xx or 5xx."""
    deadline = time.monotonic() + ATTEMPT_LIMIT
    outcomes = set()
    for vector in SMUGGLING:
        if time.monotonic() > deadline:
            outcomes.add("timeout")
            break
        with contextlib.closing(_tls(target, "http/1.1")) as sock:
            sock.sendall(vector)
            outcomes.add(_status(sock, deadline))
    return "+".join(sorted(outcomes))


def h1_oversized_headers(target: Target) -> str:
    """A 64 KiB header field (the HTTP/1.1 limit is 16 KiB): ``431``."""
    with contextlib.closing(_tls(target, "http/1.1")) as sock:
        # The server may answer and close before it has read it all.
        with contextlib.suppress(OSError):
            sock.sendall(b"GET / HTTP/1.1\r\nhost: a\r\nx-big: " + b"a" * 65536 + b"\r\n\r\n")
        return _status(sock, time.monotonic() + ATTEMPT_LIMIT)


# --- HTTP/2 -------------------------------------------------------------------------


def _frame(type_: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """A frame written by hand, so that it may break any rule (RFC 9113 §4.1)."""
    return (
        struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", type_, flags, stream_id) + payload
    )


_REQUEST: Final = [
    (b":method", b"GET"),
    (b":scheme", b"https"),
    (b":authority", b"localhost"),
    (b":path", b"/"),
]

#: A request the application answers after a second (bench/app.py).
_SLOW_REQUEST: Final = [*_REQUEST[:3], (b":path", b"/sleep/1000")]


@dataclass
class _H2:
    """A raw HTTP/2 connection: frames out by hand, frames in by hyperframe."""

    sock: ssl.SSLSocket
    encoder: Encoder = field(default_factory=Encoder)
    buffer: bytes = b""
    closed: bool = False

    @classmethod
    def open(cls, target: Target, settings: dict[int, int] | None = None) -> _H2:
        sock = _tls(target, "h2")
        payload = b"".join(struct.pack(">HI", k, v) for k, v in (settings or {}).items())
        sock.sendall(_PREFACE + _frame(_SETTINGS, 0, 0, payload))
        return cls(sock)

    def close(self) -> None:
        self.sock.close()

    def headers(self, stream_id: int, *, end_stream: bool, end_headers: bool = True) -> bytes:
        flags = (_END_STREAM if end_stream else 0) | (_END_HEADERS if end_headers else 0)
        return _frame(_HEADERS, flags, stream_id, self.encoder.encode(_REQUEST))

    def send(self, data: bytes) -> bool:
        """Send ``data``; False if the server no longer takes it."""
        try:
            self.sock.sendall(data)
        except OSError:
            return False
        return True

    def frames(self, wait: float) -> Iterator[Frame]:
        """The frames that arrive within ``wait`` seconds (fewer if the connection ends)."""
        deadline = time.monotonic() + wait
        while not self.closed:
            while len(self.buffer) >= 9:
                length = int.from_bytes(self.buffer[:3], "big")
                if len(self.buffer) < 9 + length:
                    break
                frame, _ = Frame.parse_frame_header(memoryview(self.buffer[:9]))
                frame.parse_body(memoryview(self.buffer[9 : 9 + length]))
                self.buffer = self.buffer[9 + length :]
                yield frame
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self.sock.settimeout(min(remaining, SOCKET_TIMEOUT))
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                self.closed = True
            self.buffer += chunk

    def outcome(self, wait: float, *, stream_errors: bool = False) -> str | None:
        """``GOAWAY(code)`` (or ``RST_STREAM(code)``) if the server sent one within ``wait``."""
        for frame in self.frames(wait):
            if isinstance(frame, GoAwayFrame):
                return f"GOAWAY({frame.error_code:#x})"
            if stream_errors and isinstance(frame, RstStreamFrame):
                return f"RST_STREAM({frame.error_code:#x})"
        return "closed" if self.closed else None


def _h2_flood(
    target: Target,
    unit: Callable[[_H2, int], bytes],
    *,
    opener: Callable[[_H2], bytes] | None = None,
) -> str:
    """Send ``unit(index)`` frames in batches until the server says GOAWAY (at most 20,000).

    ``opener`` makes what goes first (e.g. the request the frames belong to).
    """
    with contextlib.closing(_H2.open(target)) as h2:
        deadline = time.monotonic() + _FLOOD_TIME
        if opener is not None and not h2.send(opener(h2)):
            return h2.outcome(2.0) or "refused"
        for batch in range(100):
            data = b"".join(unit(h2, batch * 200 + index) for index in range(200))
            sent = h2.send(data)
            outcome = h2.outcome(0.0 if sent else 2.0)
            if outcome is not None:
                return outcome
            if not sent or time.monotonic() > deadline:
                break
        return h2.outcome(2.0) or "tolerated"


def h2_rapid_reset(target: Target) -> str:
    """CVE-2023-44487: streams opened and reset at once; ``GOAWAY(0xb)`` past the budget."""

    def unit(h2: _H2, index: int) -> bytes:
        stream_id = 2 * index + 1
        cancel = _frame(_RST_STREAM, 0, stream_id, struct.pack(">I", 0x8))
        block = h2.encoder.encode(_SLOW_REQUEST)
        return _frame(_HEADERS, _END_HEADERS, stream_id, block) + cancel

    return _h2_flood(target, unit)


def h2_continuation_flood(target: Target) -> str:
    """An endless header block of empty CONTINUATION frames; ``GOAWAY(0xb)``."""
    with contextlib.closing(_H2.open(target)) as h2:
        h2.send(h2.headers(1, end_stream=True, end_headers=False))
        empty = _frame(_CONTINUATION, 0, 1)
        for _ in range(100):
            sent = h2.send(empty * 200)
            outcome = h2.outcome(0.0 if sent else 2.0)
            if outcome is not None:
                return outcome
        return h2.outcome(2.0) or "tolerated"


def h2_settings_flood(target: Target) -> str:
    """SETTINGS frames, each one to acknowledge; ``GOAWAY(0xb)``."""
    return _h2_flood(target, lambda h2, index: _frame(_SETTINGS, 0, 0))


def h2_ping_flood(target: Target) -> str:
    """PING frames, each one to answer; ``GOAWAY(0xb)``."""
    return _h2_flood(target, lambda h2, index: _frame(_PING, 0, 0, struct.pack(">Q", index)))


def h2_priority_flood(target: Target) -> str:
    """PRIORITY frames for idle streams; ``GOAWAY(0xb)``."""

    def unit(h2: _H2, index: int) -> bytes:
        return _frame(_PRIORITY, 0, 2 * index + 101, struct.pack(">IB", 0, 15))

    return _h2_flood(target, unit)


def h2_empty_data_flood(target: Target) -> str:
    """Empty DATA frames on an open request; ``GOAWAY(0xb)``."""
    post = [(b":method", b"POST"), *_REQUEST[1:]]
    return _h2_flood(
        target,
        lambda h2, index: _frame(_DATA, 0, 1),
        opener=lambda h2: _frame(_HEADERS, _END_HEADERS, 1, h2.encoder.encode(post)),
    )


def h2_hpack_bomb(target: Target) -> str:
    """A 4 KB dynamic table entry referenced 16,000 times (64 MB decoded); ``GOAWAY(0xb)``."""
    with contextlib.closing(_H2.open(target)) as h2:
        big = (b"x-bomb", b"b" * 4000)
        first = h2.encoder.encode([*_REQUEST, big])  # literal with incremental indexing
        h2.send(_frame(_HEADERS, _END_STREAM | _END_HEADERS, 1, first))
        bomb = h2.encoder.encode(_REQUEST) + b"\xbe" * 16_000  # index 62: the entry
        h2.send(_frame(_HEADERS, _END_STREAM | _END_HEADERS, 3, bomb))
        return h2.outcome(5.0) or "tolerated"


def h2_zero_window_stall(target: Target) -> str:
    """A 10 MB download with a zero window, never opened: the server holds, and answers PING."""
    with contextlib.closing(_H2.open(target, {_SETTINGS_INITIAL_WINDOW_SIZE: 0})) as h2:
        block = h2.encoder.encode([*_REQUEST[:3], (b":path", b"/bytes/10485760")])
        h2.send(_frame(_HEADERS, _END_STREAM | _END_HEADERS, 1, block))
        data = 0
        for frame in h2.frames(2.0):
            if isinstance(frame, GoAwayFrame):
                return f"GOAWAY({frame.error_code:#x})"
            data += len(getattr(frame, "data", b"")) if frame.type == _DATA else 0
        if data:
            return f"sent {data} bytes past a zero window"
        h2.send(_frame(_PING, 0, 0, b"stalled!"))
        for frame in h2.frames(3.0):
            if isinstance(frame, PingFrame) and "ACK" in frame.flags:
                return "stalled+PING answered"
        return "closed" if h2.closed else "PING unanswered"


def h2_too_many_streams(target: Target) -> str:
    """101 streams open at once (the limit is 100): the last is refused."""
    with contextlib.closing(_H2.open(target)) as h2:
        data = b"".join(h2.headers(2 * index + 1, end_stream=False) for index in range(101))
        h2.send(data)
        return h2.outcome(5.0, stream_errors=True) or "tolerated"


# --- HTTP/3 -------------------------------------------------------------------------


class _H3:
    """aioquic's QUIC layer over a UDP socket, with HTTP/3 frames written by hand."""

    def __init__(self, target: Target) -> None:
        configuration = QuicConfiguration(is_client=True, alpn_protocols=["h3"])
        configuration.load_verify_locations(target.cafile)
        configuration.server_name = "localhost"
        self.address = (target.host, target.port)
        self.quic = QuicConnection(configuration=configuration)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.closed_code: int | None = None
        self.resets: dict[int, int] = {}
        self.answered: set[int] = set()
        self.handshaken = False
        self.quic.connect(self.address, now=time.monotonic())
        self.pump(
            until=lambda: self.handshaken or self.closed_code is not None, wait=SOCKET_TIMEOUT
        )
        if not self.handshaken:
            self.close()
            raise TimeoutError("no QUIC handshake")
        self.encoder = pylsqpack.Encoder()
        control = encode_uint_var(StreamType.CONTROL) + encode_frame(FrameType.SETTINGS, b"")
        self.uni_stream(control)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.quic.close()
            self._flush()
        self.sock.close()

    def _flush(self) -> None:
        for data, address in self.quic.datagrams_to_send(now=time.monotonic()):
            self.sock.sendto(data, address)

    def pump(self, *, until: Callable[[], bool] = lambda: False, wait: float) -> None:
        """Move datagrams for ``wait`` seconds at most: until ``until()`` or the connection ends."""
        deadline = time.monotonic() + wait
        while True:
            self._flush()
            if until() or self.closed_code is not None:
                return
            now = time.monotonic()
            if now >= deadline:
                return
            timer = self.quic.get_timer()
            timeout = deadline - now if timer is None else max(0.0, min(deadline, timer) - now)
            readable, _, _ = select.select([self.sock], [], [], min(timeout, 0.2))
            now = time.monotonic()
            for _ in range(100 if readable else 0):  # what has arrived, bounded
                try:
                    data, address = self.sock.recvfrom(65536, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    break
                self.quic.receive_datagram(data, address, now=now)
            if timer is not None and timer <= now:
                self.quic.handle_timer(now)
            self._events()

    def _events(self) -> None:
        while (event := self.quic.next_event()) is not None:
            if isinstance(event, quic_events.HandshakeCompleted):
                self.handshaken = True
            elif isinstance(event, quic_events.ConnectionTerminated):
                self.closed_code = event.error_code
            elif isinstance(event, quic_events.StreamReset):
                self.resets[event.stream_id] = event.error_code
            elif isinstance(event, quic_events.StreamDataReceived) and event.end_stream:
                self.answered.add(event.stream_id)

    def uni_stream(self, data: bytes) -> int:
        stream_id = self.quic.get_next_available_stream_id(is_unidirectional=True)
        self.quic.send_stream_data(stream_id, data)
        return stream_id

    def request(self, frames: bytes | None = None, *, end_stream: bool = True) -> int:
        """Open a request stream with ``frames`` (a GET of ``/`` if ``None``)."""
        stream_id = self.quic.get_next_available_stream_id()
        if frames is None:
            _, block = self.encoder.encode(stream_id, _REQUEST)
            frames = encode_frame(FrameType.HEADERS, block)
        self.quic.send_stream_data(stream_id, frames, end_stream)
        return stream_id

    def outcome(self, wait: float) -> str | None:
        self.pump(wait=wait)
        return None if self.closed_code is None else f"closed({self.closed_code:#x})"


@contextlib.contextmanager
def _h3(target: Target) -> Iterator[_H3]:
    h3 = _H3(target)
    try:
        yield h3
    finally:
        h3.close()


def h3_rapid_reset(target: Target) -> str:
    """Request streams opened and reset at once; ``closed(0x107)`` (H3_EXCESSIVE_LOAD).

    The requests are for ``/sleep/1000``, so that none completes (and earns
    its reset back) before it is reset. Streams stay within the server's
    stream limit: aioquic would send RESET_STREAM even for a stream it holds
    back for want of credit, which is a stream limit error.
    """
    with _h3(target) as h3:
        deadline = time.monotonic() + _FLOOD_TIME
        frames = None
        for index in range(1000):
            stream_id = h3.quic.get_next_available_stream_id()
            while stream_id // 4 >= h3.quic._remote_max_streams_bidi:  # wait for credit
                if (outcome := h3.outcome(0.05)) is not None:
                    return outcome
                if time.monotonic() > deadline:
                    return "tolerated"
            if frames is None:
                _, block = h3.encoder.encode(stream_id, _SLOW_REQUEST)
                frames = encode_frame(FrameType.HEADERS, block)
            h3.request(frames, end_stream=False)
            h3.quic.reset_stream(stream_id, H3_REQUEST_CANCELLED)
            if index % 20 == 19 and (outcome := h3.outcome(0.01)) is not None:
                return outcome
            if time.monotonic() > deadline:
                break
        return h3.outcome(_H3_WAIT) or "tolerated"


def h3_reserved_frame_flood(target: Target) -> str:
    """20,000 reserved frames (RFC 9114 §7.2.8) before a request.

    Past the server's flood budget (RFC 9114 §10.5): ``closed(0x107)``
    (H3_EXCESSIVE_LOAD); a server with a larger budget skips them and
    answers the request (``ignored+answered``).
    """
    with _h3(target) as h3:
        flood = encode_frame(0x21, b"") * 20_000
        stream_id = h3.request(flood + encode_frame(FrameType.HEADERS, _static_block()))
        h3.pump(until=lambda: stream_id in h3.answered, wait=_H3_WAIT)
        if h3.closed_code is not None:
            return f"closed({h3.closed_code:#x})"
        return "ignored+answered" if stream_id in h3.answered else "unanswered"


def _static_block() -> bytes:
    _, block = pylsqpack.Encoder().encode(0, _REQUEST)
    return bytes(block)


def h3_too_many_streams(target: Target) -> str:
    """110 request streams against a limit of 100: ``closed(0x4)`` (STREAM_LIMIT_ERROR)."""
    with _h3(target) as h3:
        h3.quic._remote_max_streams_bidi = 1000  # pretend the server allowed more
        for _ in range(110):
            h3.request(end_stream=False)
        return h3.outcome(_H3_WAIT) or "tolerated"


def h3_qpack_blocked_streams(target: Target) -> str:
    """33 header blocks waiting on inserts never sent (the limit is 16): ``closed(0x200)``."""
    with _h3(target) as h3:
        for _ in range(33):
            # Required Insert Count 1 (RFC 9204 §4.5.1.1): blocked until an insert arrives.
            h3.request(encode_frame(FrameType.HEADERS, b"\x02\x00\x80"), end_stream=False)
        return h3.outcome(_H3_WAIT) or "tolerated"


#: Every attack of the soak, with the outcomes that mean the server held.
ATTACKS: Final = (
    Attack(
        name="h1 slowloris",
        version="1.1",
        run=h1_slowloris,
        expected=frozenset({"408", "closed", "408+closed"}),
    ),
    Attack(
        name="h1 smuggling",
        version="1.1",
        run=h1_smuggling,
        # 501 for a transfer coding other than chunked (RFC 9112 §6.1).
        expected=frozenset({"400", "400+501"}),
    ),
    Attack(
        name="h1 oversized headers",
        version="1.1",
        run=h1_oversized_headers,
        expected=frozenset({"431"}),
    ),
    Attack(
        name="h2 rapid reset", version="2", run=h2_rapid_reset, expected=frozenset({"GOAWAY(0xb)"})
    ),
    Attack(
        name="h2 CONTINUATION flood",
        version="2",
        run=h2_continuation_flood,
        expected=frozenset({"GOAWAY(0xb)"}),
    ),
    Attack(
        name="h2 SETTINGS flood",
        version="2",
        run=h2_settings_flood,
        expected=frozenset({"GOAWAY(0xb)"}),
    ),
    Attack(
        name="h2 PING flood", version="2", run=h2_ping_flood, expected=frozenset({"GOAWAY(0xb)"})
    ),
    Attack(
        name="h2 PRIORITY flood",
        version="2",
        run=h2_priority_flood,
        expected=frozenset({"GOAWAY(0xb)"}),
    ),
    Attack(
        name="h2 empty DATA flood",
        version="2",
        run=h2_empty_data_flood,
        expected=frozenset({"GOAWAY(0xb)"}),
    ),
    Attack(
        name="h2 HPACK bomb", version="2", run=h2_hpack_bomb, expected=frozenset({"GOAWAY(0xb)"})
    ),
    Attack(
        name="h2 zero-window stall",
        version="2",
        run=h2_zero_window_stall,
        expected=frozenset({"stalled+PING answered"}),
    ),
    Attack(
        name="h2 too many streams",
        version="2",
        run=h2_too_many_streams,
        expected=frozenset({"RST_STREAM(0x7)", "GOAWAY(0x1)"}),
    ),
    Attack(
        name="h3 rapid reset",
        version="3",
        run=h3_rapid_reset,
        expected=frozenset({"closed(0x107)"}),
    ),
    Attack(
        name="h3 reserved-frame flood",
        version="3",
        run=h3_reserved_frame_flood,
        expected=frozenset({"closed(0x107)", "ignored+answered"}),
    ),
    Attack(
        name="h3 too many streams",
        version="3",
        run=h3_too_many_streams,
        expected=frozenset({"closed(0x4)"}),
    ),
    Attack(
        name="h3 QPACK blocked streams",
        version="3",
        run=h3_qpack_blocked_streams,
        expected=frozenset({"closed(0x200)"}),
    ),
)
