"""Behaviour every HTTP version shares, through the shared interface only.

Each test runs on in-memory pairs of the default HTTP/1.1, HTTP/2 and HTTP/3
implementations, and of HTTP/1.1 with the server on httptools
(tests.helpers.pairs), and sees only ``hface.protocols`` methods and
``hface.events`` values.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hface.common import HeadersType
from hface.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    GoawayReceived,
    HeadersReceived,
    StreamResetReceived,
    StreamResetSent,
)
from hface.protocols import HTTPOverQUICProtocol, HTTPOverTCPProtocol, HTTPProtocol
from tests.helpers.pairs import HTTP_IMPLEMENTATIONS, ProtocolPair, make_pair, random_chunks

MULTIPLEXED = ("2", "3")

REQUEST: HeadersType = [
    (b":method", b"GET"),
    (b":scheme", b"https"),
    (b":authority", b"example.com"),
    (b":path", b"/index.html?q=1"),
    (b"user-agent", b"hface-test"),
]


def _post(length: int | None = None) -> list[tuple[bytes, bytes]]:
    headers = [
        (b":method", b"POST"),
        (b":scheme", b"https"),
        (b":authority", b"example.com"),
        (b":path", b"/upload"),
    ]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    return headers


def _field(headers: HeadersType, name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


class Receiver:
    """Collects one side's events; acknowledges data as it arrives, if asked."""

    def __init__(self, protocol: HTTPProtocol, *, acknowledge: bool = True) -> None:
        self.protocol = protocol
        self.acknowledge = acknowledge
        self.events: list[Event] = []
        self.bodies: dict[int, bytearray] = {}
        self.ended: set[int] = set()

    def poll(self) -> list[Event]:
        new = []
        while (event := self.protocol.next_event()) is not None:
            new.append(event)
            if isinstance(event, DataReceived):
                self.bodies.setdefault(event.stream_id, bytearray()).extend(event.data)
                if self.acknowledge:
                    self.protocol.acknowledge_received_data(event.stream_id, len(event.data))
            if isinstance(event, HeadersReceived | DataReceived) and event.end_stream:
                self.ended.add(event.stream_id)
        self.events.extend(new)
        return new

    def headers(self, stream_id: int) -> list[HeadersReceived]:
        return [
            event
            for event in self.events
            if isinstance(event, HeadersReceived) and event.stream_id == stream_id
        ]


def _run(pair: ProtocolPair, *receivers: Receiver, rounds: int = 100_000) -> None:
    """Transfer and poll until nothing moves any more."""
    for _ in range(rounds):
        moved = pair.transfer()
        polled = sum(len(receiver.poll()) for receiver in receivers)
        if not moved and not polled:
            return
    raise AssertionError("the pair never went quiet")


def _send_get(pair: ProtocolPair, client: Receiver, server: Receiver) -> int:
    """Send :data:`REQUEST` (no body) and run the pair until quiet; return its stream ID."""
    stream_id = pair.client.get_available_stream_id()
    pair.client.submit_headers(stream_id, REQUEST, end_stream=True)
    _run(pair, client, server)
    return stream_id


@pytest.mark.parametrize("http_version", HTTP_IMPLEMENTATIONS)
def test_get_without_body(http_version: str) -> None:
    pair = make_pair(http_version)
    client, server = Receiver(pair.client), Receiver(pair.server)
    stream_id = _send_get(pair, client, server)

    [request] = server.events
    assert isinstance(request, HeadersReceived)
    assert request.end_stream
    pseudo = [name for name, _ in request.headers if name.startswith(b":")]
    assert sorted(pseudo) == [b":authority", b":method", b":path", b":scheme"]
    assert [name for name, _ in request.headers[: len(pseudo)]] == pseudo  # pseudo first
    assert _field(request.headers, b":method") == b"GET"
    assert _field(request.headers, b":authority") == b"example.com"
    assert _field(request.headers, b":path") == b"/index.html?q=1"
    assert _field(request.headers, b"user-agent") == b"hface-test"

    server_stream = request.stream_id
    pair.server.submit_headers(server_stream, [(b":status", b"200"), (b"content-length", b"5")])
    pair.server.submit_data(server_stream, b"hello", end_stream=True)
    _run(pair, client, server)

    [response] = client.headers(stream_id)
    assert _field(response.headers, b":status") == b"200"
    assert bytes(client.bodies[stream_id]) == b"hello"
    assert stream_id in client.ended


