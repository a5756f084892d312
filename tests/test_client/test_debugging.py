"""Debugging aids: the TLS key log (TCP and QUIC) and qlog files, from the API."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from hface.client import Client, ClientProtocol
from hface.common import ClientTLSConfig, ServerTLSConfig

from .conftest import hface_server

pytestmark = pytest.mark.anyio

PROTOCOLS = {"1.1": ClientProtocol.HTTP1, "2": ClientProtocol.HTTP2, "3": ClientProtocol.HTTP3}

#: The NSS key log secrets of a TLS 1.3 handshake (TCP and QUIC alike).
TLS13_LABELS = {
    "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
    "SERVER_HANDSHAKE_TRAFFIC_SECRET",
    "CLIENT_TRAFFIC_SECRET_0",
    "SERVER_TRAFFIC_SECRET_0",
}

#: ``LABEL <client random: 32 bytes> <secret>``, in hex.
KEYLOG_LINE = re.compile(r"([A-Z_0-9]+) ([0-9a-f]{64}) ([0-9a-f]{64,})")


def read_keylog(path: Path) -> dict[str, set[str]]:
    """The labels of the key log at ``path``, by client random (one per connection)."""
    handshakes: dict[str, set[str]] = {}
    for line in path.read_text("ascii").splitlines():
        if line.startswith("#"):  # Python's header line
            continue
        match = KEYLOG_LINE.fullmatch(line)
        assert match is not None, line
        handshakes.setdefault(match[2], set()).add(match[1])
    return handshakes


def read_qlog(directory: Path) -> Any:
    """The only qlog file in ``directory``, parsed."""
    (path,) = directory.glob("*.qlog")
    return json.loads(path.read_text())


@pytest.mark.parametrize("version", list(PROTOCOLS))
async def test_keylog_file(
    version: str,
    server_tls_config: ServerTLSConfig,
    client_tls_config: ClientTLSConfig,
    tmp_path: Path,
) -> None:
    keylog = tmp_path / "keys.log"
    client_tls_config.keylog_filename = str(keylog)
    async with hface_server(version, server_tls_config) as server:
        client = Client(tls_config=client_tls_config, protocol=PROTOCOLS[version])
        for _ in range(2):  # two sessions, two connections: lines are appended
            async with client.session() as session:
                response = await session.get(server.url + "/")
                assert response.http_version == version
    handshakes = read_keylog(keylog)
    assert len(handshakes) == 2
    for labels in handshakes.values():
        assert labels >= TLS13_LABELS


async def test_qlog_dir(
    server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig, tmp_path: Path
) -> None:
    client = Client(tls_config=client_tls_config, protocol=ClientProtocol.HTTP3)
    client.qlog_dir = str(tmp_path)
    async with hface_server("3", server_tls_config) as server:
        async with client.session() as session:
            response = await session.get(server.url + "/")
            assert response.status == 200
    (trace,) = read_qlog(tmp_path)["traces"]
    assert trace["vantage_point"]["type"] == "client"
    names = {event["name"] for event in trace["events"]}
    assert {"transport:packet_sent", "transport:packet_received"} <= names


def _hkdf_expand_label(secret: bytes, label: bytes, length: int, hash_name: str) -> bytes:
    """RFC 8446 §7.1: HKDF-Expand-Label(secret, label, "", length)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

    full = b"tls13 " + label
    info = length.to_bytes(2, "big") + bytes([len(full)]) + full + b"\x00"
    algorithm = hashes.SHA384() if hash_name == "sha384" else hashes.SHA256()
    return HKDFExpand(algorithm, length, info).derive(secret)


def _records(stream: bytes) -> list[tuple[bytes, bytes]]:
    """The TLS records of a byte stream: (5-byte header, body)."""
    records = []
    while len(stream) >= 5:
        size = int.from_bytes(stream[3:5], "big")
        records.append((stream[:5], stream[5 : 5 + size]))
        stream = stream[5 + size :]
    return records


def _decrypt_first_record(secret: bytes, header: bytes, body: bytes) -> bytes:
    """The plaintext of the first record sent under ``secret`` (sequence number 0).

    The suite follows from the secret's length (48 bytes: SHA-384, so
    AES-256-GCM; 32: SHA-256 with AES-128-GCM or ChaCha20-Poly1305).
    """
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

    if len(secret) == 48:
        suites: list[tuple[str, int, Any]] = [("sha384", 32, AESGCM)]
    else:
        suites = [("sha256", 16, AESGCM), ("sha256", 32, ChaCha20Poly1305)]
    for hash_name, key_size, cipher in suites:
        key = _hkdf_expand_label(secret, b"key", key_size, hash_name)
        nonce = _hkdf_expand_label(secret, b"iv", 12, hash_name)  # XOR sequence number 0
        try:
            inner: bytes = cipher(key).decrypt(nonce, body, header)
        except InvalidTag:
            continue
        return inner.rstrip(b"\x00")[:-1]  # TLSInnerPlaintext: content, type, padding
    raise AssertionError("no suite decrypts the record with the logged secret")


@pytest.mark.parametrize("version", ["1.1", "2"])
async def test_keylog_decrypts_the_captured_request(
    version: str,
    server_tls_config: ServerTLSConfig,
    client_tls_config: ClientTLSConfig,
    tmp_path: Path,
) -> None:
    """The logged CLIENT_TRAFFIC_SECRET_0 decrypts the request as a relay captured it."""
    import anyio
    from anyio.abc import SocketStream

    keylog = tmp_path / "keys.log"
    client_tls_config.keylog_filename = str(keylog)
    captured = bytearray()

    async with hface_server(version, server_tls_config) as server:

        async def relay(client: SocketStream) -> None:
            async with client, await anyio.connect_tcp(*server.address) as upstream:

                async def pipe(source: SocketStream, sink: SocketStream, keep: bool) -> None:
                    async for data in source:
                        if keep:
                            captured.extend(data)
                        await sink.send(data)
                    await sink.send_eof()

                async with anyio.create_task_group() as task_group:
                    task_group.start_soon(pipe, upstream, client, False)
                    await pipe(client, upstream, True)

        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        async with listener, anyio.create_task_group() as relays:
            relays.start_soon(listener.serve, relay)
            port = listener.extra(anyio.abc.SocketAttribute.local_port)
            client = Client(tls_config=client_tls_config, protocol=PROTOCOLS[version])
            async with client.session() as session:
                response = await session.get(f"https://localhost:{port}/secret-path")
                assert response.status == 200
            relays.cancel_scope.cancel()

    (secrets,) = [
        {match[1]: bytes.fromhex(match[3]) for match in KEYLOG_LINE.finditer(keylog.read_text())}
    ]
    encrypted = [(head, body) for head, body in _records(bytes(captured)) if head[0] == 23]
    # The client's Finished goes under its handshake secret; its first
    # application data record, under CLIENT_TRAFFIC_SECRET_0.
    finished = _decrypt_first_record(secrets["CLIENT_HANDSHAKE_TRAFFIC_SECRET"], *encrypted[0])
    assert finished[:1] == b"\x14"  # HandshakeType finished (RFC 8446 §4)
    request = _decrypt_first_record(secrets["CLIENT_TRAFFIC_SECRET_0"], *encrypted[1])
    if version == "1.1":
        assert request.startswith(b"GET /secret-path HTTP/1.1\r\n")
    else:
        assert request.startswith(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")  # the preface, then frames
