"""HTTP/1.1's lifecycle table, walked pair by pair on the client and on both servers.

``HTTP1_LIFECYCLE`` says, for each (state, input), the next state. Every
pair of ConnectionState x LifecycleInput is walked here, on the real
protocols through their public API only: each test brings a protocol to
a state, makes it take an input (a method the caller calls, or what the
peer sends), and checks that the protocol went where the table says. A
pair the table leaves out is an input the state does not take: the
caller cannot make it (the method is missing, or does nothing), or the
peer's cannot happen (the state stays, and no event comes).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable

import pytest

from hface.common import HeadersType
from hface.errors import LocalProtocolError
from hface.events import ConnectionTerminated, Event
from hface.protocols import ConnectionState, HTTPOverTCPProtocol
from hface.protocols._lifecycle import CALLER_INPUTS, Lifecycle, LifecycleInput
from hface.protocols.http1 import HTTP1ClientProtocol
from hface.protocols.http1._states import HTTP1_LIFECYCLE
from tests.test_protocols.conftest import HTTP1ServerFactoryType

OPEN = ConnectionState.OPEN
DRAINING = ConnectionState.DRAINING
CLOSING = ConnectionState.CLOSING
CLOSED = ConnectionState.CLOSED

GOAWAY = LifecycleInput.SUBMIT_GOAWAY
CLOSE = LifecycleInput.SUBMIT_CLOSE
CLOSE_WITH_ERROR = LifecycleInput.SUBMIT_CLOSE_WITH_ERROR
PEER_GOAWAY = LifecycleInput.GOAWAY_RECEIVED
DONE = LifecycleInput.STREAMS_DONE
SENT = LifecycleInput.CLOSE_SENT
TERMINATED = LifecycleInput.TERMINATED

#: What HTTP/1.1 never meets: QUIC's lingering close, with its inputs, and
#: QUIC's connection error (HTTP/1.1 ends at once, TERMINATED).
NOT_HTTP1 = {
    (state, event)
    for state, event in itertools.product(ConnectionState, LifecycleInput)
    if state is ConnectionState.LINGERING
    or event
    in (LifecycleInput.ABANDON_LINGER, LifecycleInput.LINGER_ENDED, LifecycleInput.CONNECTION_ERROR)
}

GET = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
GET_CLOSE = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
OK: HeadersType = [(b":status", b"200"), (b"content-length", b"0")]
REQUEST: HeadersType = [(b":method", b"GET"), (b":authority", b"a"), (b":path", b"/")]


def drain(protocol: HTTPOverTCPProtocol) -> list[Event]:
    events = []
    while (event := protocol.next_event()) is not None:
        events.append(event)
    return events


def expected(state: ConnectionState, inputs: Iterable[LifecycleInput]) -> ConnectionState:
    """Where the table takes ``state`` through ``inputs``; an input not taken changes nothing."""
    for event in inputs:
        state = HTTP1_LIFECYCLE.get((state, event), state)
    return state


def test_every_pair_of_the_table() -> None:
    """A caller's input is taken in every state (but QUIC's linger); the rest is the peer's."""
    for state, event in set(itertools.product(ConnectionState, LifecycleInput)) - NOT_HTTP1:
        lifecycle = Lifecycle(HTTP1_LIFECYCLE)
        lifecycle.state = state
        if (state, event) in HTTP1_LIFECYCLE:
            assert lifecycle.handle(event) is HTTP1_LIFECYCLE[state, event]
            continue
        # Not taken: refused, and the state stays.
        assert not lifecycle.takes(event)
        with pytest.raises(LocalProtocolError, match=f"{state.value} cannot take {event.value}"):
            lifecycle.handle(event)
        assert lifecycle.state is state
        assert event not in CALLER_INPUTS, (state, event)
    # Nothing comes back from CLOSED, and only closing inputs reach it.
    assert {to for (origin, _), to in HTTP1_LIFECYCLE.items() if origin is CLOSED} == {CLOSED}
    assert {event for (_, event), to in HTTP1_LIFECYCLE.items() if to is CLOSED} == {
        GOAWAY,
        CLOSE,
        CLOSE_WITH_ERROR,
        TERMINATED,
    }
    assert not set(HTTP1_LIFECYCLE) & NOT_HTTP1


# -- the server: each state, reached through the public API ---------------------


def server_in(
    factory: HTTP1ServerFactoryType, state: ConnectionState, *, request: bytes = GET
) -> HTTPOverTCPProtocol:
    """A server in ``state``; OPEN and DRAINING have ``request`` (stream 1) in progress."""
    server = factory()()
    assert isinstance(server, HTTPOverTCPProtocol)
    if state in (OPEN, DRAINING):
        server.bytes_received(request)
    if state in (DRAINING, CLOSING):
        server.submit_goaway()
    if state is CLOSED:
        server.connection_lost()
    assert server.state is state
    drain(server)
    return server