@pytest.mark.parametrize("http_version", HTTP_IMPLEMENTATIONS)
def test_request_with_body(http_version: str) -> None:
    pair = make_pair(http_version)
    client, server = Receiver(pair.client), Receiver(pair.server)
    stream_id = pair.client.get_available_stream_id()
    pair.client.submit_headers(stream_id, _post(11))
    pair.client.submit_data(stream_id, b"hello ")
    pair.client.submit_data(stream_id, b"world", end_stream=True)
    _run(pair, client, server)

    [request] = server.headers(server.events[0].stream_id)  # type: ignore[attr-defined]
    assert _field(request.headers, b":method") == b"POST"
    assert not request.end_stream
    assert bytes(server.bodies[request.stream_id]) == b"hello world"
    assert request.stream_id in server.ended

    pair.server.submit_headers(request.stream_id, [(b":status", b"204")], end_stream=True)
    _run(pair, client, server)
    [response] = client.headers(stream_id)
    assert _field(response.headers, b":status") == b"204"
    assert response.end_stream


@pytest.mark.parametrize("http_version", HTTP_IMPLEMENTATIONS)
def test_ten_mib_upload_in_random_chunks(http_version: str) -> None:
    rng = random.Random(2024)
    body = rng.randbytes(10 * 1024 * 1024)
    pair = make_pair(http_version, chunker=random_chunks(seed=7, max_size=70_000))
    client, server = Receiver(pair.client), Receiver(pair.server)
    stream_id = pair.client.get_available_stream_id()
    pair.client.submit_headers(stream_id, _post())
    offset = 0
    while offset < len(body):
        size = rng.randint(1, 300_000)
        chunk = body[offset : offset + size]
        offset += len(chunk)
        pair.client.submit_data(stream_id, chunk, end_stream=offset >= len(body))
        _run(pair, client, server)
    _run(pair, client, server)

    [server_stream] = {event.stream_id for event in server.events}  # type: ignore[attr-defined]
    received = bytes(server.bodies[server_stream])
    assert len(received) == len(body)
    assert hashlib.sha256(received).digest() == hashlib.sha256(body).digest()
    assert server_stream in server.ended
    assert pair.client.get_pending_data_size(stream_id) == 0


@pytest.mark.parametrize("http_version", HTTP_IMPLEMENTATIONS)
def test_response_trailers(http_version: str) -> None:
    pair = make_pair(http_version)
    client, server = Receiver(pair.client), Receiver(pair.server)
    stream_id = pair.client.get_available_stream_id()
    pair.client.submit_headers(stream_id, [*REQUEST, (b"te", b"trailers")], end_stream=True)
    _run(pair, client, server)
    request_stream = server.events[0].stream_id  # type: ignore[attr-defined]

    pair.server.submit_headers(request_stream, [(b":status", b"200")])
    pair.server.submit_data(request_stream, b"body")
    pair.server.submit_headers(request_stream, [(b"x-checksum", b"abc")], end_stream=True)
    _run(pair, client, server)

    response, trailers = client.headers(stream_id)
    assert _field(response.headers, b":status") == b"200"
    assert not response.end_stream
    assert trailers.end_stream
    assert list(trailers.headers) == [(b"x-checksum", b"abc")]
    assert bytes(client.bodies[stream_id]) == b"body"


def _pair_with_stream_limit(http_version: str, limit: int) -> ProtocolPair:
    return make_pair(http_version, max_concurrent_streams=limit)


@pytest.mark.parametrize("http_version", MULTIPLEXED)
def test_a_thousand_concurrent_streams(http_version: str) -> None:
    pair = _pair_with_stream_limit(http_version, 1000)
    client, server = Receiver(pair.client), Receiver(pair.server)
    stream_ids = []
    for _ in range(1000):
        assert pair.client.is_available()
        stream_id = pair.client.get_available_stream_id()
        pair.client.submit_headers(stream_id, REQUEST, end_stream=True)
        stream_ids.append(stream_id)
    _run(pair, client, server)
    requests = [event for event in server.events if isinstance(event, HeadersReceived)]
    assert len(requests) == 1000
    # All 1,000 are open at once on the server before any response.
    for request in requests:
        body = str(request.stream_id).encode()
        pair.server.submit_headers(request.stream_id, [(b":status", b"200")])
        pair.server.submit_data(request.stream_id, body, end_stream=True)
    _run(pair, client, server)
    assert client.ended == set(stream_ids)
    for stream_id in stream_ids:
        assert bytes(client.bodies[stream_id]) == str(stream_id).encode()


@pytest.mark.parametrize("http_version", MULTIPLEXED)
def test_client_resets_a_stream(http_version: str) -> None:
    pair = make_pair(http_version)
    client, server = Receiver(pair.client), Receiver(pair.server)
    stream_id = pair.client.get_available_stream_id()
    pair.client.submit_headers(stream_id, _post())
    pair.client.submit_data(stream_id, b"partial")
    _run(pair, client, server)
    pair.client.submit_stream_reset(stream_id, pair.client.error_codes.cancel)
    _run(pair, client, server)
    resets = [event for event in server.events if isinstance(event, StreamResetReceived)]
    assert resets == [
        StreamResetReceived(stream_id=stream_id, error_code=pair.client.error_codes.cancel)
    ]
    # The connection goes on: a new stream works.
    test_stream = pair.client.get_available_stream_id()
    assert test_stream != stream_id
    pair.client.submit_headers(test_stream, REQUEST, end_stream=True)
    _run(pair, client, server)
    assert test_stream in server.ended


