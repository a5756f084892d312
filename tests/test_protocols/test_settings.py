"""Typed, frozen protocol settings: ProtocolLimits, HTTP2Settings, HTTP3Settings, with_limits."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pytest
from hyperframe.frame import SettingsFrame

from hface.common import ClientTLSConfig, ServerTLSConfig
from hface.events import HeadersReceived
from hface.protocols import (
    ALPNHTTPFactory,
    HTTPOverTCPFactory,
    HTTPOverTCPProtocol,
    PriorKnowledgeHTTPFactory,
    ProtocolLimits,
)
from hface.protocols.http1 import HTTP1ClientFactory, HTTP1ServerFactory
from hface.protocols.http1._httptools import HTTPToolsServerFactory
from hface.protocols.http2 import HTTP2ClientFactory, HTTP2ServerFactory, HTTP2Settings
from hface.protocols.http3 import HTTP3ClientFactory, HTTP3ServerFactory, HTTP3Settings
from tests.helpers.pairs import TCPProtocolPair
from tests.helpers.quic_pair import SERVER_ADDRESS, QUICProtocolPair, certificates

GET = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"a"), (b":path", b"/")]


def _settings_of(protocol: HTTPOverTCPProtocol) -> dict[int, int]:
    """The SETTINGS an HTTP/2 protocol sends first (after a client's preface)."""
    data = protocol.bytes_to_send()
    if data.startswith(b"PRI"):
        data = data[24:]
    frame, length = SettingsFrame.parse_frame_header(memoryview(data[:9]))
    frame.parse_body(memoryview(data[9 : 9 + length]))
    assert isinstance(frame, SettingsFrame)
    return dict(frame.settings)


# --- the dataclasses ---------------------------------------------------------------


def test_protocol_limits_defaults() -> None:
    limits = ProtocolLimits()
    assert limits == ProtocolLimits(
        max_header_size=65536,
        max_concurrent_streams=100,
        header_table_size=4096,
        max_reset_streams=200,
        max_control_frames=1000,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        limits.max_header_size = 1  # type: ignore[misc]  # frozen: the point of the test


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_header_size", 0),
        ("max_header_size", 2**32),
        ("max_header_size", True),
        ("max_concurrent_streams", 0),
        ("max_concurrent_streams", 2**31),
        ("header_table_size", -1),
        ("header_table_size", 2**30),
        ("max_reset_streams", 0),
        ("max_control_frames", 0),
        ("max_control_frames", 1.5),
    ],
)
def test_protocol_limits_are_checked_when_made(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"^{field} must be between"):
        ProtocolLimits(**{field: value})  # type: ignore[arg-type]  # wrong types on purpose


def test_a_table_of_zero_bytes_is_allowed() -> None:
    assert ProtocolLimits(header_table_size=0).header_table_size == 0


@pytest.mark.parametrize(
    ("settings", "name"),
    [
        ({"initial_window_size": -1}, "initial_window_size"),
        ({"connection_window_size": 65534}, "connection_window_size"),
        ({"max_frame_size": 2**24}, "max_frame_size"),
    ],
)
def test_http2_settings_are_checked(settings: dict[str, int], name: str) -> None:
    with pytest.raises(ValueError, match=f"^{name} must be"):
        HTTP2Settings(**settings)


@pytest.mark.parametrize(
    ("settings", "name"),
    [
        ({"idle_timeout": 0}, "idle_timeout"),
        ({"stream_receive_window": 100}, "stream_receive_window"),
        ({"stream_receive_window": 4096, "connection_receive_window": 2048}, "connection"),
        ({"max_datagram_size": 1199}, "max_datagram_size"),
        ({"max_datagram_size": 1500, "loopback_max_datagram_size": 1400}, "loopback"),
        ({"qpack_blocked_streams": 2**16}, "qpack_blocked_streams"),
        ({"connection_id_length": 3}, "connection_id_length"),
    ],
)
def test_http3_settings_are_checked(settings: dict[str, float], name: str) -> None:
    with pytest.raises(ValueError, match=f"^{name}"):
        HTTP3Settings(**settings)  # type: ignore[arg-type]  # ints and floats mixed


# --- factories take them ---------------------------------------------------------------


def test_http2_factory_sends_its_limits_and_settings() -> None:
    limits = ProtocolLimits(max_header_size=5000, max_concurrent_streams=7, header_table_size=0)
    settings = HTTP2Settings(initial_window_size=1234, max_frame_size=2**15)
    factory = HTTP2ServerFactory(limits=limits, settings=settings)
    assert factory.limits is limits
    assert factory.settings is settings
    sent = _settings_of(factory())
    assert sent[SettingsFrame.MAX_HEADER_LIST_SIZE] == 5000
    assert sent[SettingsFrame.MAX_CONCURRENT_STREAMS] == 7
    assert sent[SettingsFrame.HEADER_TABLE_SIZE] == 0
    assert sent[SettingsFrame.INITIAL_WINDOW_SIZE] == 1234
    assert sent[SettingsFrame.MAX_FRAME_SIZE] == 2**15


