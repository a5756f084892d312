"""Factories of HTTP/3 protocols: limits, settings, TLS and the QUIC configuration.

Theory of operation: each factory holds a
:class:`~hface.protocols.ProtocolLimits` and an
:class:`~._settings.HTTP3Settings` (see :mod:`._settings` for the datagram
sizes) and turns them and hface's TLS models into an aioquic
``QuicConfiguration`` per connection, offering only ALPN ``h3`` (RFC 9114
§3.1).

Two debugging aids write files, the one exception to the protocol layer's
"no I/O": a client's ``tls_config.keylog_filename`` gets the TLS secrets
aioquic derives (NSS key log lines, appended by :class:`_KeyLogFile` as
the handshake makes them), and :attr:`HTTP3Settings.qlog_dir` gets one qlog
file per connection (:mod:`._qlog`, written as the connection ends). Both are off unless asked for.

Making a factory imports no aioquic (nor the cryptography package aioquic
loads, about 17 MiB resident): a server that listens for HTTP/3 but is
never reached over it does not pay for it. aioquic comes with the first
protocol made (or the first datagram the networking layer sniffs).
"""

from __future__ import annotations

import copy
import dataclasses
import ssl
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final, TextIO, TypeVar, cast

from hface.common import AddressType, ClientTLSConfig, ServerTLSConfig
from hface.protocols import HTTPOverQUICClientFactory, HTTPOverQUICServerFactory, ProtocolLimits

from .._settings import with_options
from ._settings import HTTP3Settings

if TYPE_CHECKING:  # imported where used: they import aioquic (see the module's docstring)
    from aioquic.quic.configuration import QuicConfiguration

    from ._protocol import HTTP3ClientProtocol, HTTP3ServerProtocol

#: The keyword arguments named otherwise than their field of ProtocolLimits.
_LIMIT_NAMES: Final = {
    "max_field_section_size": "max_header_size",
    "qpack_max_table_capacity": "header_table_size",
}

_ALPN: Final = ["h3"]

#: The QUIC versions aioquic accepts, for version negotiation: its
#: ``QuicConfiguration().supported_versions`` (QUIC version 1, RFC 9000, and
#: version 2, RFC 9369), written out so that listening imports no aioquic
#: (tests/test_protocols/test_http3.py checks that they agree).
_SUPPORTED_VERSIONS: Final = (0x00000001, 0x6B3343CF)

_F = TypeVar("_F", bound="_HTTP3Factory")


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


class _KeyLogFile:
    """Appends aioquic's key log lines to a file, opening it for each write.

    aioquic writes a few lines per handshake and flushes after each; the
    file stays closed in between, so no connection holds it open.
    """

    def __init__(self, path: str) -> None:
        self._path = path

    def write(self, text: str) -> int:
        with open(self._path, "a", encoding="ascii") as file:
            return file.write(text)

    def flush(self) -> None:
        """Nothing to do: every write closed the file."""


