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
