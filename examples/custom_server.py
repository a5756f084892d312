"""A minimal HTTP server on the connection layer: every request gets "It works!".

Serves HTTP/1.1 and HTTP/2 (chosen by ALPN) over TLS and HTTP/3 over QUIC,
all on port 5443. Needs ``certs/cert.pem`` and ``certs/key.pem``.
"""

from __future__ import annotations

import asyncio

from hface.common import ServerTLSConfig
from hface.connections import (
    HTTPConnection,
    HTTPMultiListener,
    HTTPOverQUICListener,
    HTTPOverTCPListener,
)
from hface.events import ConnectionTerminated, HeadersReceived
from hface.protocols import ALPNHTTPFactory
from hface.protocols.http1 import HTTP1ServerFactory
from hface.protocols.http2 import HTTP2ServerFactory
from hface.protocols.http3 import HTTP3ServerFactory


async def handler(connection: HTTPConnection) -> None:
    """Answer every request of one connection, whatever its HTTP version."""
    print(f"HTTP/{connection.http_version} connection from {connection.remote_address}")
    while True:
        event = await connection.receive_event()
        if isinstance(event, HeadersReceived) and _is_request(event):
            response_headers = [(b":status", b"200"), (b"content-type", b"text/plain")]
            await connection.send_headers(event.stream_id, response_headers)
            await connection.send_data(event.stream_id, b"It works!\n", end_stream=True)
        elif isinstance(event, ConnectionTerminated):
            break


def _is_request(event: HeadersReceived) -> bool:
    return any(name == b":method" for name, _ in event.headers)


async def main(port: int = 5443) -> None:
    """Serve until interrupted."""
    tls_config = ServerTLSConfig(certfile="certs/cert.pem", keyfile="certs/key.pem")
    tcp_factory = ALPNHTTPFactory([HTTP2ServerFactory(), HTTP1ServerFactory()])
    tcp = await HTTPOverTCPListener.create(
        tcp_factory, local_address=("localhost", port), tls_config=tls_config
    )
    quic = await HTTPOverQUICListener.create(
        HTTP3ServerFactory(), local_address=("localhost", port), tls_config=tls_config
    )
    async with HTTPMultiListener([tcp, quic]) as listener:
        print(f"Serving on https://localhost:{port}/ (HTTP/1.1, HTTP/2, HTTP/3)", flush=True)
        await listener.serve(handler)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        print("Stopped.")
