"""The lifecycle of a connection: an explicit state and a transition table.

Theory of operation (h11's ``_state.py`` is the model). Every protocol,
whatever its version, goes through the same states, which
:attr:`HTTPProtocol.state <hface.protocols.HTTPProtocol.state>` reports::

          OPEN ──── GOAWAY sent or received ───▶ DRAINING
           │                                        │
           │ submit_close()                         │ streams done (HTTP/3, after
           │ (HTTP/3: no error)                     │ our GOAWAY); submit_close()
           ▼                                        ▼
       LINGERING ◀──────────────────────────────────┘
           │ acknowledged, timed out, abandon_linger()
           ▼
        CLOSING ◀── submit_close(error), a connection error (HTTP/3, from any of the above)
           │ CONNECTION_CLOSE sent
           ▼
        CLOSED ◀── the peer's close, a timeout, the transport lost (from any state);
                   HTTP/2: submit_close() and connection errors, at once

- :attr:`ConnectionState.OPEN`: streams may be opened.
- :attr:`ConnectionState.DRAINING`: a graceful close began on either side
  (GOAWAY sent or received on HTTP/2 and HTTP/3, ``Connection: close``
  sent or received on HTTP/1.1): no new stream; those in flight go on.
- :attr:`ConnectionState.LINGERING` (HTTP/3): a close without error is
  decided and waits, a bounded time, until the peer has acknowledged what
  was sent (a QUIC close loses what is still in flight, RFC 9000 §10.2);
  what the peer sends meanwhile is still processed.
- :attr:`ConnectionState.CLOSING`: the end is decided and on its way out
  (HTTP/3: CONNECTION_CLOSE goes out with the next ``datagrams_to_send``;
  HTTP/1.1: the layer above closes the transport); nothing the peer sends
  is processed any more.
- :attr:`ConnectionState.CLOSED`: ``ConnectionTerminated`` was emitted;
  nothing happens any more.

What moves a connection is one :class:`LifecycleInput`: a method the user
called (one per intent: :meth:`~hface.protocols.HTTPProtocol.submit_goaway`,
:meth:`~hface.protocols.HTTPProtocol.submit_close` with no error or with
one, :meth:`~hface.protocols.HTTPOverQUICProtocol.abandon_linger`) or
something that happened (the peer's GOAWAY, the last stream of a draining
connection done, the linger over, the close sent, a connection error, the
connection ended by the peer or the transport). Each implementation
declares the transitions it makes in a table, ``{(state, input): next
state}``, and drives a :class:`Lifecycle` with it. The caller's inputs that
change nothing in a state (a second ``submit_goaway``, say) are in the
table as transitions to the same state: documented no-ops. A pair the table
does not name is an input the state does not take
(:class:`~hface.errors.LocalProtocolError` for the caller's inputs; one
that cannot happen for the others, which the implementation guards). A
test walks every pair of every table.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from hface.errors import LocalProtocolError


class ConnectionState(enum.Enum):
    """Where a connection is in its life (see :attr:`HTTPProtocol.state
    <hface.protocols.HTTPProtocol.state>`)."""

    #: Streams may be opened.
    OPEN = "open"
    #: A graceful close began (GOAWAY, ``Connection: close``): no new streams.
    DRAINING = "draining"
    #: A close without error waits until the peer has acknowledged what was sent (HTTP/3).
    LINGERING = "lingering"
    #: The connection is ending; the end is on its way out.
    CLOSING = "closing"
    #: ``ConnectionTerminated`` was emitted; nothing happens any more.
    CLOSED = "closed"


class LifecycleInput(enum.Enum):
    """What can move a connection from one :class:`ConnectionState` to another."""

    #: :meth:`HTTPProtocol.submit_goaway` (the caller's graceful close).
    SUBMIT_GOAWAY = "submit_goaway"
    #: :meth:`HTTPProtocol.submit_close` with no error (the caller's immediate close).
    SUBMIT_CLOSE = "submit_close"
    #: :meth:`HTTPProtocol.submit_close` with an error code.
    SUBMIT_CLOSE_WITH_ERROR = "submit_close_with_error"
    #: :meth:`HTTPOverQUICProtocol.abandon_linger` (send the close without waiting).
    ABANDON_LINGER = "abandon_linger"
    #: The peer began a graceful close (GOAWAY, ``Connection: close``).
    GOAWAY_RECEIVED = "goaway_received"
    #: The last stream of a draining connection is done.
    STREAMS_DONE = "streams_done"
    #: A lingering close may go: everything was acknowledged, or the wait timed out.
    LINGER_ENDED = "linger_ended"
    #: The close we decided has gone out (HTTP/3: CONNECTION_CLOSE sent).
    CLOSE_SENT = "close_sent"
    #: A connection error, the peer's (a protocol violation, a flood) or ours
    #: (an internal failure): the connection closes with an error code.
    CONNECTION_ERROR = "connection_error"
    #: The connection ended with nothing left to send: closed by the peer, a
    #: timeout, the transport lost, or an error that ends it at once.
    TERMINATED = "terminated"


#: A transition table: for each (state, input) it takes, the next state.
TransitionTable = Mapping[tuple[ConnectionState, LifecycleInput], ConnectionState]

#: The inputs a caller makes: one a state does not take is a misuse.
CALLER_INPUTS = frozenset(
    {
        LifecycleInput.SUBMIT_GOAWAY,
        LifecycleInput.SUBMIT_CLOSE,
        LifecycleInput.SUBMIT_CLOSE_WITH_ERROR,
        LifecycleInput.ABANDON_LINGER,
    }
)


class Lifecycle:
    """The state of one connection, moved only through a transition table.

    :param table: the transitions this implementation makes.
    """

    __slots__ = ("_table", "state")

    def __init__(self, table: TransitionTable) -> None:
        self._table = table
        #: The current state.
        self.state = ConnectionState.OPEN

    def takes(self, event: LifecycleInput) -> bool:
        """Return True if the current state takes ``event``."""
        return (self.state, event) in self._table

    def handle(self, event: LifecycleInput) -> ConnectionState:
        """Move to the state the table gives for ``event``; return it.

        :raises LocalProtocolError: if the current state does not take ``event``.
        """
        try:
            self.state = self._table[self.state, event]
        except KeyError:
            raise LocalProtocolError(
                f"a connection that is {self.state.value} cannot take {event.value}"
            ) from None
        return self.state
