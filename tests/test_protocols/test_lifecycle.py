"""The lifecycle contract (hface.protocols._lifecycle) and the tables of HTTP/2 and HTTP/3.

Every (state, input) pair of each table is walked on a real protocol: it is
driven into the state through the public API, then the input is made the
way it happens (a method call, frames from the peer, what the protocol
sends). A pair the table names must lead where the table says; an input of
the caller's the state does not take must be refused
(:class:`~hface.errors.LocalProtocolError`) unless the table lists it as a
no-op; a peer's input a state does not take must not happen (the same
action leaves the state as it was). An action that sends lets a close that
is due go out (CLOSE_SENT).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pytest
from aioquic.buffer import encode_uint_var
from aioquic.h3.connection import FrameType, encode_frame

from hface.errors import LocalProtocolError
from hface.events import ConnectionTerminated, Event
from hface.protocols import ConnectionState, HTTPOverTCPProtocol, HTTPProtocol
from hface.protocols._lifecycle import CALLER_INPUTS, Lifecycle, LifecycleInput, TransitionTable
from hface.protocols.http2._base import TRANSITIONS as HTTP2_TRANSITIONS
from hface.protocols.http3._base import TRANSITIONS as HTTP3_TRANSITIONS
from tests.helpers.h3_raw import REQUEST, RawH3Client, connect, headers_frame
from tests.helpers.pairs import TCPProtocolPair, make_pair

OPEN = ConnectionState.OPEN
DRAINING = ConnectionState.DRAINING
LINGERING = ConnectionState.LINGERING
CLOSING = ConnectionState.CLOSING
CLOSED = ConnectionState.CLOSED
IN = LifecycleInput

H3_INTERNAL_ERROR = 0x102
H2_INTERNAL_ERROR = 0x2
RESPONSE = [(b":status", b"200")]


def test_a_lifecycle_moves_only_through_its_table() -> None:
    table = {
        (OPEN, IN.SUBMIT_GOAWAY): DRAINING,
        (DRAINING, IN.STREAMS_DONE): CLOSING,
        (CLOSING, IN.CLOSE_SENT): CLOSED,
    }
    lifecycle = Lifecycle(table)
    assert lifecycle.state is OPEN
    assert lifecycle.takes(IN.SUBMIT_GOAWAY)
    assert not lifecycle.takes(IN.CLOSE_SENT)
    assert lifecycle.handle(IN.SUBMIT_GOAWAY) is DRAINING
    with pytest.raises(LocalProtocolError, match="draining cannot take submit_goaway"):
        lifecycle.handle(IN.SUBMIT_GOAWAY)
    state: ConnectionState = lifecycle.state
    assert state is DRAINING
    lifecycle.handle(IN.STREAMS_DONE)
    assert lifecycle.handle(IN.CLOSE_SENT) is CLOSED


@pytest.mark.parametrize("table", [HTTP2_TRANSITIONS, HTTP3_TRANSITIONS], ids=["2", "3"])
def test_every_state_ends_closed_and_closed_takes_no_peer_input(table: TransitionTable) -> None:
    """CLOSED is reached from every state, and only the caller's no-ops touch it."""
    states = {state for state, _ in table} | set(table.values())
    for state in states:
        assert (state, IN.TERMINATED) in table, state
        assert table[state, IN.TERMINATED] is CLOSED
    closed = {event for state, event in table if state is CLOSED}
    assert closed <= CALLER_INPUTS | {IN.TERMINATED}
    assert all(table[CLOSED, event] is CLOSED for event in closed)


def _expected(table: TransitionTable, state: ConnectionState, event: IN, sends: bool) -> object:
    """Where an action making ``event`` leads: the table, then CLOSE_SENT if it sends."""
    if event in CALLER_INPUTS and (state, event) not in table:
        return LocalProtocolError
    state = table.get((state, event), state)  # a peer's input not taken cannot happen
    if sends and state is CLOSING:
        state = table[state, IN.CLOSE_SENT]
    return state


@dataclass
class _Walk:
    """One protocol driven into a state, with the actions that make each input."""

    protocol: HTTPProtocol
    events: list[Event]
    actions: Mapping[LifecycleInput, tuple[Callable[[], object], bool]]

    def drain(self) -> None:
        while (event := self.protocol.next_event()) is not None:
            self.events.append(event)


def _check_pair(walk: _Walk, table: TransitionTable, state: ConnectionState, event: IN) -> None:
    walk.drain()
    assert walk.protocol.state is state, "the walk did not reach its state"
    ended_before = sum(isinstance(e, ConnectionTerminated) for e in walk.events)
    action, sends = walk.actions[event]
    expected = _expected(table, state, event, sends)
    if expected is LocalProtocolError:
        with pytest.raises(LocalProtocolError):
            action()
        expected = state
    else:
        action()
    walk.drain()
    assert walk.protocol.state is expected
    ended = [e for e in walk.events if isinstance(e, ConnectionTerminated)]
    # ConnectionTerminated comes once, as the connection becomes CLOSED.
    assert len(ended) == (1 if expected is CLOSED else 0), ended
    assert len(ended) >= ended_before
    for end in ended:
        # An input a state does not take would have failed the connection.
        assert "cannot take" not in str(end.message)


# --- HTTP/2 -----------------------------------------------------------------------------

#: HTTP/2 has no linger (the layer above closes TCP) and closes at once.
_HTTP2_UNUSED = {IN.ABANDON_LINGER, IN.STREAMS_DONE, IN.LINGER_ENDED, IN.CLOSE_SENT}
_HTTP2_STATES = (OPEN, DRAINING, CLOSED)


