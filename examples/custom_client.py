"""A minimal HTTP client on the connection layer: fetch ``/`` and print the body.

Fetches https://localhost:5443/ (what ``custom_server.py`` serves), trusting
``certs/cacert.pem``, over HTTP/2 or HTTP/1.1 as ALPN chooses, then over HTTP/3.
"""

from __future__ import annotations

import asyncio

from hface.common import ClientTLSConfig
from hface.connections import HTTPConnection, HTTPOverQUICOpener, HTTPOverTCPOpener
from hface.events import ConnectionTerminated, DataReceived, HeadersReceived


async def make_request(connection: HTTPConnection) -> bytes:
    """Send ``GET /`` and return the response body."""
    stream_id = connection.get_available_stream_id()
    headers = [
        (b":method", b"GET"),
        (b":scheme", b"https"),
        (b":authority", b"localhost"),
        (b":path", b"/"),
    ]
    await connection.send_headers(stream_id, headers, end_stream=True)
    body = bytearray()
    while True:
        event = await connection.receive_event()
        if isinstance(event, HeadersReceived) and event.stream_id == stream_id:
            if event.end_stream:
                break
        elif isinstance(event, DataReceived) and event.stream_id == stream_id:
            body += event.data
            if event.end_stream:
                break
        elif isinstance(event, ConnectionTerminated):
            raise ConnectionError(f"connection closed: {event.message}")
    return bytes(body)


async def main(port: int = 5443) -> None:
    """Fetch the page over TCP and over QUIC."""
    tls_config = ClientTLSConfig(cafile="certs/cacert.pem")
    for opener in (
        HTTPOverTCPOpener(tls_config=tls_config),
        HTTPOverQUICOpener(tls_config=tls_config),
    ):
        async with await opener(("localhost", port), tls=True) as connection:
            body = await make_request(connection)
        print(f"HTTP/{connection.http_version}: {body.decode()}", end="")


if __name__ == "__main__":
    asyncio.run(main())