def test_keywords_replace_fields_and_errors_name_them() -> None:
    """Each field can also be given as a keyword, named as its version names it."""
    factory = HTTP2ClientFactory(
        limits=ProtocolLimits(max_concurrent_streams=5), max_concurrent_streams=9
    )
    assert factory.limits == ProtocolLimits(max_concurrent_streams=9)
    assert HTTP2ClientFactory(max_header_list_size=300).limits.max_header_size == 300
    quic = HTTP3ServerFactory(qpack_max_table_capacity=0, idle_timeout=5.0)
    assert quic.limits.header_table_size == 0
    assert quic.settings.idle_timeout == 5.0
    with pytest.raises(ValueError, match=r"^max_field_section_size must be between"):
        HTTP3ClientFactory(max_field_section_size=0)
    with pytest.raises(ValueError, match=r"^max_header_list_size must be between"):
        HTTP2ServerFactory(max_header_list_size=0)


# --- with_limits ---------------------------------------------------------------------------

_LIMITS = ProtocolLimits(max_header_size=1000, max_concurrent_streams=3, max_control_frames=50)


@pytest.mark.parametrize(
    "factory",
    [
        HTTP2ClientFactory(initial_window_size=1000),
        HTTP2ServerFactory(max_frame_size=2**15),
        HTTP3ClientFactory(idle_timeout=7.0),
        HTTP3ServerFactory(connection_id_length=12),
    ],
    ids=type,
)
def test_with_limits_keeps_the_class_and_the_settings(
    factory: HTTP2ClientFactory | HTTP2ServerFactory | HTTP3ClientFactory | HTTP3ServerFactory,
) -> None:
    limited = factory.with_limits(_LIMITS)
    assert type(limited) is type(factory)
    assert limited is not factory
    assert limited.limits is _LIMITS
    assert limited.settings == factory.settings
    assert factory.limits == ProtocolLimits()  # the original is unchanged


def test_with_limits_http2_protocols_send_the_new_limits() -> None:
    server = HTTP2ServerFactory().with_limits(_LIMITS)()
    sent = _settings_of(server)
    assert sent[SettingsFrame.MAX_HEADER_LIST_SIZE] == 1000
    assert sent[SettingsFrame.MAX_CONCURRENT_STREAMS] == 3


@pytest.mark.parametrize(
    "factory", [HTTP1ServerFactory(), HTTPToolsServerFactory()], ids=["h11", "httptools"]
)
def test_with_limits_http1_servers_take_the_header_size(factory: HTTPOverTCPFactory) -> None:
    limited = factory.with_limits(ProtocolLimits(max_header_size=200))
    assert type(limited) is type(factory)
    client = HTTP1ClientFactory().with_limits(ProtocolLimits(max_header_size=200))
    pair = TCPProtocolPair(client(), limited())
    stream_id = pair.client.get_available_stream_id()
    pair.client.submit_headers(stream_id, [*GET, (b"x-big", b"b" * 300)], end_stream=True)
    pair.transfer()
    responses = [e for e in pair.client_events() if isinstance(e, HeadersReceived)]
    assert responses[0].headers[0] == (b":status", b"431")


def test_with_limits_http3_protocols_keep_the_new_limits() -> None:
    """The server answers a request over the new header size with 431 (RFC 9114 §4.2.2)."""
    cafile, certfile, keyfile = certificates()
    client = HTTP3ClientFactory()(
        remote_address=SERVER_ADDRESS,
        server_name="localhost",
        tls_config=ClientTLSConfig(cafile=cafile),
    )
    server = HTTP3ServerFactory().with_limits(_LIMITS)(
        tls_config=ServerTLSConfig(certfile=certfile, keyfile=keyfile)
    )
    pair = QUICProtocolPair(client, server)
    pair.transfer()
    pair.advance(0.1)
    stream_id = client.get_available_stream_id()
    client.submit_headers(stream_id, [*GET, (b"x-big", b"b" * 1000)], end_stream=True)
    pair.transfer()
    responses = [e for e in pair.client_events() if isinstance(e, HeadersReceived)]
    assert responses[0].headers[0] == (b":status", b"431")


def _alpn(factory: HTTPOverTCPFactory) -> Sequence[str]:
    return list(factory.alpn_protocols)


def test_with_limits_reaches_the_factories_of_alpn_and_prior_knowledge() -> None:
    for combined in (
        ALPNHTTPFactory([HTTP2ServerFactory(), HTTP1ServerFactory()]),
        PriorKnowledgeHTTPFactory(HTTP1ServerFactory(), HTTP2ServerFactory()),
    ):
        limited = combined.with_limits(_LIMITS)
        assert type(limited) is type(combined)
        assert _alpn(limited) == _alpn(combined)
        protocol = limited(tls_version="TLSv1.3", alpn_protocol="h2")
        assert _settings_of(protocol)[SettingsFrame.MAX_CONCURRENT_STREAMS] == 3


def test_a_factory_without_limits_keeps_its_options() -> None:
    """The default with_limits returns the factory itself (its options are its own)."""

    class Custom(HTTPOverTCPFactory):
        @property
        def alpn_protocols(self) -> Sequence[str]:
            return ["h2"]

        def __call__(
            self, *, tls_version: str | None = None, alpn_protocol: str | None = None
        ) -> HTTPOverTCPProtocol:
            return HTTP2ServerFactory()()

    custom = Custom()
    assert custom.with_limits(_LIMITS) is custom