class _HTTP3Factory:
    """The options both sides take (see :class:`HTTP3ServerFactory`)."""

    def __init__(
        self,
        *,
        limits: ProtocolLimits | None = None,
        settings: HTTP3Settings | None = None,
        idle_timeout: float | None = None,
        max_concurrent_streams: int | None = None,
        stream_receive_window: int | None = None,
        connection_receive_window: int | None = None,
        max_datagram_size: int | None = None,
        loopback_max_datagram_size: int | None = None,
        qpack_max_table_capacity: int | None = None,
        qpack_blocked_streams: int | None = None,
        max_control_frames: int | None = None,
        max_field_section_size: int | None = None,
        max_reset_streams: int | None = None,
        connection_id_length: int | None = None,
        qlog_dir: str | None = None,
        max_datagram_frame_size: int | None = None,
    ) -> None:
        limit_options = {
            "max_concurrent_streams": max_concurrent_streams,
            "qpack_max_table_capacity": qpack_max_table_capacity,
            "max_control_frames": max_control_frames,
            "max_field_section_size": max_field_section_size,
            "max_reset_streams": max_reset_streams,
        }
        setting_options = {
            "idle_timeout": idle_timeout,
            "stream_receive_window": stream_receive_window,
            "connection_receive_window": connection_receive_window,
            "max_datagram_size": max_datagram_size,
            "loopback_max_datagram_size": loopback_max_datagram_size,
            "qpack_blocked_streams": qpack_blocked_streams,
            "connection_id_length": connection_id_length,
            "qlog_dir": qlog_dir,
            "max_datagram_frame_size": max_datagram_frame_size,
        }
        self._limits = with_options(limits or ProtocolLimits(), limit_options, _LIMIT_NAMES)
        self._settings = with_options(settings or HTTP3Settings(), setting_options, {})

    @property
    def limits(self) -> ProtocolLimits:
        """The limits the protocols made keep."""
        return self._limits

    @property
    def settings(self) -> HTTP3Settings:
        """The HTTP/3 settings of the protocols made."""
        return self._settings

    def with_limits(self: _F, limits: ProtocolLimits) -> _F:
        """Return a copy of this factory whose protocols keep ``limits``; the settings stay."""
        factory = copy.copy(self)
        factory._limits = limits
        return factory

    def _configuration(self, *, is_client: bool) -> QuicConfiguration:
        from aioquic.quic.configuration import QuicConfiguration
        from aioquic.quic.logger import QuicLogger

        from ._qlog import QlogFileLogger

        settings = self._settings
        return QuicConfiguration(
            alpn_protocols=list(_ALPN),
            is_client=is_client,
            idle_timeout=settings.idle_timeout,
            max_data=settings.connection_receive_window,
            max_stream_data=settings.stream_receive_window,
            max_datagram_size=settings.max_datagram_size,
            connection_id_length=settings.connection_id_length,
            # Duck-typed: aioquic calls only start_trace() and end_trace().
            quic_logger=(
                None
                if settings.qlog_dir is None
                else cast(QuicLogger, QlogFileLogger(settings.qlog_dir))
            ),
            max_datagram_frame_size=settings.max_datagram_frame_size or None,
        )


class HTTP3ClientFactory(_HTTP3Factory, HTTPOverQUICClientFactory):
    """Makes :class:`HTTP3ClientProtocol` objects (aioquic).

    A response whose header section is over
    :attr:`~hface.protocols.ProtocolLimits.max_header_size` is discarded: its
    stream is reset with H3_EXCESSIVE_LOAD (``StreamResetSent``). An HTTP/3
    server opens no stream (without push), so ``max_concurrent_streams`` is
    kept for symmetry, and a client spends no reset budget.

    :param limits: the limits every version shares
        (:class:`~hface.protocols.ProtocolLimits`, whose fields document
        their defaults).
    :param settings: HTTP/3's own (:class:`HTTP3Settings`).
    :raises ValueError: if an option is out of range.

    Each field of both can also be given alone, as a keyword argument that
    replaces it: ``max_concurrent_streams``, ``max_field_section_size``
    (:attr:`~hface.protocols.ProtocolLimits.max_header_size`),
    ``qpack_max_table_capacity``
    (:attr:`~hface.protocols.ProtocolLimits.header_table_size`),
    ``max_reset_streams``, ``max_control_frames``, ``idle_timeout``,
    ``stream_receive_window``, ``connection_receive_window``,
    ``max_datagram_size``, ``loopback_max_datagram_size``,
    ``qpack_blocked_streams``, ``connection_id_length``, ``qlog_dir`` and
    ``max_datagram_frame_size``.

    ``tls_config.keylog_filename``, if set, gets the connection's TLS
    secrets (NSS key log format).
    """

    def with_max_datagram_size(self, size: int, loopback_size: int) -> HTTP3ClientFactory:
        """Return a copy whose settings have these ``max_datagram_size`` values."""
        factory = copy.copy(self)
        factory._settings = dataclasses.replace(
            self._settings, max_datagram_size=size, loopback_max_datagram_size=loopback_size
        )
        return factory

    def __call__(
        self, *, remote_address: AddressType, server_name: str, tls_config: ClientTLSConfig
    ) -> HTTP3ClientProtocol:
        from ._protocol import HTTP3ClientProtocol, is_loopback

        configuration = self._configuration(is_client=True)
        configuration.server_name = server_name
        largest_datagram_size = None
        if is_loopback(remote_address[0]):
            largest_datagram_size = self._settings.loopback_max_datagram_size
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
        if tls_config.keylog_filename is not None:
            # aioquic calls only write() and flush() (typed TextIO for files).
            configuration.secrets_log_file = cast(TextIO, _KeyLogFile(tls_config.keylog_filename))
        return HTTP3ClientProtocol(
            configuration=configuration,
            remote_address=remote_address,
            limits=self._limits,
            settings=self._settings,
            largest_datagram_size=largest_datagram_size,
        )


