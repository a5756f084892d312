"""Reading a tunnel in large pieces: every TLS record and DATA event already there at once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from anyio.abc import SocketAttribute
from anyio.streams.tls import TLSStream

from hface.client import ClientProtocol, ProxyClient
from hface.common import AddressType, ClientTLSConfig, ServerTLSConfig
from hface.networking import make_server_ssl_context

from .test_proxy import PROXY_PROTOCOLS, _proxy_id, running_proxy

pytestmark = pytest.mark.anyio

#: The most a TLS record carries (RFC 8446 §5.1); anyio returns one per receive.
RECORD = 16384


@asynccontextmanager
async def tls_target(
    tls_config: ServerTLSConfig, records: list[bytes], sent: anyio.Event
) -> AsyncIterator[AddressType]:
    """A TLS server on 127.0.0.1 that sends ``records`` (of 16 KiB each) in one write.

    OpenSSL puts each in a TLS record of its own; they reach the proxy at once.
    """
    context = make_server_ssl_context(tls_config, [])
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)

    async def serve(stream: anyio.abc.SocketStream) -> None:
        async with await TLSStream.wrap(
            stream, server_side=True, ssl_context=context, standard_compatible=False
        ) as tls:
            await tls.send(b"".join(records))
            sent.set()
            with pytest.raises(anyio.EndOfStream):
                await tls.receive()  # until the client closes

    async with listener, anyio.create_task_group() as task_group:
        task_group.start_soon(listener.serve, serve)
        yield "127.0.0.1", listener.extra(SocketAttribute.local_port)
        task_group.cancel_scope.cancel()


@pytest.mark.parametrize("proxy_protocol", PROXY_PROTOCOLS, ids=_proxy_id)
async def test_one_receive_returns_every_record_already_received(
    proxy_protocol: ClientProtocol,
    server_tls_config: ServerTLSConfig,
    client_tls_config: ClientTLSConfig,
    anyio_backend: str,
) -> None:
    if proxy_protocol is ClientProtocol.HTTP1 and anyio_backend == "trio":
        # On Trio the proxy connection's TLS (anyio's) also returns one record
        # per read, and an HTTP/1.1 exchange has no queue of its own to gather
        # the events from: the tunnel gets the records one by one.
        pytest.skip("Trio's TLS reads one record at a time under HTTP/1.1")
    records = [bytes([n]) * RECORD for n in range(3)]
    sent = anyio.Event()
    async with (
        tls_target(server_tls_config, records, sent) as target,
        running_proxy(server_tls_config) as proxy_url,
    ):
        proxy_client = ProxyClient(proxy_url, tls_config=client_tls_config)
        proxy_client.protocol = proxy_protocol
        async with proxy_client.session() as session:
            stream = await session.connect_tcp_tls(target, server_name="localhost")
            with anyio.fail_after(10):
                await sent.wait()
            # Time for the records to cross the proxy (and, on HTTP/2 and 3,
            # to queue as several DATA events of 16 KiB at most).
            await anyio.sleep(0.3)
            with anyio.fail_after(10):
                first = await stream.receive(len(records) * RECORD)
                rest = b""
                while len(first) + len(rest) < len(records) * RECORD:
                    rest += await stream.receive()
            await stream.aclose()
    assert first + rest == b"".join(records)
    # Not one record (anyio's TLSStream), nor one DATA frame's worth: all of it.
    assert len(first) == len(records) * RECORD