@pytest.mark.parametrize("http_version", MULTIPLEXED)
def test_server_resets_a_stream(http_version: str) -> None:
    pair = make_pair(http_version)
    client, server = Receiver(pair.client), Receiver(pair.server)
    stream_id = _send_get(pair, client, server)
    code = pair.server.error_codes.refused_stream
    pair.server.submit_stream_reset(stream_id, code)
    _run(pair, client, server)
    assert [e for e in client.events if isinstance(e, StreamResetReceived)] == [
        StreamResetReceived(stream_id=stream_id, error_code=code)
    ]


@pytest.mark.parametrize("http_version", ["1.1", "1.1-httptools"])
def test_http1_reset_closes_the_connection(http_version: str) -> None:
    pair = make_pair(http_version)
    client, server = Receiver(pair.client), Receiver(pair.server)
    stream_id = pair.client.get_available_stream_id()
    pair.client.submit_headers(stream_id, _post())
    pair.client.submit_data(stream_id, b"partial")
    _run(pair, client, server)
    pair.client.submit_stream_reset(stream_id, pair.client.error_codes.cancel)
    assert pair.client.has_expired()
    assert not pair.client.is_available()
    # What the connection layer does next: close the transport.
    assert isinstance(pair.server, HTTPOverTCPProtocol)
    pair.server.eof_received()
    server.poll()
    assert any(isinstance(event, StreamResetReceived) for event in server.events)
    assert isinstance(server.events[-1], ConnectionTerminated)


@pytest.mark.parametrize("http_version", HTTP_IMPLEMENTATIONS)
def test_graceful_close_lets_the_stream_in_flight_finish(http_version: str) -> None:
    pair = make_pair(http_version)
    client, server = Receiver(pair.client), Receiver(pair.server)
    stream_id = _send_get(pair, client, server)
    request_stream = server.events[0].stream_id  # type: ignore[attr-defined]

    pair.server.submit_headers(request_stream, [(b":status", b"200")])
    pair.server.submit_goaway()
    assert pair.server.has_expired()
    pair.server.submit_data(request_stream, b"still sent", end_stream=True)
    _run(pair, client, server)

    assert bytes(client.bodies[stream_id]) == b"still sent"
    assert stream_id in client.ended
    if http_version.startswith("1.1"):
        # The headers left before the close: the client learns of it from the
        # TCP close that the connection layer makes once the server expired.
        assert isinstance(pair.client, HTTPOverTCPProtocol)
        pair.client.eof_received()
        client.poll()
        assert isinstance(client.events[-1], ConnectionTerminated)
    assert not pair.client.is_available()
    if http_version in MULTIPLEXED:
        goaways = [event for event in client.events if isinstance(event, GoawayReceived)]
        assert len(goaways) == 1
        assert goaways[0].error_code == pair.client.error_codes.no_error
        assert goaways[0].last_stream_id >= stream_id
    else:
        assert pair.client.has_expired()


@pytest.mark.parametrize("http_version", HTTP_IMPLEMENTATIONS)
def test_a_shutdown_notice_still_takes_the_request_on_its_way(http_version: str) -> None:
    """The first step of a graceful close (RFC 9113 §6.8): the request sent meanwhile is served.

    The client sends its request before the notice reaches it; the server
    takes it, and the GOAWAY that follows names it as the last.
    """
    pair = make_pair(http_version)
    client, server = Receiver(pair.client), Receiver(pair.server)
    pair.server.submit_shutdown_notice()
    assert not pair.server.has_expired()
    stream_id = _send_get(pair, client, server)

    [request] = [event for event in server.events if isinstance(event, HeadersReceived)]
    pair.server.submit_headers(request.stream_id, [(b":status", b"200")])
    pair.server.submit_data(request.stream_id, b"served", end_stream=True)
    pair.server.submit_goaway()
    _run(pair, client, server)

    assert bytes(client.bodies[stream_id]) == b"served"
    assert not any(isinstance(event, StreamResetReceived) for event in client.events)
    assert pair.server.has_expired()
    if http_version in MULTIPLEXED:
        goaways = [event for event in client.events if isinstance(event, GoawayReceived)]
        assert [goaway.last_stream_id >= stream_id for goaway in goaways] == [True, True]
        assert goaways[0].last_stream_id > goaways[1].last_stream_id == stream_id
    else:  # the answer to the request on its way said it was the last
        assert pair.client.has_expired()


