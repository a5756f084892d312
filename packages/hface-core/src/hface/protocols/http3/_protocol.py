"""HTTP/3 over aioquic behind hface's sans-IO interface.

Theory of operation
-------------------

One :class:`~._quic.FlowControlledQuicConnection` (QUIC, RFC 9000) carries
one :class:`~._aioquic.AioquicH3Connection` (aioquic's HTTP/3, RFC 9114).
Input enters through :meth:`~_HTTP3Protocol.datagram_received` and
:meth:`~_HTTP3Protocol.clock`; after each, the QUIC events are pumped
(:meth:`~_HTTP3Protocol._pump`): the frames of request streams and the
peer's control stream are counted by the flood guards (:mod:`._guard`,
:mod:`._control`, which also finds GOAWAY), then aioquic's HTTP/3 layer
turns them into its events, which :mod:`._streams` translates into hface
events. Output is pulled with :meth:`~_HTTP3Protocol.datagrams_to_send`,
which also sends a close that is due (:mod:`._base`). Time only ever comes
from the last :meth:`~_HTTP3Protocol.clock` call, which must be made before
the first :meth:`~_HTTP3Protocol.datagrams_to_send`: a client starts its
handshake then.

The modules, bottom up: :mod:`._aioquic` (every use of aioquic's private
members), :mod:`._quic` (flow control), :mod:`._base` (the state, GOAWAY
and the close: the lifecycle), :mod:`._streams` (request streams) and this
one (the QUIC side and the two classes); :mod:`._factories` makes them
from :class:`~hface.protocols.ProtocolLimits` and
:class:`~._settings.HTTP3Settings`.

Output is skipped when nothing can have changed: ``datagrams_to_send``
costs as much as building a packet, and aioquic's answer depends only on
its state and the time, so it is asked again only after input, a timer that
fired, a submit, or a close that is due (``_output_pending``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from typing import Final

from aioquic.quic import events as quic_events
from aioquic.quic.configuration import QuicConfiguration

from hface.common import HTTP3_ERROR_CODES, AddressType, DatagramType
from hface.errors import LocalProtocolError, TerminationReason
from hface.protocols import ConnectionState, ProtocolLimits

from .._lifecycle import LifecycleInput
from ._base import CLOSE_LINGER as CLOSE_LINGER
from ._packets import InvalidQUICPacket, sniff_quic_packet
from ._quic import FlowControlledQuicConnection
from ._settings import HTTP3Settings
from ._streams import HTTP3Streams

_CODES: Final = HTTP3_ERROR_CODES
_CLOSING: Final = ConnectionState.CLOSING
_CLOSED: Final = ConnectionState.CLOSED
_TERMINATED: Final = LifecycleInput.TERMINATED


def is_loopback(host: str) -> bool:
    """Return True if ``host`` is a loopback address (or ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


class _HTTP3Protocol(HTTP3Streams):
    """The QUIC side, both sides (internal)."""

    @property
    def connection_ids(self) -> Sequence[bytes]:
        quic = self._quic
        return [] if quic is None else quic.host_connection_ids()

    @property
    def handshake_completed(self) -> bool:
        return self._quic is not None and self._quic.handshake_complete

    def clock(self, now: float) -> None:
        self._now = now
        quic = self._connect()
        if quic is None or self._lifecycle.state is _CLOSED:
            return
        timer = quic.get_timer()
        if timer is not None and timer <= now:
            self._output_pending = True
            was_closing = quic.is_closing()
            try:
                quic.handle_timer(now)
            except Exception as exc:
                self._fail(_CODES.internal_error, f"timer handling failed: {exc!r}")
                return
            if not was_closing and quic.is_closing():
                if self.handshake_completed:
                    self._terminate(
                        _TERMINATED,
                        _CODES.no_error,
                        "idle timeout",
                        reason=TerminationReason.TIMEOUT,
                    )
                else:
                    self._terminate(
                        _TERMINATED,
                        _CODES.internal_error,
                        "handshake timed out",
                        reason=TerminationReason.TIMEOUT,
                    )
            self._pump()

    def get_timer(self) -> float | None:
        quic = self._quic
        if quic is None or self._lifecycle.state is _CLOSED or self._now is None:
            return None
        if self._connect_to is not None:
            return None  # a client before its first clock()
        timer = quic.get_timer()
        linger = self._linger_deadline
        if linger is not None:  # a lingering close (see _base)
            return linger if timer is None else min(timer, linger)
        return timer

    def datagram_received(self, datagram: DatagramType) -> None:
        data, address = datagram
        if self._lifecycle.state is _CLOSED:
            return
        if self._quic is None and (self._is_client or not self._start_server(data, address)):
            return
        quic = self._quic
        assert quic is not None
        now = self._now if self._now is not None else 0.0
        was_pending = self._output_pending
        self._output_pending = True
        self._flood.refill(now)
        try:
            quic.receive_datagram(data, address, now=now)
            self._pump()
        except Exception as exc:
            self._fail(_CODES.internal_error, f"datagram handling failed: {exc!r}")
            return
        if not was_pending and not quic.output_due(now):
            # Only ACKs came, or what came needs only a delayed ACK (its
            # timer makes clock() flag output): datagrams_to_send() can skip.
            self._output_pending = False

    def datagrams_to_send(self) -> Sequence[DatagramType]:
        now = self._now
        if now is None:
            raise LocalProtocolError("clock() must be called before datagrams_to_send()")
        quic = self._connect()
        if quic is None or self._lifecycle.state is _CLOSED:
            return []
        if self._goaway_id_sent is not None:
            self._check_drained()
        if not self._output_pending and self._close_code is None:
            # aioquic's answer depends only on its state and the time, and
            # every timer it set makes clock() flag new output: skip the
            # call, which costs as much as building a packet.
            return []
        self._output_pending = False
        try:
            datagrams = quic.datagrams_to_send(now=now)
            if self._close_code is not None:
                code = self._take_due_close(quic, now)
                if code is not None:
                    # What was pending went out above; the close follows in the same batch.
                    quic.close(error_code=code, reason_phrase="")
                    datagrams += quic.datagrams_to_send(now=now)
        except Exception as exc:
            self._fail(_CODES.internal_error, f"sending failed: {exc!r}")
            return []
        self._check_closed()
        return datagrams

    def connection_lost(self) -> None:
        self._terminate(
            _TERMINATED,
            _CODES.internal_error,
            "connection lost",
            reason=TerminationReason.TRANSPORT_LOST,
        )

    def _connect(self) -> FlowControlledQuicConnection | None:
        return self._quic

    def _start_server(self, data: bytes, address: AddressType) -> bool:
        return False

    def _pump(self) -> None:
        """Handle the events QUIC has queued: count, translate, report."""
        quic = self._quic
        h3 = self._h3
        assert quic is not None
        assert h3 is not None
        lifecycle = self._lifecycle
        closing, closed = _CLOSING, _CLOSED
        while (event := quic.next_event()) is not None:
            state = lifecycle.state
            if state is closing or state is closed:
                continue  # the connection is ending: nothing more is processed
            if isinstance(event, quic_events.StreamDataReceived):
                stream_id = event.stream_id
                kind = stream_id % 4
                if kind == 0:
                    if not self._frames.feed(stream_id, event.data, event.end_stream):
                        self._flooded()
                        continue
                elif kind == (2 if not self._is_client else 3):
                    control = self._control
                    spent = control.spent
                    goaways = control.feed(stream_id, event.data, event.end_stream)
                    if control.spent != spent and not self._flood.spend(control.spent - spent):
                        self._flooded()
                        continue
                    for goaway_id in goaways:
                        self._on_goaway(goaway_id)
                        if lifecycle.state is _CLOSING:
                            break
                    if lifecycle.state is _CLOSING:
                        continue
            elif isinstance(event, quic_events.StreamReset):
                stream_id = event.stream_id
                if stream_id % 4 == 0:
                    self._frames.forget(stream_id)
                    if not self._is_client and not self._answers_our_stop(stream_id):
                        self._on_request_stream_reset()
                        if lifecycle.state is _CLOSING:
                            continue
                else:
                    self._control.forget(stream_id)
                self._on_peer_reset(event.stream_id, event.error_code, finished=True)
            elif isinstance(event, quic_events.StopSendingReceived):
                self._on_peer_reset(event.stream_id, event.error_code, finished=False)
            elif isinstance(event, quic_events.ConnectionTerminated):
                self._check_closed()
                continue
            for h3_event in h3.handle_event(event):
                self._on_h3_event(h3_event)
            for report in h3.take_message_errors():
                self._on_message_error(report)
        self._check_closed()


class HTTP3ClientProtocol(_HTTP3Protocol):
    """The client side of an HTTP/3 connection (aioquic).

    Made by :class:`~hface.protocols.http3.HTTP3ClientFactory`. The QUIC
    handshake starts at the first :meth:`clock` call. Datagrams grow from
    the configuration's ``max_datagram_size`` to ``largest_datagram_size``
    once the server's transport parameters allow it (see :mod:`._aioquic`).
    """

    _is_client = True

    def __init__(
        self,
        *,
        configuration: QuicConfiguration,
        remote_address: AddressType,
        limits: ProtocolLimits,
        settings: HTTP3Settings,
        largest_datagram_size: int | None = None,
    ) -> None:
        super().__init__(configuration=configuration, limits=limits, settings=settings)
        self._connect_to = remote_address
        self._attach(
            FlowControlledQuicConnection(
                configuration=configuration,
                max_concurrent_streams=limits.max_concurrent_streams,
                largest_datagram_size=largest_datagram_size,
            )
        )

    def _connect(self) -> FlowControlledQuicConnection | None:
        quic = self._quic
        address = self._connect_to
        if address is not None and self._now is not None:
            assert quic is not None
            quic.connect(address, now=self._now)
            self._connect_to = None
        return quic


class HTTP3ServerProtocol(_HTTP3Protocol):
    """The server side of an HTTP/3 connection (aioquic).

    Made by :class:`~hface.protocols.http3.HTTP3ServerFactory`. The QUIC
    connection is created by the first datagram (an Initial), which gives
    the original destination connection ID unless the factory was given one:
    after a Retry (RFC 9000 §8.1.2), the ID of the Initial the Retry
    answered, and the Retry's source connection ID, both echoed in the
    transport parameters (§7.3). If that datagram came from a loopback
    address, datagrams of up to the settings' ``loopback_max_datagram_size``
    are sent (see :mod:`._settings`). With a ``connection_id_generator``,
    every connection ID the server issues is one it made.
    """

    _is_client = False

    def __init__(
        self,
        *,
        configuration: QuicConfiguration,
        limits: ProtocolLimits,
        settings: HTTP3Settings,
        original_destination_connection_id: bytes | None = None,
        retry_source_connection_id: bytes | None = None,
        connection_id_generator: Callable[[], bytes] | None = None,
    ) -> None:
        super().__init__(configuration=configuration, limits=limits, settings=settings)
        self._original_dcid = original_destination_connection_id
        self._retry_scid = retry_source_connection_id
        self._connection_id_generator = connection_id_generator
        # The destination connection ID of the Initial that made the
        # connection: the client's retransmissions of it still use it.
        self._initial_dcid = b""

    @property
    def connection_ids(self) -> Sequence[bytes]:
        quic = self._quic
        return [] if quic is None else [*quic.host_connection_ids(), self._initial_dcid]

    def _start_server(self, data: bytes, address: AddressType) -> bool:
        try:
            info = sniff_quic_packet(
                data, connection_id_length=self._configuration.connection_id_length
            )
        except InvalidQUICPacket:
            return False
        if not info.is_initial:
            return False
        if is_loopback(address[0]):
            self._configuration.max_datagram_size = self._settings.loopback_max_datagram_size
        try:
            quic = FlowControlledQuicConnection(
                configuration=self._configuration,
                max_concurrent_streams=self._limits.max_concurrent_streams,
                original_destination_connection_id=(
                    self._original_dcid or info.destination_connection_id
                ),
                retry_source_connection_id=self._retry_scid,
                connection_id_generator=self._connection_id_generator,
            )
        except Exception:
            return False
        self._initial_dcid = info.destination_connection_id
        self._attach(quic)
        return True
