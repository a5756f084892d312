"""HTTP/1.1 or HTTP/2 on one cleartext port, told apart by the first bytes.

Cleartext connections have no ALPN. A client that knows the server speaks
HTTP/2 ("prior knowledge", RFC 9113 §3.3) starts with the connection
preface ``PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n``; any other first bytes
are an HTTP/1.1 request. :class:`PriorKnowledgeHTTPFactory` makes a
protocol that buffers the first bytes until they decide, then makes the
real protocol and delegates everything to it.

Lifecycle: one protocol at a time owns the connection's
:class:`~hface.protocols.ConnectionState` and its transition table, so
:class:`PriorKnowledgeProtocol` has none of its own: its state is the
delegate's, and until the first bytes decide, an idle HTTP/1.1 server's
(which answers the questions asked meanwhile). An input of the lifecycle
that comes first (``submit_goaway``, ``submit_close``, the end of the
transport) decides HTTP/1.1 at once: that connection takes no new request,
and an HTTP/2 preface arriving afterwards is HTTP/1.1's to refuse.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from hface.common import HeadersType, HTTPErrorCodes
from hface.errors import LocalProtocolError
from hface.events import Event

from ._factories import HTTPOverTCPFactory
from ._lifecycle import ConnectionState
from ._protocols import HTTPOverTCPProtocol
from ._settings import ProtocolLimits

#: The HTTP/2 client connection preface (RFC 9113 §3.4).
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#: The methods a decided protocol takes straight from its delegate (see _decide).
_DIRECT: Final = (
    "bytes_received",  # first: not while bytes wait (see _decide)
    "next_event",
    "bytes_to_send",
    "submit_data",
    "get_pending_data_size",
    "acknowledge_received_data",
)


class PriorKnowledgeHTTPFactory(HTTPOverTCPFactory):
    """Makes protocols that become HTTP/2 if the client starts with its preface.

    Meant for cleartext servers: ``http://`` endpoints then serve both
    ``curl --http1.1`` and ``curl --http2-prior-knowledge``. Over TLS, use
    :class:`ALPNHTTPFactory` instead.

    :param http1_factory: makes the HTTP/1.1 protocol for other clients.
    :param http2_factory: makes the HTTP/2 protocol for prior-knowledge clients.
    """

    def __init__(
        self, http1_factory: HTTPOverTCPFactory, http2_factory: HTTPOverTCPFactory
    ) -> None:
        self._http1_factory = http1_factory
        self._http2_factory = http2_factory

    @property
    def alpn_protocols(self) -> Sequence[str]:
        return [*self._http2_factory.alpn_protocols, *self._http1_factory.alpn_protocols]

    def with_limits(self, limits: ProtocolLimits) -> PriorKnowledgeHTTPFactory:
        """Return a factory like this one whose two factories have ``limits`` applied."""
        return PriorKnowledgeHTTPFactory(
            self._http1_factory.with_limits(limits), self._http2_factory.with_limits(limits)
        )

    def __call__(
        self, *, tls_version: str | None = None, alpn_protocol: str | None = None
    ) -> HTTPOverTCPProtocol:
        if alpn_protocol is not None:  # ALPN has decided already
            if alpn_protocol in self._http2_factory.alpn_protocols:
                return self._http2_factory(tls_version=tls_version, alpn_protocol=alpn_protocol)
            return self._http1_factory(tls_version=tls_version, alpn_protocol=alpn_protocol)
        return PriorKnowledgeProtocol(
            self._http1_factory, self._http2_factory, tls_version=tls_version
        )


class PriorKnowledgeProtocol(HTTPOverTCPProtocol):
    """Buffers the first bytes, then delegates to HTTP/1.1 or HTTP/2.

    Until it has decided it behaves as an idle HTTP/1.1 server (which
    sends nothing first): no events, nothing to send.
    """

    def __init__(
        self,
        http1_factory: HTTPOverTCPFactory,
        http2_factory: HTTPOverTCPFactory,
        *,
        tls_version: str | None = None,
    ) -> None:
        self._http1_factory = http1_factory
        self._http2_factory = http2_factory
        self._tls_version = tls_version
        self._buffer = b""
        self._delegate: HTTPOverTCPProtocol | None = None
        self._undecided_http1: HTTPOverTCPProtocol | None = None  # answers questions until then

    @property
    def delegate(self) -> HTTPOverTCPProtocol | None:
        """The protocol chosen, or None while undecided."""
        return self._delegate

    def _current(self) -> HTTPOverTCPProtocol:
        if self._delegate is not None:
            return self._delegate
        if self._undecided_http1 is None:
            self._undecided_http1 = self._http1_factory(tls_version=self._tls_version)
        return self._undecided_http1

    def _decide(self, http2: bool) -> HTTPOverTCPProtocol:
        if http2:
            delegate = self._http2_factory(tls_version=self._tls_version, alpn_protocol="h2")
        else:
            delegate = self._undecided_http1 or self._http1_factory(tls_version=self._tls_version)
        self._delegate = delegate
        self._undecided_http1 = None
        # The calls made for every read, write and event now reach the delegate
        # directly, not through this class's methods (which doubled the Python
        # calls on the connection's busiest path): the delegate's bound methods,
        # set on the instance, shadow the class's (setattr: mypy forbids
        # assigning to a method). bytes_received stays this class's while bytes
        # that came before the decision wait for the next (see _decided).
        for name in _DIRECT if not self._buffer else _DIRECT[1:]:
            setattr(self, name, getattr(delegate, name))
        return delegate

    # -- delegated properties ------------------------------------------------

    @property
    def http_version(self) -> str:
        return self._current().http_version

    @property
    def multiplexed(self) -> bool:
        return self._current().multiplexed

    @property
    def error_codes(self) -> HTTPErrorCodes:
        return self._current().error_codes

    # -- byte stream ---------------------------------------------------------------

    def bytes_received(self, data: bytes) -> None:
        if self._delegate is not None:
            if self._buffer:  # kept from before a close decided (see _decided)
                data, self._buffer = self._buffer + data, b""
            self._delegate.bytes_received(data)
            return
        buffer = self._buffer + data
        size = min(len(buffer), len(HTTP2_PREFACE))
        if buffer[:size] != HTTP2_PREFACE[:size]:
            self._buffer = b""
            self._decide(http2=False).bytes_received(buffer)
        elif size == len(HTTP2_PREFACE):
            self._buffer = b""
            self._decide(http2=True).bytes_received(buffer)
        else:
            self._buffer = buffer  # a prefix of the preface so far: wait for more

    def eof_received(self) -> None:
        delegate = self._decided()
        buffer, self._buffer = self._buffer, b""
        if buffer:
            delegate.bytes_received(buffer)  # a truncated preface: HTTP/1.1's error
        delegate.eof_received()

    def connection_lost(self) -> None:
        self._decided().connection_lost()

    def bytes_to_send(self) -> bytes:
        if self._delegate is None:
            return b""
        return self._delegate.bytes_to_send()

    def clock(self, now: float) -> None:
        if self._delegate is not None:
            self._delegate.clock(now)

    # -- the HTTP interface -----------------------------------------------------------

    def is_available(self) -> bool:
        return self._current().is_available()

    def has_expired(self) -> bool:
        return self._current().has_expired()

    def get_available_stream_id(self) -> int:
        return self._current().get_available_stream_id()

    def submit_headers(
        self, stream_id: int, headers: HeadersType, end_stream: bool = False
    ) -> None:
        self._require_delegate().submit_headers(stream_id, headers, end_stream)

    def submit_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        self._require_delegate().submit_data(stream_id, data, end_stream)

    def submit_stream_reset(self, stream_id: int, error_code: int = 0) -> None:
        self._current().submit_stream_reset(stream_id, error_code)

    @property
    def state(self) -> ConnectionState:
        return self._current().state

    def submit_goaway(self) -> None:
        self._decided().submit_goaway()

    def submit_shutdown_notice(self) -> None:
        # Undecided, there is nothing to announce: the close that follows decides.
        if self._delegate is not None:
            self._delegate.submit_shutdown_notice()

    def submit_close(self, error_code: int | None = None) -> None:
        self._decided().submit_close(error_code)

    def next_event(self) -> Event | None:
        return self._current().next_event()

    def acknowledge_received_data(self, stream_id: int, amount: int) -> None:
        if self._delegate is not None:
            self._delegate.acknowledge_received_data(stream_id, amount)

    def get_pending_data_size(self, stream_id: int) -> int:
        if self._delegate is None:
            return 0
        return self._delegate.get_pending_data_size(stream_id)

    def _decided(self) -> HTTPOverTCPProtocol:
        """The delegate, HTTP/1.1 if still undecided: an input of the lifecycle came.

        A prefix of the preface buffered so far stays buffered: it reaches
        HTTP/1.1 with the bytes that follow, as if it had decided then.
        """
        return self._delegate or self._decide(http2=False)

    def _require_delegate(self) -> HTTPOverTCPProtocol:
        if self._delegate is None:
            raise LocalProtocolError("no stream is open: the client has sent nothing yet")
        return self._delegate
