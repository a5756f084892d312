"""Factories of HTTP/2 protocols, with their options and defaults.

The defaults trade memory for throughput conservatively. A peer can make us
buffer at most the connection window of unread data (RFC 9113 §6.9), however
many streams it opens, because windows reopen only as the application
consumes data. A window must still cover the bandwidth-delay product for
full speed: 256 KiB per stream and 1 MiB per connection allow about 2.5 MB/s
per stream and 10 MB/s per connection at 100 ms round trips, and far more
on short ones, for at most 1 MiB of unread data per connection.
"""

from __future__ import annotations

from collections.abc import Sequence

from hface.protocols import HTTPOverTCPFactory

from ._h2 import (
    DEFAULT_CONNECTION_WINDOW_SIZE,
    DEFAULT_HEADER_TABLE_SIZE,
    DEFAULT_INITIAL_WINDOW_SIZE,
    DEFAULT_MAX_CONCURRENT_STREAMS,
    DEFAULT_MAX_CONTROL_FRAMES,
    DEFAULT_MAX_FRAME_SIZE,
    DEFAULT_MAX_HEADER_LIST_SIZE,
    DEFAULT_MAX_RESET_STREAMS,
    check_options,
)
from ._protocol import HTTP2ClientProtocol, HTTP2ServerProtocol


class _HTTP2Factory(HTTPOverTCPFactory):
    def __init__(
        self,
        *,
        max_concurrent_streams: int = DEFAULT_MAX_CONCURRENT_STREAMS,
        initial_window_size: int = DEFAULT_INITIAL_WINDOW_SIZE,
        connection_window_size: int = DEFAULT_CONNECTION_WINDOW_SIZE,
        max_header_list_size: int = DEFAULT_MAX_HEADER_LIST_SIZE,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        max_control_frames: int = DEFAULT_MAX_CONTROL_FRAMES,
        max_reset_streams: int = DEFAULT_MAX_RESET_STREAMS,
        header_table_size: int = DEFAULT_HEADER_TABLE_SIZE,
    ) -> None:
        check_options(
            max_concurrent_streams=max_concurrent_streams,
            initial_window_size=initial_window_size,
            connection_window_size=connection_window_size,
            max_header_list_size=max_header_list_size,
            max_frame_size=max_frame_size,
            max_control_frames=max_control_frames,
            max_reset_streams=max_reset_streams,
            header_table_size=header_table_size,
        )
        self._header_table_size = header_table_size
        self._max_control_frames = max_control_frames
        self._max_reset_streams = max_reset_streams
        self._max_concurrent_streams = max_concurrent_streams
        self._initial_window_size = initial_window_size
        self._connection_window_size = connection_window_size
        self._max_header_list_size = max_header_list_size
        self._max_frame_size = max_frame_size

    @property
    def alpn_protocols(self) -> Sequence[str]:
        return ["h2"]


