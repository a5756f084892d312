"""Factories of HTTP/2 protocols: their limits and settings (see :mod:`._settings`)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Final, TypeVar

from hface.protocols import HTTPOverTCPFactory, ProtocolLimits

from .._settings import with_options
from ._protocol import HTTP2ClientProtocol, HTTP2ServerProtocol
from ._settings import HTTP2Settings

#: The keyword arguments named otherwise than their field of ProtocolLimits.
_LIMIT_NAMES: Final = {"max_header_list_size": "max_header_size"}

_F = TypeVar("_F", bound="_HTTP2Factory")


class _HTTP2Factory(HTTPOverTCPFactory):
    """The options both sides take (see :class:`HTTP2ServerFactory`)."""

    def __init__(
        self,
        *,
        limits: ProtocolLimits | None = None,
        settings: HTTP2Settings | None = None,
        max_concurrent_streams: int | None = None,
        initial_window_size: int | None = None,
        connection_window_size: int | None = None,
        max_header_list_size: int | None = None,
        max_frame_size: int | None = None,
        max_control_frames: int | None = None,
        max_reset_streams: int | None = None,
        header_table_size: int | None = None,
    ) -> None:
        limit_options = {
            "max_concurrent_streams": max_concurrent_streams,
            "max_header_list_size": max_header_list_size,
            "max_control_frames": max_control_frames,
            "max_reset_streams": max_reset_streams,
            "header_table_size": header_table_size,
        }
        setting_options = {
            "initial_window_size": initial_window_size,
            "connection_window_size": connection_window_size,
            "max_frame_size": max_frame_size,
        }
        self._limits = with_options(limits or ProtocolLimits(), limit_options, _LIMIT_NAMES)
        self._settings = with_options(settings or HTTP2Settings(), setting_options, {})

    @property
    def limits(self) -> ProtocolLimits:
        """The limits the protocols made keep."""
        return self._limits

    @property
    def settings(self) -> HTTP2Settings:
        """The HTTP/2 settings the protocols made send."""
        return self._settings

    @property
    def alpn_protocols(self) -> Sequence[str]:
        return ["h2"]

    def with_limits(self: _F, limits: ProtocolLimits) -> _F:
        """Return a copy of this factory whose protocols keep ``limits``; the settings stay."""
        factory = copy.copy(self)
        factory._limits = limits
        return factory


class HTTP2ClientFactory(_HTTP2Factory):
    """Makes :class:`HTTP2ClientProtocol` objects (h2), offered as ALPN ``h2``.

    Everything is sent to the server as SETTINGS (RFC 9113 §6.5.2), except
    the connection window (a WINDOW_UPDATE). The server may open no stream:
    pushes are refused (SETTINGS_ENABLE_PUSH is 0), so
    ``max_concurrent_streams`` only matters to extensions.

    :param limits: the limits every version shares
        (:class:`~hface.protocols.ProtocolLimits`, whose fields document
        their defaults).
    :param settings: HTTP/2's own (:class:`HTTP2Settings`).
    :raises ValueError: if an option is out of the range HTTP/2 allows.

    Each field of both can also be given alone, as a keyword argument that
    replaces it: ``max_concurrent_streams``, ``max_header_list_size``
    (:attr:`~hface.protocols.ProtocolLimits.max_header_size`),
    ``header_table_size``, ``max_reset_streams``, ``max_control_frames``,
    ``initial_window_size``, ``connection_window_size`` and
    ``max_frame_size``.
    """

    def __call__(
        self, *, tls_version: str | None = None, alpn_protocol: str | None = None
    ) -> HTTP2ClientProtocol:
        return HTTP2ClientProtocol(limits=self._limits, settings=self._settings)


class HTTP2ServerFactory(_HTTP2Factory):
    """Makes :class:`HTTP2ServerProtocol` objects (h2), offered as ALPN ``h2``.

    Everything is sent to the client as SETTINGS (RFC 9113 §6.5.2), except
    the connection window (a WINDOW_UPDATE). A stream opened beyond
    ``max_concurrent_streams`` is refused with RST_STREAM(REFUSED_STREAM),
    which the client may retry (RFC 9113 §5.1.2); the streams accepted go
    on. Refusals beyond ten times ``max_concurrent_streams`` (plus one per
    completed stream) are a flood: GOAWAY(ENHANCE_YOUR_CALM) names the last
    stream accepted, which is still answered.

    :param limits: the limits every version shares
        (:class:`~hface.protocols.ProtocolLimits`, whose fields document
        their defaults).
    :param settings: HTTP/2's own (:class:`HTTP2Settings`).
    :raises ValueError: if an option is out of the range HTTP/2 allows.

    Each field of both can also be given alone, as a keyword argument that
    replaces it, as for :class:`HTTP2ClientFactory`.
    """

    def __call__(
        self, *, tls_version: str | None = None, alpn_protocol: str | None = None
    ) -> HTTP2ServerProtocol:
        return HTTP2ServerProtocol(limits=self._limits, settings=self._settings)
