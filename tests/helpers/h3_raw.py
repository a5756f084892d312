"""A raw HTTP/3 client for conformance and fuzz tests of hface's HTTP/3 server.

The client is aioquic's ``QuicConnection`` with no HTTP/3 layer: tests write
HTTP/3 frames straight onto QUIC streams. Datagrams move in memory on a
clock the client advances; nothing touches the network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pylsqpack
from aioquic.buffer import encode_uint_var
from aioquic.h3.connection import FrameType, StreamType, encode_frame
from aioquic.quic import events as quic_events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

from hface.common import ServerTLSConfig
from hface.events import Event
from hface.protocols import HTTPOverQUICProtocol
from hface.protocols.http3 import HTTP3ServerFactory
from tests.helpers.quic_pair import CLIENT_ADDRESS, SERVER_ADDRESS, certificates

H3_NO_ERROR = 0x100
H3_STREAM_CREATION_ERROR = 0x103
H3_CLOSED_CRITICAL_STREAM = 0x104
H3_FRAME_UNEXPECTED = 0x105
H3_FRAME_ERROR = 0x106
H3_EXCESSIVE_LOAD = 0x107
H3_ID_ERROR = 0x108
H3_SETTINGS_ERROR = 0x109
H3_MISSING_SETTINGS = 0x10A
H3_MESSAGE_ERROR = 0x10E
QPACK_DECOMPRESSION_FAILED = 0x200
QPACK_ENCODER_STREAM_ERROR = 0x201
QPACK_DECODER_STREAM_ERROR = 0x202

#: A valid request header list (RFC 9114 §4.3.1).
REQUEST = [
    (b":method", b"GET"),
    (b":scheme", b"https"),
    (b":authority", b"localhost"),
    (b":path", b"/"),
]


def settings_frame(settings: dict[int, int] | None = None) -> bytes:
    """Return a SETTINGS frame (RFC 9114 §7.2.4) holding ``settings``."""
    payload = b"".join(
        encode_uint_var(key) + encode_uint_var(value) for key, value in (settings or {}).items()
    )
    return encode_frame(FrameType.SETTINGS, payload)


def headers_frame(headers: list[tuple[bytes, bytes]], stream_id: int = 0) -> bytes:
    """Return a HEADERS frame with ``headers`` QPACK-encoded (static table only)."""
    _, block = pylsqpack.Encoder().encode(stream_id, headers)
    return encode_frame(FrameType.HEADERS, block)


@dataclass
class RawH3Client:
    """A QUIC client that speaks HTTP/3 by hand to an hface server in memory."""

    server: HTTPOverQUICProtocol
    quic: QuicConnection
    now: float = 1000.0
    closed_code: int | None = None
    resets: dict[int, int] = field(default_factory=dict)
    server_events: list[Event] = field(default_factory=list)
    #: The bytes the server sent on each stream, and the streams it ended.
    received: dict[int, bytes] = field(default_factory=dict)
    ended: set[int] = field(default_factory=set)

    def transfer(self, rounds: int = 200) -> None:
        """Exchange datagrams until both sides are quiet (bounded in rounds)."""
        for _ in range(rounds):
            moved = False
            self.server.clock(self.now)
            for data, _ in self.quic.datagrams_to_send(now=self.now):
                self.server.datagram_received((data, CLIENT_ADDRESS))
                moved = True
            for data, _ in self.server.datagrams_to_send():
                self.quic.receive_datagram(data, SERVER_ADDRESS, now=self.now)
                moved = True
            while (event := self.server.next_event()) is not None:
                self.server_events.append(event)
            self._drain()
            close = self.quic._close_event  # set on receipt; the event waits for draining
            if close is not None and self.closed_code is None:
                self.closed_code = close.error_code
            if not moved:
                # Let acknowledgement delays and pacing run, never the idle timeout.
                timers = [t for t in (self.quic.get_timer(), self.server.get_timer()) if t]
                if not timers or min(timers) > self.now + 0.05:
                    return
                self.now = max(self.now, min(timers))
                client_timer = self.quic.get_timer()
                if client_timer is not None and client_timer <= self.now:
                    self.quic.handle_timer(self.now)
        raise AssertionError("the exchange never became quiet")

    def _drain(self) -> None:
        while (event := self.quic.next_event()) is not None:
            if isinstance(event, quic_events.ConnectionTerminated):
                self.closed_code = event.error_code
            elif isinstance(event, quic_events.StreamReset):
                self.resets[event.stream_id] = event.error_code
            elif isinstance(event, quic_events.StopSendingReceived):
                self.resets.setdefault(event.stream_id, event.error_code)
            elif isinstance(event, quic_events.StreamDataReceived):
                stream_id = event.stream_id
                self.received[stream_id] = self.received.get(stream_id, b"") + event.data
                if event.end_stream:
                    self.ended.add(stream_id)

    def uni_stream(self, stream_type: int, data: bytes = b"", end_stream: bool = False) -> int:
        """Open a unidirectional stream of ``stream_type`` and send ``data`` on it."""
        stream_id = self.quic.get_next_available_stream_id(is_unidirectional=True)
        self.quic.send_stream_data(stream_id, encode_uint_var(stream_type) + data, end_stream)
        return stream_id

    def request_stream(self, data: bytes, end_stream: bool = True) -> int:
        """Open a request stream and send ``data`` (raw frames) on it."""
        stream_id = self.quic.get_next_available_stream_id()
        self.quic.send_stream_data(stream_id, data, end_stream)
        return stream_id

    def open_control(self, data: bytes | None = None) -> int:
        """Open the client's control stream; SETTINGS first unless ``data`` is given."""
        return self.uni_stream(StreamType.CONTROL, settings_frame() if data is None else data)

    def server_uni_stream(self, stream_type: int) -> bytes:
        """What the server sent on its unidirectional stream of ``stream_type`` (type excluded)."""
        prefix = encode_uint_var(stream_type)
        for stream_id, data in self.received.items():
            if stream_id % 4 == 3 and data.startswith(prefix):
                return data[len(prefix) :]
        return b""

    def error_code(self, stream_id: int | None = None) -> int | None:
        """The connection's close code, or else the reset code of ``stream_id``."""
        if self.closed_code is not None:
            return self.closed_code
        return None if stream_id is None else self.resets.get(stream_id)


def connect(**options: Any) -> RawH3Client:
    """Return a raw client handshaken with an hface HTTP/3 server."""
    cafile, certfile, keyfile = certificates()
    server = HTTP3ServerFactory(**options)(
        tls_config=ServerTLSConfig(certfile=certfile, keyfile=keyfile)
    )
    configuration = QuicConfiguration(is_client=True, alpn_protocols=["h3"])
    configuration.load_verify_locations(cafile)
    configuration.server_name = "localhost"
    quic = QuicConnection(configuration=configuration)
    client = RawH3Client(server=server, quic=quic)
    server.clock(client.now)
    quic.connect(SERVER_ADDRESS, now=client.now)
    client.transfer()
    assert server.handshake_completed
    assert client.closed_code is None
    return client