@pytest.mark.parametrize("http_version", ["1.1", "1.1-httptools"])
def test_a_shutdown_notice_between_http1_exchanges_closes_at_once(http_version: str) -> None:
    """A keep-alive connection idle after its first exchange has nothing on its way."""
    pair = make_pair(http_version)
    client, server = Receiver(pair.client), Receiver(pair.server)
    _send_get(pair, client, server)
    [request] = server.events
    assert isinstance(request, HeadersReceived)
    pair.server.submit_headers(request.stream_id, [(b":status", b"204")], end_stream=True)
    _run(pair, client, server)
    assert not pair.server.has_expired()

    pair.server.submit_shutdown_notice()
    assert pair.server.has_expired()


@pytest.mark.parametrize("http_version", MULTIPLEXED)
def test_a_consumer_that_never_acknowledges_stalls_the_sender(http_version: str) -> None:
    body = random.Random(1).randbytes(8 * 1024 * 1024)
    pair = make_pair(http_version)
    client = Receiver(pair.client, acknowledge=False)
    server = Receiver(pair.server)
    stream_id = _send_get(pair, client, server)

    pair.server.submit_headers(stream_id, [(b":status", b"200")])
    pair.server.submit_data(stream_id, body, end_stream=True)
    _run(pair, client, server)

    received = len(client.bodies.get(stream_id, b""))
    held = pair.server.get_pending_data_size(stream_id)
    # The receiver got no more than a window's worth; the rest waits in the sender.
    assert 0 < received <= 4 * 1024 * 1024
    assert held > 0
    assert received + held >= len(body) - 64 * 1024  # only in-flight bytes unaccounted
    assert stream_id not in client.ended

    client.acknowledge = True
    pair.client.acknowledge_received_data(stream_id, received)
    _run(pair, client, server)
    assert stream_id in client.ended
    assert hashlib.sha256(bytes(client.bodies[stream_id])).digest() == hashlib.sha256(body).digest()
    assert pair.server.get_pending_data_size(stream_id) == 0


# --- Bad input never escapes as an exception --------------------------------


def _valid_client_bytes(http_version: str) -> list[bytes]:
    """What a real client sends for a POST, captured from the client protocol."""
    pair = make_pair(http_version)
    stream_id = pair.client.get_available_stream_id()
    pair.client.submit_headers(stream_id, _post(5))
    pair.client.submit_data(stream_id, b"hello", end_stream=True)
    if isinstance(pair.client, HTTPOverTCPProtocol):
        return [pair.client.bytes_to_send()]
    assert isinstance(pair.client, HTTPOverQUICProtocol)
    return [payload for payload, _ in pair.client.datagrams_to_send()]


def _feed_server(http_version: str, pieces: Sequence[bytes]) -> list[Event]:
    pair = make_pair(http_version)
    server = pair.server
    for piece in pieces:
        if isinstance(server, HTTPOverTCPProtocol):
            server.bytes_received(piece)
            server.bytes_to_send()
        else:
            assert isinstance(server, HTTPOverQUICProtocol)
            server.datagram_received((piece, ("127.0.0.1", 4433)))
            server.datagrams_to_send()
    events = []
    while (event := server.next_event()) is not None:
        events.append(event)
    return events


@st.composite
def _mutations(draw: st.DrawFn, original: bytes) -> bytes:
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 8))):
        if not data:
            break
        position = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if action == "flip":
            data[position] ^= draw(st.integers(1, 255))
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        elif action == "delete":
            del data[position : position + draw(st.integers(1, 16))]
        else:
            del data[position:]
    return bytes(data)


_FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.mark.parametrize("http_version", HTTP_IMPLEMENTATIONS)
@_FUZZ
@given(data=st.lists(st.binary(max_size=1500), min_size=1, max_size=5))
def test_server_survives_random_bytes(http_version: str, data: list[bytes]) -> None:
    for event in _feed_server(http_version, data):
        assert isinstance(event, Event)


@pytest.mark.parametrize("http_version", HTTP_IMPLEMENTATIONS)
@_FUZZ
@given(data=st.data())
def test_server_survives_mutated_requests(http_version: str, data: st.DataObject) -> None:
    pieces = [data.draw(_mutations(piece)) for piece in _valid_client_bytes(http_version)]
    for event in _feed_server(http_version, pieces):
        assert isinstance(event, Event)


@pytest.mark.parametrize("http_version", HTTP_IMPLEMENTATIONS)
def test_a_reset_we_submit_is_reported(http_version: str) -> None:
    """Whoever consumes events learns the stream ended, whichever side reset it."""
    pair = make_pair(http_version)
    stream_id = pair.client.get_available_stream_id()
    pair.client.submit_headers(stream_id, _post())
    code = pair.client.error_codes.cancel
    pair.client.submit_stream_reset(stream_id, code)
    events = pair.client_events()
    assert events[0] == StreamResetSent(stream_id=stream_id, error_code=code)