class HTTP3ServerFactory(_HTTP3Factory, HTTPOverQUICServerFactory):
    """Makes :class:`HTTP3ServerProtocol` objects (aioquic).

    A request whose header section is over
    :attr:`~hface.protocols.ProtocolLimits.max_header_size` is answered with
    431 (RFC 9114 §4.2.2) and the rest of it dropped, without reaching the
    application; larger trailers reset the stream with H3_EXCESSIVE_LOAD.
    A client that opens a stream beyond ``max_concurrent_streams`` gets
    STREAM_LIMIT_ERROR (RFC 9000 §4.6).

    :param limits: the limits every version shares
        (:class:`~hface.protocols.ProtocolLimits`, whose fields document
        their defaults).
    :param settings: HTTP/3's own (:class:`HTTP3Settings`).
    :raises ValueError: if an option is out of range.

    Each field of both can also be given alone, as a keyword argument that
    replaces it, as for :class:`HTTP3ClientFactory`.

    :meth:`with_connection_id_generator` chooses the connection IDs the
    protocols issue (random ones by default).

    aioquic cannot ask clients for certificates, so a
    :class:`~hface.common.ServerTLSConfig` with ``require_client_certificate``
    is refused (``ValueError``) and ``client_cafile`` alone is ignored.
    """

    #: Certificate chains parsed once, by (certfile, keyfile); made on first use.
    _certificates: dict[tuple[str, str | None], QuicConfiguration] | None = None
    #: Makes every connection ID issued (see with_connection_id_generator); None: random.
    _connection_id_generator: Callable[[], bytes] | None = None

    @property
    def quic_connection_id_length(self) -> int:
        return self._settings.connection_id_length

    @property
    def quic_connection_id_generator(self) -> Callable[[], bytes] | None:
        return self._connection_id_generator

    def with_connection_id_generator(self, generator: Callable[[], bytes]) -> HTTP3ServerFactory:
        """Return a copy of this factory whose protocols issue the IDs ``generator`` makes.

        The first connection ID of each connection and every one of its
        NEW_CONNECTION_ID frames come from it, so that they carry what a
        ``ConnectionIDLayout`` puts in them: the worker and the server. The
        copy's ``connection_id_length`` setting becomes the length of its IDs.

        :raises ValueError: if ``generator`` makes IDs of a length QUIC does
            not allow here (4 to 20 bytes).
        """
        length = len(generator())
        settings = self._settings
        if length != settings.connection_id_length:
            settings = dataclasses.replace(settings, connection_id_length=length)
        factory = copy.copy(self)
        factory._settings = settings
        factory._connection_id_generator = generator
        return factory

    @property
    def quic_supported_versions(self) -> Sequence[int]:
        return _SUPPORTED_VERSIONS

    def __call__(
        self,
        *,
        tls_config: ServerTLSConfig,
        original_destination_connection_id: bytes | None = None,
        retry_source_connection_id: bytes | None = None,
    ) -> HTTP3ServerProtocol:
        from aioquic.quic.configuration import QuicConfiguration

        from ._protocol import HTTP3ServerProtocol

        if tls_config.require_client_certificate:
            raise ValueError("aioquic cannot verify client certificates")
        if not tls_config.certfile:
            raise ValueError("an HTTP/3 server needs a certificate (certfile)")
        configuration = self._configuration(is_client=False)
        certificates = self._certificates
        if certificates is None:
            certificates = self._certificates = {}
        key = (tls_config.certfile, tls_config.keyfile)
        loaded = certificates.get(key)
        if loaded is None:
            # Parsing the chain for every connection would be slow: do it once.
            loaded = QuicConfiguration(is_client=False)
            loaded.load_cert_chain(tls_config.certfile, tls_config.keyfile)
            certificates[key] = loaded
        configuration.certificate = loaded.certificate
        configuration.certificate_chain = loaded.certificate_chain
        configuration.private_key = loaded.private_key
        return HTTP3ServerProtocol(
            configuration=configuration,
            limits=self._limits,
            settings=self._settings,
            original_destination_connection_id=original_destination_connection_id,
            retry_source_connection_id=retry_source_connection_id,
            connection_id_generator=self._connection_id_generator,
        )
