"""Connected UDP sockets of SystemNetworking, on real loopback sockets."""

from __future__ import annotations

import anyio
import pytest
from anyio.abc import SocketAttribute, UDPSocket

from hface.networking import SystemNetworking
from tests.helpers.network import LOOPBACK_HOSTS

pytestmark = pytest.mark.anyio


async def echo(socket: UDPSocket) -> None:
    async for data, address in socket:
        await socket.send((data.upper(), address))


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
async def test_echo(host: str) -> None:
    with anyio.fail_after(5):
        async with (
            await anyio.create_udp_socket(local_host=host) as server,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(echo, server)
            server_address = (host, server.extra(SocketAttribute.local_port))
            async with await SystemNetworking().connect_udp(server_address) as stream:
                assert stream.extra(SocketAttribute.remote_address) == server_address
                await stream.send((b"ping", server_address))
                assert await stream.receive() == (b"PING", server_address)
            tg.cancel_scope.cancel()
