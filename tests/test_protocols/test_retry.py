"""Stateless address validation (RFC 9000 §8.1.2): Retry tokens and packets, sans-IO.

A genuine aioquic client answers each packet hface builds, so the Retry
integrity tag (RFC 9001 §5.8), the token's round trip and the transport
parameters the server must echo afterwards (RFC 9000 §7.3) are checked by
an independent implementation, in memory.
"""

from __future__ import annotations

import os

import pytest
from aioquic.quic import events as quic_events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

from hface.common import ServerTLSConfig
from hface.protocols.http3 import (
    HTTP3ServerFactory,
    QUICPacketInfo,
    RetryTokens,
    build_invalid_token_close,
    build_retry_packet,
    sniff_quic_packet,
)
from tests.helpers.quic_pair import CLIENT_ADDRESS, SERVER_ADDRESS, certificates

NOW = 1_700_000_000.0
OTHER_ADDRESS = ("127.0.0.1", CLIENT_ADDRESS[1] + 1)
INVALID_TOKEN = 0x0B


def _client() -> tuple[QuicConnection, bytes, QUICPacketInfo]:
    """An aioquic client, its first Initial and what the server reads of it."""
    cafile, _, _ = certificates()
    configuration = QuicConfiguration(
        is_client=True, alpn_protocols=["h3"], server_name="localhost"
    )
    configuration.load_verify_locations(cafile)
    client = QuicConnection(configuration=configuration)
    client.connect(SERVER_ADDRESS, now=0.0)
    [(initial, _)] = client.datagrams_to_send(now=0.0)
    return client, initial, sniff_quic_packet(initial, connection_id_length=8)


def _retry(client: QuicConnection, info: QUICPacketInfo, tokens: RetryTokens) -> bytes:
    """Answer ``info`` with a Retry; return the client's next Initial."""
    source = os.urandom(8)
    token = tokens.issue(
        address=CLIENT_ADDRESS,
        original_destination_connection_id=info.destination_connection_id,
        retry_source_connection_id=source,
        now=NOW,
    )
    retry = build_retry_packet(info, source_connection_id=source, token=token)
    client.receive_datagram(retry, SERVER_ADDRESS, now=0.1)
    [(initial, _)] = client.datagrams_to_send(now=0.1)
    return initial


def test_a_client_follows_the_retry_with_the_token() -> None:
    tokens = RetryTokens(lifetime=10.0)
    client, _, first = _client()
    second = sniff_quic_packet(_retry(client, first, tokens), connection_id_length=8)
    assert second.is_initial
    assert second.token  # aioquic accepted the integrity tag, and sends the token back
    assert second.destination_connection_id != first.destination_connection_id
    original = tokens.validate(
        second.token,
        address=CLIENT_ADDRESS,
        destination_connection_id=second.destination_connection_id,
        now=NOW + 0.1,
    )
    assert original == first.destination_connection_id


def test_a_retry_with_a_bad_integrity_tag_is_ignored() -> None:
    """The harness itself: aioquic checks the tag, so the test above means something."""
    client, _, info = _client()
    token = RetryTokens(lifetime=10.0).issue(
        address=CLIENT_ADDRESS,
        original_destination_connection_id=info.destination_connection_id,
        retry_source_connection_id=b"\x01" * 8,
        now=NOW,
    )
    retry = bytearray(build_retry_packet(info, source_connection_id=b"\x01" * 8, token=token))
    retry[-1] ^= 1
    client.receive_datagram(bytes(retry), SERVER_ADDRESS, now=0.1)
    assert not any(
        sniff_quic_packet(data, connection_id_length=8).token
        for data, _ in client.datagrams_to_send(now=0.1)
    )


def test_the_server_echoes_both_connection_ids_after_a_retry() -> None:
    """RFC 9000 §7.3: the handshake completes only if the server says what the Retry was."""
    tokens = RetryTokens(lifetime=10.0)
    client, _, first = _client()
    second = _retry(client, first, tokens)
    info = sniff_quic_packet(second, connection_id_length=8)
    _, certfile, keyfile = certificates()
    server = HTTP3ServerFactory()(
        tls_config=ServerTLSConfig(certfile=certfile, keyfile=keyfile),
        original_destination_connection_id=first.destination_connection_id,
        retry_source_connection_id=info.destination_connection_id,
    )
    server.clock(0.1)
    server.datagram_received((second, CLIENT_ADDRESS))
    now = 0.1
    for _ in range(20):
        for data, _ in server.datagrams_to_send():
            client.receive_datagram(data, SERVER_ADDRESS, now=now)
        for data, _ in client.datagrams_to_send(now=now):
            server.datagram_received((data, CLIENT_ADDRESS))
        now += 0.01
        server.clock(now)
    events = []
    while (event := client.next_event()) is not None:
        events.append(event)
    assert any(isinstance(e, quic_events.HandshakeCompleted) for e in events), events
    assert server.handshake_completed
    assert info.destination_connection_id in server.connection_ids