def take_bytes(protocol: HTTPOverTCPProtocol) -> None:
    """What the layer above does as it writes: nothing the lifecycle hears of."""
    protocol.bytes_to_send()


def answer(protocol: HTTPOverTCPProtocol) -> None:
    protocol.submit_headers(1, OK, end_stream=True)


def answer_if_any(protocol: HTTPOverTCPProtocol) -> None:
    """Answer stream 1: a closing or closed server has none."""
    with pytest.raises(LocalProtocolError, match="not open for a response"):
        answer(protocol)


def request_arrives(protocol: HTTPOverTCPProtocol) -> None:
    protocol.bytes_received(GET_CLOSE)


def request_arrives_and_is_answered(protocol: HTTPOverTCPProtocol) -> None:
    protocol.bytes_received(GET)
    answer_if_any(protocol)


Step = Callable[[HTTPOverTCPProtocol], None]

#: (state, the request in progress, what happens, the inputs it makes).
SERVER_STEPS: list[tuple[ConnectionState, bytes, Step, list[LifecycleInput]]] = [
    (OPEN, GET, lambda p: p.submit_goaway(), [GOAWAY]),
    (OPEN, GET, lambda p: p.submit_close(500), [CLOSE_WITH_ERROR]),
    (OPEN, GET, lambda p: p.submit_stream_reset(1), [CLOSE]),
    # The peer's close is its request's: it takes effect when the exchange ends.
    (OPEN, GET_CLOSE, answer, [PEER_GOAWAY, DONE]),
    (OPEN, GET, answer, [DONE]),  # keep-alive: the connection stays open
    (OPEN, GET, lambda p: p.connection_lost(), [TERMINATED]),
    (OPEN, GET, take_bytes, [SENT]),
    (DRAINING, GET, lambda p: p.submit_goaway(), [GOAWAY]),
    (DRAINING, GET, lambda p: p.submit_close(500), [CLOSE_WITH_ERROR]),
    (DRAINING, GET, lambda p: p.submit_stream_reset(1), [CLOSE]),
    (DRAINING, GET_CLOSE, answer, [PEER_GOAWAY, DONE]),
    (DRAINING, GET, answer, [DONE]),
    (DRAINING, GET, lambda p: p.connection_lost(), [TERMINATED]),
    (DRAINING, GET, take_bytes, [SENT]),
    (CLOSING, b"", lambda p: p.submit_goaway(), [GOAWAY]),
    (CLOSING, b"", lambda p: p.submit_close(408), [CLOSE_WITH_ERROR]),
    (CLOSING, b"", request_arrives, [PEER_GOAWAY]),  # not read any more
    (CLOSING, b"", request_arrives_and_is_answered, [DONE]),
    (CLOSING, b"", lambda p: p.connection_lost(), [TERMINATED]),
    (CLOSING, b"", take_bytes, [SENT]),
    (CLOSED, b"", lambda p: p.submit_goaway(), [GOAWAY]),
    (CLOSED, b"", lambda p: p.submit_close(500), [CLOSE_WITH_ERROR]),
    (CLOSED, b"", lambda p: p.submit_stream_reset(1), [CLOSE]),
    (CLOSED, b"", request_arrives, [PEER_GOAWAY]),
    (CLOSED, b"", request_arrives_and_is_answered, [DONE]),
    (CLOSED, b"", lambda p: p.connection_lost(), [TERMINATED]),
    (CLOSED, b"", take_bytes, [SENT]),
]


def _covered(
    steps: Iterable[tuple[ConnectionState, list[LifecycleInput]]],
) -> set[tuple[ConnectionState, LifecycleInput]]:
    pairs = set()
    for state, inputs in steps:
        for event in inputs:
            pairs.add((state, event))
            state = HTTP1_LIFECYCLE.get((state, event), state)
    return pairs


def test_the_server_steps_walk_every_pair() -> None:
    walked = _covered((state, inputs) for state, _, _, inputs in SERVER_STEPS)
    # A server closing has no exchange left to reset.
    cannot = {(CLOSING, CLOSE)}
    assert walked | cannot | NOT_HTTP1 == set(itertools.product(ConnectionState, LifecycleInput))


@pytest.mark.parametrize(
    ("state", "request_bytes", "step", "inputs"),
    SERVER_STEPS,
    ids=[f"{s.value}-{'+'.join(i.value for i in inputs)}" for s, _, _, inputs in SERVER_STEPS],
)
def test_the_server_follows_the_table(
    state: ConnectionState,
    request_bytes: bytes,
    step: Step,
    inputs: list[LifecycleInput],
    http1_server_factory: HTTP1ServerFactoryType,
) -> None:
    server = server_in(http1_server_factory, state, request=request_bytes or GET)
    assert not hasattr(server, "abandon_linger")
    step(server)
    after = expected(state, inputs)
    assert server.state is after
    assert server.has_expired() is (after is not OPEN)
    events = drain(server)
    # CLOSED is reached once: with one ConnectionTerminated, and nothing after it.
    ends = [event for event in events if isinstance(event, ConnectionTerminated)]
    assert len(ends) == (1 if after is CLOSED and state is not CLOSED else 0)
    if state is CLOSED:
        assert events == []