def test_http2_table_names_every_state_and_no_linger() -> None:
    assert not {event for _, event in HTTP2_TRANSITIONS} & _HTTP2_UNUSED
    assert {state for state, _ in HTTP2_TRANSITIONS} == set(_HTTP2_STATES)
    for state in _HTTP2_STATES:
        for event in CALLER_INPUTS - _HTTP2_UNUSED:
            assert (state, event) in HTTP2_TRANSITIONS  # each a transition or a no-op


def _http2_walk(state: ConnectionState) -> _Walk:
    pair = make_pair("2")
    assert isinstance(pair, TCPProtocolPair)
    server, client = pair.server, pair.client
    assert isinstance(server, HTTPOverTCPProtocol)
    assert isinstance(client, HTTPOverTCPProtocol)
    if state is DRAINING:
        server.submit_goaway()
        pair.transfer()
    elif state is CLOSED:
        server.submit_close()

    def goaway_received() -> None:
        client.submit_goaway()
        server.bytes_received(client.bytes_to_send())

    def connection_error() -> None:
        # DATA on stream 0 is a connection error (RFC 9113 §6.1).
        server.bytes_received(b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x")

    actions: dict[LifecycleInput, tuple[Callable[[], object], bool]] = {
        IN.SUBMIT_GOAWAY: (server.submit_goaway, False),
        IN.SUBMIT_CLOSE: (server.submit_close, False),
        IN.SUBMIT_CLOSE_WITH_ERROR: (lambda: server.submit_close(H2_INTERNAL_ERROR), False),
        IN.GOAWAY_RECEIVED: (goaway_received, False),
        IN.CONNECTION_ERROR: (connection_error, False),
        IN.TERMINATED: (server.eof_received, False),
    }
    return _Walk(server, [], actions)


@pytest.mark.parametrize("event", sorted(set(IN) - _HTTP2_UNUSED, key=str), ids=str)
@pytest.mark.parametrize("state", _HTTP2_STATES, ids=str)
def test_http2_pair(state: ConnectionState, event: LifecycleInput) -> None:
    _check_pair(_http2_walk(state), HTTP2_TRANSITIONS, state, event)


# --- HTTP/3 -----------------------------------------------------------------------------

_HTTP3_STATES = (OPEN, DRAINING, LINGERING, CLOSING, CLOSED)


def _http3_walk(state: ConnectionState) -> _Walk:
    """A server with one request in flight, driven into ``state``."""
    client: RawH3Client = connect()
    server = client.server
    control_id = client.open_control()
    request_id = client.request_stream(headers_frame(REQUEST), end_stream=True)
    client.transfer()
    if state is DRAINING:
        server.submit_goaway()  # the request in flight keeps it draining
        client.transfer()
    elif state is LINGERING:
        server.submit_close()
    elif state is CLOSING:
        server.submit_close(H3_INTERNAL_ERROR)
    elif state is CLOSED:
        server.submit_close(H3_INTERNAL_ERROR)
        server.datagrams_to_send()

    def from_client(frame: bytes) -> None:
        client.quic.send_stream_data(control_id, frame)
        for data, _ in client.quic.datagrams_to_send(now=client.now):
            server.datagram_received((data, ("127.0.0.1", 50000)))

    def streams_done() -> None:
        if server.state in (OPEN, DRAINING):
            server.submit_headers(request_id, RESPONSE, end_stream=True)
        server.datagrams_to_send()

    actions: dict[LifecycleInput, tuple[Callable[[], object], bool]] = {
        IN.SUBMIT_GOAWAY: (server.submit_goaway, False),
        IN.SUBMIT_CLOSE: (server.submit_close, False),
        IN.SUBMIT_CLOSE_WITH_ERROR: (lambda: server.submit_close(H3_INTERNAL_ERROR), False),
        IN.ABANDON_LINGER: (server.abandon_linger, False),
        IN.GOAWAY_RECEIVED: (
            lambda: from_client(encode_frame(FrameType.GOAWAY, encode_uint_var(0))),
            False,
        ),
        # DATA on the control stream is H3_FRAME_UNEXPECTED (RFC 9114 §7.2.1).
        IN.CONNECTION_ERROR: (lambda: from_client(encode_frame(FrameType.DATA, b"x")), False),
        IN.STREAMS_DONE: (streams_done, True),
        # Everything acknowledged (or not: then nothing lingers).
        IN.LINGER_ENDED: (client.transfer, True),
        IN.CLOSE_SENT: (server.datagrams_to_send, True),
        IN.TERMINATED: (server.connection_lost, False),
    }
    # (client.transfer() collects the server's events there.)
    return _Walk(server, client.server_events, actions)


def test_http3_table_names_every_state() -> None:
    assert {state for state, _ in HTTP3_TRANSITIONS} == set(_HTTP3_STATES)
    for state in _HTTP3_STATES:
        for event in CALLER_INPUTS:
            assert (state, event) in HTTP3_TRANSITIONS  # each a transition or a no-op


@pytest.mark.parametrize("event", sorted(IN, key=str), ids=str)
@pytest.mark.parametrize("state", _HTTP3_STATES, ids=str)
def test_http3_pair(state: ConnectionState, event: LifecycleInput) -> None:
    _check_pair(_http3_walk(state), HTTP3_TRANSITIONS, state, event)
