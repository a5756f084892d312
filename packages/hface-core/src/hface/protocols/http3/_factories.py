"""Factories of HTTP/3 protocols: options, TLS and the QUIC configuration.

Theory of operation: each factory holds its options (all keyword-only, with
safe defaults) and turns hface's TLS models into an aioquic
``QuicConfiguration`` per connection, offering only ALPN ``h3``
(RFC 9114 §3.1). The windows are the receive windows of RFC 9000 §4.1; they
stay fixed for the connection's life (see :mod:`._quic`).

Datagram size: aioquic does no path MTU discovery (RFC 9000 §14.3), so on
an unknown path it sends 1,200-byte datagrams, the size every path must
carry (RFC 9000 §14). A loopback path (``127.0.0.0/8``, ``::1``) is known:
its MTU is 64 KiB and nothing on it fragments, so a peer on loopback gets
datagrams of up to ``loopback_max_datagram_size`` bytes. Pure-Python QUIC
spends its time per packet, not per byte, so this is what lets a local
client and server move tens of MB/s instead of a few. The cap is 16,383
bytes: aioquic writes long-header packet lengths as two-byte varints.
Either way no datagram exceeds the peer's ``max_udp_payload_size``
transport parameter (RFC 9000 §18.2), so a client sends its first flight
in ``max_datagram_size`` datagrams and grows them once the server's
parameters have arrived (see :mod:`._quic`).
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence

from aioquic.quic.configuration import QuicConfiguration

from hface.common import AddressType, ClientTLSConfig, ServerTLSConfig
from hface.protocols import HTTPOverQUICClientFactory, HTTPOverQUICServerFactory

from ._guard import DEFAULT_MAX_CONTROL_FRAMES
from ._protocol import (
    DEFAULT_MAX_FIELD_SECTION_SIZE,
    DEFAULT_MAX_RESET_STREAMS,
    DEFAULT_QPACK_BLOCKED_STREAMS,
    DEFAULT_QPACK_MAX_TABLE_CAPACITY,
    HTTP3ClientProtocol,
    HTTP3ServerProtocol,
    check_max_field_section_size,
    check_qpack_options,
    is_loopback,
)

#: Seconds of silence before a connection is dropped (RFC 9000 §10.1).
DEFAULT_IDLE_TIMEOUT = 60.0
#: Bidirectional streams the peer may have open at once (RFC 9000 §4.6).
DEFAULT_MAX_CONCURRENT_STREAMS = 100
#: Bytes a peer may send on one stream ahead of what we consumed.
DEFAULT_STREAM_RECEIVE_WINDOW = 256 * 1024
#: Bytes a peer may send on all streams ahead of what we consumed.
DEFAULT_CONNECTION_RECEIVE_WINDOW = 1024 * 1024
#: The largest UDP payload we send (RFC 9000 §14: at least 1,200).
DEFAULT_MAX_DATAGRAM_SIZE = 1200
#: The largest UDP payload we send to a peer on loopback (see the module docstring).
DEFAULT_LOOPBACK_MAX_DATAGRAM_SIZE = 16000
#: aioquic encodes long-header packet lengths in two-byte varints.
_LARGEST_DATAGRAM_SIZE = 16383

_ALPN = ["h3"]


def _load_default_verify_locations(configuration: QuicConfiguration) -> None:
    """Trust the CAs ``ssl.create_default_context()`` would, as TCP connections do.

    aioquic, given no CAs, trusts certifi's bundle only. Python's ``ssl``
    trusts OpenSSL's default locations, which ``SSL_CERT_FILE`` and
    ``SSL_CERT_DIR`` override: :func:`ssl.get_default_verify_paths` resolves
    them (``None`` where nothing exists). Where OpenSSL has no default
    location (Windows, some macOS builds) the certificates ``ssl`` loaded
    from the system store are passed instead; with none at all, aioquic's
    certifi default stays.
    """
    paths = ssl.get_default_verify_paths()
    if paths.cafile or paths.capath:
        configuration.load_verify_locations(cafile=paths.cafile, capath=paths.capath)
        return
    certificates = ssl.create_default_context().get_ca_certs(binary_form=True)
    if certificates:
        cadata = "".join(ssl.DER_cert_to_PEM_cert(der) for der in certificates)
        configuration.load_verify_locations(cadata=cadata.encode("ascii"))


class _Options:
    def __init__(
        self,
        *,
        idle_timeout: float,
        max_concurrent_streams: int,
        stream_receive_window: int,
        connection_receive_window: int,
        max_datagram_size: int,
        loopback_max_datagram_size: int,
        qpack_max_table_capacity: int,
        qpack_blocked_streams: int,
        max_control_frames: int,
        max_field_section_size: int,
    ) -> None:
        check_max_field_section_size(max_field_section_size)
        if max_control_frames < 1:
            raise ValueError(f"max_control_frames must be at least 1, not {max_control_frames}")
        check_qpack_options(
            qpack_max_table_capacity=qpack_max_table_capacity,
            qpack_blocked_streams=qpack_blocked_streams,
        )
        if idle_timeout <= 0:
            raise ValueError("idle_timeout must be positive")
        if max_concurrent_streams < 1:
            raise ValueError("max_concurrent_streams must be at least 1")
        if stream_receive_window < 1024 or connection_receive_window < stream_receive_window:
            raise ValueError(
                "stream_receive_window must be at least 1024 bytes and "
                "connection_receive_window at least stream_receive_window"
            )
        if not 1200 <= max_datagram_size <= _LARGEST_DATAGRAM_SIZE:
            raise ValueError(
                "max_datagram_size must be between 1200 (RFC 9000 §14)"
                f" and {_LARGEST_DATAGRAM_SIZE}"
            )
        if not max_datagram_size <= loopback_max_datagram_size <= _LARGEST_DATAGRAM_SIZE:
            raise ValueError(
                "loopback_max_datagram_size must be between max_datagram_size"
                f" and {_LARGEST_DATAGRAM_SIZE}"
            )
        self.idle_timeout = idle_timeout
        self.max_concurrent_streams = max_concurrent_streams
        self.stream_receive_window = stream_receive_window
        self.connection_receive_window = connection_receive_window
        self.max_datagram_size = max_datagram_size
        self.loopback_max_datagram_size = loopback_max_datagram_size
        self.qpack_max_table_capacity = qpack_max_table_capacity
        self.qpack_blocked_streams = qpack_blocked_streams
        self.max_control_frames = max_control_frames
        self.max_field_section_size = max_field_section_size

    def configuration(self, *, is_client: bool) -> QuicConfiguration:
        return QuicConfiguration(
            alpn_protocols=list(_ALPN),
            is_client=is_client,
            idle_timeout=self.idle_timeout,
            max_data=self.connection_receive_window,
            max_stream_data=self.stream_receive_window,
            max_datagram_size=self.max_datagram_size,
        )


class HTTP3ClientFactory(HTTPOverQUICClientFactory):
    """Makes :class:`HTTP3ClientProtocol` objects (aioquic).

    :param idle_timeout: seconds without traffic before the connection ends.
    :param max_concurrent_streams: bidirectional streams the server may open
        (HTTP/3 servers open none without push; kept for symmetry).
    :param stream_receive_window: per-stream receive window, in bytes.
    :param connection_receive_window: connection receive window, in bytes.
    :param max_datagram_size: the largest UDP payload to send.
    :param loopback_max_datagram_size: the largest UDP payload to send to a
        peer on loopback (see the module docstring).
    :param qpack_max_table_capacity: the largest QPACK dynamic table the
        peer's encoder may use, in bytes (SETTINGS_QPACK_MAX_TABLE_CAPACITY,
        RFC 9204 §3.2.3); default 4,096; 0 turns the dynamic table off. A
        peer that sets a larger capacity gets QPACK_ENCODER_STREAM_ERROR.
    :param qpack_blocked_streams: how many streams the peer's header blocks
        may keep blocked on table updates not yet received
        (SETTINGS_QPACK_BLOCKED_STREAMS, RFC 9204 §2.1.2); default 16. One
        more is QPACK_DECOMPRESSION_FAILED.
    :param max_control_frames: the flood budget (RFC 9114 §10.5): how many
        frames and streams that carry no request and no data (control
        frames but SETTINGS, frames of unknown types, DATA frames under 16
        bytes, unidirectional streams of unknown types) the peer may send
        beyond one per HEADERS or larger DATA frame; the whole budget comes
        back every 10 seconds. Default 1,000; past it the peer gets
        H3_EXCESSIVE_LOAD.
    :param max_field_section_size: the largest response header section
        accepted, decoded (RFC 9114 §4.2.2: names and values plus 32 bytes
        per field), advertised as SETTINGS_MAX_FIELD_SECTION_SIZE
        (§7.2.4.1); default 64 KiB. A larger response is discarded: its
        stream is reset with H3_EXCESSIVE_LOAD (``StreamResetSent``).
    :raises ValueError: if an option is out of range.
    """

    def __init__(
        self,
        *,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        max_concurrent_streams: int = DEFAULT_MAX_CONCURRENT_STREAMS,
        stream_receive_window: int = DEFAULT_STREAM_RECEIVE_WINDOW,
        connection_receive_window: int = DEFAULT_CONNECTION_RECEIVE_WINDOW,
        max_datagram_size: int = DEFAULT_MAX_DATAGRAM_SIZE,
        loopback_max_datagram_size: int = DEFAULT_LOOPBACK_MAX_DATAGRAM_SIZE,
        qpack_max_table_capacity: int = DEFAULT_QPACK_MAX_TABLE_CAPACITY,
        qpack_blocked_streams: int = DEFAULT_QPACK_BLOCKED_STREAMS,
        max_control_frames: int = DEFAULT_MAX_CONTROL_FRAMES,
        max_field_section_size: int = DEFAULT_MAX_FIELD_SECTION_SIZE,
    ) -> None:
        self._options = _Options(
            idle_timeout=idle_timeout,
            max_concurrent_streams=max_concurrent_streams,
            stream_receive_window=stream_receive_window,
            connection_receive_window=connection_receive_window,
            max_datagram_size=max_datagram_size,
            loopback_max_datagram_size=loopback_max_datagram_size,
            qpack_max_table_capacity=qpack_max_table_capacity,
            qpack_blocked_streams=qpack_blocked_streams,
            max_control_frames=max_control_frames,
            max_field_section_size=max_field_section_size,
        )

    def __call__(
        self, *, remote_address: AddressType, server_name: str, tls_config: ClientTLSConfig
    ) -> HTTP3ClientProtocol:
        configuration = self._options.configuration(is_client=True)
        configuration.server_name = server_name
        largest_datagram_size = None
        if is_loopback(remote_address[0]):
            largest_datagram_size = self._options.loopback_max_datagram_size
        if tls_config.insecure:
            configuration.verify_mode = ssl.CERT_NONE
        if tls_config.cafile or tls_config.capath or tls_config.cadata:
            cadata = tls_config.cadata
            configuration.load_verify_locations(
                cafile=tls_config.cafile,
                capath=tls_config.capath,
                cadata=cadata.encode("ascii") if isinstance(cadata, str) else cadata,
            )
        elif not tls_config.insecure:
            _load_default_verify_locations(configuration)
        if tls_config.certfile:
            configuration.load_cert_chain(tls_config.certfile, tls_config.keyfile)
        return HTTP3ClientProtocol(
            configuration=configuration,
            remote_address=remote_address,
            max_concurrent_streams=self._options.max_concurrent_streams,
            largest_datagram_size=largest_datagram_size,
            qpack_max_table_capacity=self._options.qpack_max_table_capacity,
            qpack_blocked_streams=self._options.qpack_blocked_streams,
            max_control_frames=self._options.max_control_frames,
            max_field_section_size=self._options.max_field_section_size,
        )


class HTTP3ServerFactory(HTTPOverQUICServerFactory):
    """Makes :class:`HTTP3ServerProtocol` objects (aioquic).

    :param idle_timeout: seconds without traffic before the connection ends.
    :param max_concurrent_streams: request streams a client may have open at once.
    :param stream_receive_window: per-stream receive window, in bytes.
    :param connection_receive_window: connection receive window, in bytes.
    :param max_datagram_size: the largest UDP payload to send.
    :param loopback_max_datagram_size: the largest UDP payload to send to a
        peer on loopback (see the module docstring).
    :param qpack_max_table_capacity: the largest QPACK dynamic table the
        peer's encoder may use, in bytes (SETTINGS_QPACK_MAX_TABLE_CAPACITY,
        RFC 9204 §3.2.3); default 4,096; 0 turns the dynamic table off. A
        peer that sets a larger capacity gets QPACK_ENCODER_STREAM_ERROR.
    :param qpack_blocked_streams: how many streams the peer's header blocks
        may keep blocked on table updates not yet received
        (SETTINGS_QPACK_BLOCKED_STREAMS, RFC 9204 §2.1.2); default 16. One
        more is QPACK_DECOMPRESSION_FAILED.
    :param max_control_frames: the flood budget (RFC 9114 §10.5): how many
        frames and streams that carry no request and no data (control
        frames but SETTINGS, frames of unknown types, DATA frames under 16
        bytes, unidirectional streams of unknown types) the peer may send
        beyond one per HEADERS or larger DATA frame; the whole budget comes
        back every 10 seconds. Default 1,000; past it the peer gets
        H3_EXCESSIVE_LOAD.
    :param max_field_section_size: the largest request header section
        accepted, decoded (RFC 9114 §4.2.2: names and values plus 32 bytes
        per field), advertised as SETTINGS_MAX_FIELD_SECTION_SIZE
        (§7.2.4.1); default 64 KiB. A larger request is answered with 431
        (§4.2.2) and the rest of it dropped, without reaching the
        application; larger trailers reset the stream with H3_EXCESSIVE_LOAD.
    :param connection_id_length: the length of the connection IDs issued.
    :param max_reset_streams: how many request streams a client may reset
        before they complete beyond those that completed (RFC 9114 §10.5,
        rapid reset); past it the client gets H3_EXCESSIVE_LOAD. Each
        completed request earns one back, up to this value; default 200.
    :raises ValueError: if an option is out of range.

    aioquic cannot ask clients for certificates, so a
    :class:`~hface.common.ServerTLSConfig` with ``require_client_certificate``
    is refused (``ValueError``) and ``client_cafile`` alone is ignored.
    """

    def __init__(
        self,
        *,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        max_concurrent_streams: int = DEFAULT_MAX_CONCURRENT_STREAMS,
        stream_receive_window: int = DEFAULT_STREAM_RECEIVE_WINDOW,
        connection_receive_window: int = DEFAULT_CONNECTION_RECEIVE_WINDOW,
        max_datagram_size: int = DEFAULT_MAX_DATAGRAM_SIZE,
        loopback_max_datagram_size: int = DEFAULT_LOOPBACK_MAX_DATAGRAM_SIZE,
        qpack_max_table_capacity: int = DEFAULT_QPACK_MAX_TABLE_CAPACITY,
        qpack_blocked_streams: int = DEFAULT_QPACK_BLOCKED_STREAMS,
        max_control_frames: int = DEFAULT_MAX_CONTROL_FRAMES,
        max_field_section_size: int = DEFAULT_MAX_FIELD_SECTION_SIZE,
        connection_id_length: int = 8,
        max_reset_streams: int = DEFAULT_MAX_RESET_STREAMS,
    ) -> None:
        if not 4 <= connection_id_length <= 20:
            raise ValueError("connection_id_length must be between 4 and 20")
        if max_reset_streams < 1:
            raise ValueError("max_reset_streams must be at least 1")
        self._max_reset_streams = max_reset_streams
        self._options = _Options(
            idle_timeout=idle_timeout,
            max_concurrent_streams=max_concurrent_streams,
            stream_receive_window=stream_receive_window,
            connection_receive_window=connection_receive_window,
            max_datagram_size=max_datagram_size,
            loopback_max_datagram_size=loopback_max_datagram_size,
            qpack_max_table_capacity=qpack_max_table_capacity,
            qpack_blocked_streams=qpack_blocked_streams,
            max_control_frames=max_control_frames,
            max_field_section_size=max_field_section_size,
        )
        self._connection_id_length = connection_id_length
        self._certificates: dict[tuple[str, str | None], QuicConfiguration] = {}
        self._supported_versions = tuple(QuicConfiguration(is_client=False).supported_versions)

    @property
    def quic_connection_id_length(self) -> int:
        return self._connection_id_length

    @property
    def quic_supported_versions(self) -> Sequence[int]:
        return self._supported_versions

    def __call__(
        self,
        *,
        tls_config: ServerTLSConfig,
        original_destination_connection_id: bytes | None = None,
        retry_source_connection_id: bytes | None = None,
    ) -> HTTP3ServerProtocol:
        if tls_config.require_client_certificate:
            raise ValueError("aioquic cannot verify client certificates")
        if not tls_config.certfile:
            raise ValueError("an HTTP/3 server needs a certificate (certfile)")
        configuration = self._options.configuration(is_client=False)
        configuration.connection_id_length = self._connection_id_length
        key = (tls_config.certfile, tls_config.keyfile)
        loaded = self._certificates.get(key)
        if loaded is None:
            # Parsing the chain for every connection would be slow: do it once.
            loaded = QuicConfiguration(is_client=False)
            loaded.load_cert_chain(tls_config.certfile, tls_config.keyfile)
            self._certificates[key] = loaded
        configuration.certificate = loaded.certificate
        configuration.certificate_chain = loaded.certificate_chain
        configuration.private_key = loaded.private_key
        return HTTP3ServerProtocol(
            configuration=configuration,
            loopback_max_datagram_size=self._options.loopback_max_datagram_size,
            max_concurrent_streams=self._options.max_concurrent_streams,
            max_reset_streams=self._max_reset_streams,
            original_destination_connection_id=original_destination_connection_id,
            retry_source_connection_id=retry_source_connection_id,
            qpack_max_table_capacity=self._options.qpack_max_table_capacity,
            qpack_blocked_streams=self._options.qpack_blocked_streams,
            max_control_frames=self._options.max_control_frames,
            max_field_section_size=self._options.max_field_section_size,
        )
