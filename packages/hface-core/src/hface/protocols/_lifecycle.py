"""The lifecycle of a connection: an explicit state and a transition table.

Theory of operation (h11's ``_state.py`` is the model). Every protocol,
whatever its version, goes through the same four states, which
:attr:`HTTPProtocol.state <hface.protocols.HTTPProtocol.state>` reports:

- :attr:`ConnectionState.OPEN`: streams may be opened.
- :attr:`ConnectionState.DRAINING`: a graceful close began on either side
  (GOAWAY sent or received on HTTP/2 and HTTP/3, ``Connection: close``
  sent or received on HTTP/1.1): no new stream; those in flight go on.
- :attr:`ConnectionState.CLOSING`: the end is decided and on its way out
  (HTTP/3: the QUIC close waits until the peer has acknowledged what was
  sent; HTTP/1.1 and HTTP/2: the layer above closes the transport).
- :attr:`ConnectionState.CLOSED`: ``ConnectionTerminated`` was emitted;
  nothing happens any more.

What moves a connection is one :class:`LifecycleInput`: a method the user
called (one per intent: :meth:`~hface.protocols.HTTPProtocol.submit_goaway`,
:meth:`~hface.protocols.HTTPProtocol.submit_close`,
:meth:`~hface.protocols.HTTPOverQUICProtocol.abandon_linger`) or something
that happened (the peer's GOAWAY, the last stream of a draining connection
done, the close sent, the connection ended by the peer, an error or the
transport). Each implementation declares the transitions it makes in a
table, ``{(state, input): next state}``, and drives a :class:`Lifecycle`
with it; a pair the table does not name is an input the state does not
take (:class:`~hface.errors.LocalProtocolError` for the caller's inputs;
a bug for the others), and a test walks every pair of every table.
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
    #: The connection is ending; the end is on its way out.
    CLOSING = "closing"
    #: ``ConnectionTerminated`` was emitted; nothing happens any more.
    CLOSED = "closed"


class LifecycleInput(enum.Enum):
    """What can move a connection from one :class:`ConnectionState` to another."""

    #: :meth:`HTTPProtocol.submit_goaway` (the caller's graceful close).
    SUBMIT_GOAWAY = "submit_goaway"
    #: :meth:`HTTPProtocol.submit_close` (the caller's immediate close).
    SUBMIT_CLOSE = "submit_close"
    #: :meth:`HTTPOverQUICProtocol.abandon_linger` (send the close without waiting).
    ABANDON_LINGER = "abandon_linger"
    #: The peer began a graceful close (GOAWAY, ``Connection: close``).
    GOAWAY_RECEIVED = "goaway_received"
    #: The last stream of a draining connection is done.
    STREAMS_DONE = "streams_done"
    #: The close we decided has gone out (HTTP/3: CONNECTION_CLOSE sent).
    CLOSE_SENT = "close_sent"
    #: The connection ended otherwise: closed by the peer, a protocol error,
    #: a timeout, or the transport lost.
    TERMINATED = "terminated"


#: A transition table: for each (state, input) it takes, the next state.
TransitionTable = Mapping[tuple[ConnectionState, LifecycleInput], ConnectionState]

#: The inputs a caller makes: one a state does not take is a misuse.
CALLER_INPUTS = frozenset(
    {LifecycleInput.SUBMIT_GOAWAY, LifecycleInput.SUBMIT_CLOSE, LifecycleInput.ABANDON_LINGER}
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
