"""What a parser gives the HTTP/1.1 state machine: messages as a few neutral items.

Theory of operation
-------------------

A parser adapter wraps one HTTP/1.1 parser (h11, or llhttp through
httptools) and does only this: it takes the bytes the peer sent and hands
out what they mean, one item at a time, in order:

- a head (a request head on a server, :class:`~._headers.RequestHead`; a
  status line and fields on a client);
- a piece of body, as ``bytes``;
- :class:`End`, the end of the message, with its trailer fields;
- :class:`ParseError`: the bytes break the rules; the status that answers
  them, the reason in a line, and the request's method if its head was
  read. Nothing more comes after it;
- :data:`EOF`: the peer ended its byte stream, and every message before
  the end was handed out.

:meth:`MessageParser.next_item` hands out the items of one message, then
None until :meth:`~MessageParser.next_message` says the exchange is over
(pipelined requests wait their turn). A CONNECT request, and a request
that asks to switch protocols, make it stop parsing after them: what
follows is either the next request (``next_message()``) or the bytes of a
tunnel (:meth:`~MessageParser.take_raw`). Its :attr:`~MessageParser.held`
says how many bytes wait after the message in progress, for the state
machine's bound on pipelining. Everything else, the states of
the exchange, the checks of a request, the framing of the response and
the answers to errors, is the state machine's (:mod:`._base`,
:mod:`._server`), written once for every parser.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Final, Generic, TypeVar, final

from hface.common import HeaderType

#: The reason a request with an obs-fold is refused (RFC 9112 §5.2), whoever finds it.
OBS_FOLD_REASON: Final = "obsolete line folding (obs-fold) in a field"

#: The type of the heads a parser hands out.
HeadT = TypeVar("HeadT")


@final
class End:
    """The end of a message, with its trailer fields (names in lower case)."""

    __slots__ = ("trailers",)

    def __init__(self, trailers: Sequence[HeaderType] = ()) -> None:
        self.trailers = trailers


#: The end of a message without trailers (the usual one, made once).
END: Final = End()


@final
class ParseError:
    """The bytes break the rules: answer ``status`` with ``reason``, then close."""

    __slots__ = ("method", "reason", "status")

    def __init__(self, status: int, reason: str, method: bytes = b"") -> None:
        self.status = status
        self.reason = reason
        #: The method of the request whose head was read, else empty.
        self.method = method


class Eof(enum.Enum):
    """The type of :data:`EOF`."""

    EOF = "eof"


#: The peer ended its byte stream, and every message before the end was handed out.
EOF: Final = Eof.EOF


class Delivery(enum.Enum):
    """What an adapter hands out next: the same states whatever the parser."""

    #: The items of a message, as they come.
    MESSAGE = "message"
    #: Nothing: the message ended, and the next waits for ``next_message()``.
    BETWEEN = "between"
    #: Nothing: :data:`EOF` was handed out (until ``next_message()``).
    ENDED = "ended"
    #: Nothing, for good (an error, a tunnel, or a connection that closes).
    STOPPED = "stopped"


# As module constants (a member read through its enum class costs more).
IN_MESSAGE: Final = Delivery.MESSAGE
BETWEEN_MESSAGES: Final = Delivery.BETWEEN
AFTER_EOF: Final = Delivery.ENDED
STOPPED: Final = Delivery.STOPPED


class MessageParser(ABC, Generic[HeadT]):
    """One parser, wrapped to hand out the neutral items of this module."""

    __slots__ = ("held",)

    def __init__(self) -> None:
        #: How many bytes wait after the message in progress (pipelined), as
        #: of the last :meth:`feed`.
        self.held = 0

    @abstractmethod
    def feed(self, data: bytes) -> None:
        """Take bytes the peer sent (ignored once parsing stopped); update :attr:`held`."""

    @abstractmethod
    def feed_eof(self) -> None:
        """The peer will send nothing more."""

    @abstractmethod
    def next_item(self) -> HeadT | bytes | End | ParseError | Eof | None:
        """Return the next item of the message in progress, or None for now."""

    @abstractmethod
    def next_message(self) -> bool:
        """The exchange is over: parse what follows as the next message.

        Return False if no item can be ready yet (nothing followed).
        """

    @abstractmethod
    def take_raw(self) -> bytes:
        """Stop parsing for good: return the bytes after the message, raw (a tunnel)."""

    @abstractmethod
    def stop(self) -> None:
        """Stop parsing for good: what came and what comes is dropped."""

    @abstractmethod
    def in_message(self) -> bool:
        """Return True if part of a message not handed out yet has arrived."""