def _token(tokens: RetryTokens, *, destination: bytes = b"\x07" * 8) -> bytes:
    return tokens.issue(
        address=CLIENT_ADDRESS,
        original_destination_connection_id=b"\x05" * 8,
        retry_source_connection_id=destination,
        now=NOW,
    )


@pytest.mark.parametrize(
    ("case", "address", "destination", "now"),
    [
        pytest.param(case, address, destination, now, id=case)
        for case, address, destination, now in [
            ("valid", CLIENT_ADDRESS, b"\x07" * 8, NOW + 1),
            ("another port", OTHER_ADDRESS, b"\x07" * 8, NOW + 1),
            ("another host", ("127.0.0.2", CLIENT_ADDRESS[1]), b"\x07" * 8, NOW + 1),
            ("another connection ID", CLIENT_ADDRESS, b"\x08" * 8, NOW + 1),
            ("expired", CLIENT_ADDRESS, b"\x07" * 8, NOW + 10.5),
            ("from the future", CLIENT_ADDRESS, b"\x07" * 8, NOW - 60),
        ]
    ],
)
def test_a_token_is_valid_only_where_and_when_it_was_meant(
    case: str, address: tuple[str, int], destination: bytes, now: float
) -> None:
    tokens = RetryTokens(lifetime=10.0)
    original = tokens.validate(
        _token(tokens), address=address, destination_connection_id=destination, now=now
    )
    assert original == (b"\x05" * 8 if case == "valid" else None)


@pytest.mark.parametrize("where", [0, 1, 9, 12, -1])
def test_a_tampered_token_is_refused(where: int) -> None:
    tokens = RetryTokens(lifetime=10.0)
    token = bytearray(_token(tokens))
    token[where] ^= 0x40
    assert (
        tokens.validate(
            bytes(token), address=CLIENT_ADDRESS, destination_connection_id=b"\x07" * 8, now=NOW
        )
        is None
    )


def test_a_token_of_another_key_is_refused_though_well_formed() -> None:
    forged = _token(RetryTokens(lifetime=10.0))
    assert RetryTokens.is_retry_token(forged)
    assert (
        RetryTokens(lifetime=10.0).validate(
            forged, address=CLIENT_ADDRESS, destination_connection_id=b"\x07" * 8, now=NOW
        )
        is None
    )


def test_servers_sharing_a_key_accept_each_others_tokens() -> None:
    key = os.urandom(32)
    token = _token(RetryTokens(lifetime=10.0, key=key))
    original = RetryTokens(lifetime=10.0, key=key).validate(
        token, address=CLIENT_ADDRESS, destination_connection_id=b"\x07" * 8, now=NOW
    )
    assert original == b"\x05" * 8


@pytest.mark.parametrize("token", [b"", b"\xa7", bytes(range(1, 41)), b"\xa7" + bytes(45)])
def test_tokens_of_other_formats_are_not_retry_tokens(token: bytes) -> None:
    """RFC 9000 §8.1.3: a token not from a Retry of ours leaves its bearer unvalidated."""
    if token[:1] == b"\xa7" and len(token) == 46:
        token = token[:9] + bytes([30]) + token[10:]  # a length the size contradicts
    assert not RetryTokens.is_retry_token(token)


@pytest.mark.parametrize(
    ("options", "message"),
    [({"lifetime": 0}, "lifetime"), ({"lifetime": 1, "key": b"short"}, "16 bytes")],
)
def test_bad_token_options_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetryTokens(**options)  # type: ignore[arg-type]  # each option's type, once wrong


def test_the_retry_must_give_a_new_connection_id() -> None:
    """RFC 9000 §17.2.5.1: not the destination ID of the Initial it answers."""
    _, _, info = _client()
    with pytest.raises(ValueError, match="differs"):
        build_retry_packet(info, source_connection_id=info.destination_connection_id, token=b"t")


def test_an_invalid_token_closes_the_attempt_with_invalid_token() -> None:
    """RFC 9000 §8.1.2: an Initial the client can decrypt, closing with INVALID_TOKEN."""
    client, _, first = _client()
    again = _retry(client, first, RetryTokens(lifetime=10.0))
    second = sniff_quic_packet(again, connection_id_length=8)
    close = build_invalid_token_close(second)
    assert len(close) < 1200  # not padded: smaller than the client's Initial
    client.receive_datagram(close, SERVER_ADDRESS, now=0.2)
    client.handle_timer(now=10.0)  # the draining period
    terminated = []
    while (event := client.next_event()) is not None:
        if isinstance(event, quic_events.ConnectionTerminated):
            terminated.append(event.error_code)
    assert terminated == [INVALID_TOKEN]