class HTTP2ClientFactory(_HTTP2Factory):
    """Makes :class:`HTTP2ClientProtocol` objects (h2), offered as ALPN ``h2``.

    All options are keyword-only and are sent to the server as SETTINGS
    (RFC 9113 §6.5.2), except the connection window (a WINDOW_UPDATE).

    :param max_concurrent_streams: streams the server may open (it may not
        push, so this only matters to extensions); default 100.
    :param initial_window_size: the flow-control window of each stream for
        data we receive; default 256 KiB.
    :param connection_window_size: the flow-control window of the whole
        connection for data we receive, and so the most unread data we can be
        made to hold; default 1 MiB.
    :param max_header_list_size: the largest header block we accept,
        decompressed (RFC 9113 §6.5.2, the HPACK bomb bound); default 64 KiB.
    :param max_frame_size: the largest frame payload we accept; default
        64 KiB (fewer frames than the protocol's 16 KiB, for throughput).
    :param max_control_frames: the flood budget (RFC 9113 §10.5): how many
        frames that carry no request and no data (PING, SETTINGS, PRIORITY,
        RST_STREAM, empty DATA, unknown types) the peer may send beyond one
        per request or DATA frame it sent; default 1,000. Past it the peer
        gets GOAWAY(ENHANCE_YOUR_CALM).
    :param max_reset_streams: how many streams may be reset before they
        completed (by the peer, as in the rapid reset attack CVE-2023-44487,
        or by us for the peer's errors) beyond one per stream that completed;
        default 200. Past it the peer gets GOAWAY(ENHANCE_YOUR_CALM).
    :param header_table_size: the largest HPACK dynamic table the peer's
        encoder may use (SETTINGS_HEADER_TABLE_SIZE, RFC 9113 §6.5.2), in
        bytes; default 4,096, the protocol's initial value. A peer that
        sizes its table above it gets GOAWAY(COMPRESSION_ERROR) (RFC 7541
        §6.3, RFC 9113 §4.3).
    :raises ValueError: if an option is out of the range HTTP/2 allows.
    """

    def __call__(
        self, *, tls_version: str | None = None, alpn_protocol: str | None = None
    ) -> HTTP2ClientProtocol:
        return HTTP2ClientProtocol(
            max_concurrent_streams=self._max_concurrent_streams,
            initial_window_size=self._initial_window_size,
            connection_window_size=self._connection_window_size,
            max_header_list_size=self._max_header_list_size,
            max_frame_size=self._max_frame_size,
            max_control_frames=self._max_control_frames,
            max_reset_streams=self._max_reset_streams,
            header_table_size=self._header_table_size,
        )


class HTTP2ServerFactory(_HTTP2Factory):
    """Makes :class:`HTTP2ServerProtocol` objects (h2), offered as ALPN ``h2``.

    All options are keyword-only and are sent to the client as SETTINGS
    (RFC 9113 §6.5.2), except the connection window (a WINDOW_UPDATE).

    :param max_concurrent_streams: streams a client may have open at once;
        default 100. A stream opened beyond it is refused with
        RST_STREAM(REFUSED_STREAM), which the client may retry (RFC 9113
        §5.1.2), and spends one unit of ``max_reset_streams``.
    :param initial_window_size: the flow-control window of each stream for
        data we receive (request bodies); default 256 KiB.
    :param connection_window_size: the flow-control window of the whole
        connection for data we receive, and so the most unread data a client
        can make us hold; default 1 MiB.
    :param max_header_list_size: the largest header block we accept,
        decompressed (RFC 9113 §6.5.2, the HPACK bomb bound); default 64 KiB.
    :param max_frame_size: the largest frame payload we accept; default
        64 KiB (fewer frames than the protocol's 16 KiB, for throughput).
    :param max_control_frames: the flood budget (RFC 9113 §10.5): how many
        frames that carry no request and no data (PING, SETTINGS, PRIORITY,
        RST_STREAM, empty DATA, unknown types) the peer may send beyond one
        per request or DATA frame it sent; default 1,000. Past it the peer
        gets GOAWAY(ENHANCE_YOUR_CALM).
    :param max_reset_streams: how many streams may be reset before they
        completed (by the peer, as in the rapid reset attack CVE-2023-44487,
        or by us for the peer's errors) beyond one per stream that completed;
        default 200. Past it the peer gets GOAWAY(ENHANCE_YOUR_CALM).
    :param header_table_size: the largest HPACK dynamic table the peer's
        encoder may use (SETTINGS_HEADER_TABLE_SIZE, RFC 9113 §6.5.2), in
        bytes; default 4,096, the protocol's initial value. A peer that
        sizes its table above it gets GOAWAY(COMPRESSION_ERROR) (RFC 7541
        §6.3, RFC 9113 §4.3).
    :raises ValueError: if an option is out of the range HTTP/2 allows.
    """

    def __call__(
        self, *, tls_version: str | None = None, alpn_protocol: str | None = None
    ) -> HTTP2ServerProtocol:
        return HTTP2ServerProtocol(
            max_concurrent_streams=self._max_concurrent_streams,
            initial_window_size=self._initial_window_size,
            connection_window_size=self._connection_window_size,
            max_header_list_size=self._max_header_list_size,
            max_frame_size=self._max_frame_size,
            max_control_frames=self._max_control_frames,
            max_reset_streams=self._max_reset_streams,
            header_table_size=self._header_table_size,
        )