# -- the client ---------------------------------------------------------------------


def client_in(state: ConnectionState) -> HTTP1ClientProtocol:
    """A client in ``state``; OPEN and DRAINING have a request (stream 1) in flight."""
    client = HTTP1ClientProtocol()
    if state in (OPEN, DRAINING):
        client.submit_headers(1, REQUEST, end_stream=True)
    if state in (DRAINING, CLOSING):
        client.submit_goaway()
    if state is CLOSED:
        client.connection_lost()
    assert client.state is state
    drain(client)
    return client


def response(*fields: bytes, body: bytes = b"") -> Step:
    data = b"\r\n".join([b"HTTP/1.1 200 OK", *fields, b""]) + b"\r\n" + body
    return lambda protocol: protocol.bytes_received(data)


#: A response that says the server closes after it; its body is still coming.
CLOSING_RESPONSE = response(b"Connection: close", b"Content-Length: 5")
#: A whole response that keeps the connection alive.
WHOLE_RESPONSE = response(b"Content-Length: 2", body=b"ok")

#: (state, what happens, the inputs it makes).
CLIENT_STEPS: list[tuple[ConnectionState, Step, list[LifecycleInput]]] = [
    (OPEN, lambda p: p.submit_goaway(), [GOAWAY]),
    (OPEN, lambda p: p.submit_stream_reset(1), [CLOSE]),
    (OPEN, CLOSING_RESPONSE, [PEER_GOAWAY]),
    (OPEN, WHOLE_RESPONSE, [DONE]),  # keep-alive: the connection stays open
    (OPEN, lambda p: p.connection_lost(), [TERMINATED]),
    (OPEN, take_bytes, [SENT]),
    (DRAINING, lambda p: p.submit_close(), [GOAWAY]),  # a client's close is graceful
    (DRAINING, lambda p: p.submit_stream_reset(1), [CLOSE]),
    (DRAINING, CLOSING_RESPONSE, [PEER_GOAWAY]),
    (DRAINING, WHOLE_RESPONSE, [DONE]),
    (DRAINING, lambda p: p.connection_lost(), [TERMINATED]),
    (DRAINING, take_bytes, [SENT]),
    (CLOSING, lambda p: p.submit_goaway(), [GOAWAY]),
    (CLOSING, CLOSING_RESPONSE, [PEER_GOAWAY]),  # not read any more
    (CLOSING, WHOLE_RESPONSE, [DONE]),
    (CLOSING, lambda p: p.connection_lost(), [TERMINATED]),
    (CLOSING, take_bytes, [SENT]),
    (CLOSED, lambda p: p.submit_goaway(), [GOAWAY]),
    (CLOSED, lambda p: p.submit_stream_reset(1), [CLOSE]),
    (CLOSED, CLOSING_RESPONSE, [PEER_GOAWAY]),
    (CLOSED, WHOLE_RESPONSE, [DONE]),
    (CLOSED, lambda p: p.connection_lost(), [TERMINATED]),
    (CLOSED, take_bytes, [SENT]),
]


def test_the_client_steps_walk_every_pair() -> None:
    walked = _covered((state, inputs) for state, _, inputs in CLIENT_STEPS)
    # A client closes at once only by resetting its exchange (submit_close is
    # graceful, with an error code too), and a closing connection has none to reset.
    cannot = {(CLOSING, CLOSE)} | {(state, CLOSE_WITH_ERROR) for state in ConnectionState}
    assert walked | cannot | NOT_HTTP1 == set(itertools.product(ConnectionState, LifecycleInput))


@pytest.mark.parametrize(
    ("state", "step", "inputs"),
    CLIENT_STEPS,
    ids=[f"{s.value}-{'+'.join(i.value for i in inputs)}" for s, _, inputs in CLIENT_STEPS],
)
def test_the_client_follows_the_table(
    state: ConnectionState,
    step: Step,
    inputs: list[LifecycleInput],
) -> None:
    client = client_in(state)
    assert not hasattr(client, "abandon_linger")
    step(client)
    after = expected(state, inputs)
    assert client.state is after
    assert client.has_expired() is (after is not OPEN)
    events = drain(client)
    ends = [event for event in events if isinstance(event, ConnectionTerminated)]
    assert len(ends) == (1 if after is CLOSED and state is not CLOSED else 0)
    if state is CLOSED:
        assert events == []
