"""Drive an HTTP/1.1 client protocol by hand: sans-IO, HTTP/2 style headers.

The protocol object does no I/O: we give it the bytes a server would send
and take the bytes it wants to send, and it speaks the same headers and
events as HTTP/2 and HTTP/3.
"""

from __future__ import annotations

from hface.events import DataReceived, HeadersReceived
from hface.protocols.http1 import HTTP1ClientFactory


def main() -> None:
    """Send a GET request and read the response, asserting every step."""
    protocol = HTTP1ClientFactory()()
    stream_id = protocol.get_available_stream_id()
    protocol.submit_headers(
        stream_id,
        [
            (b":method", b"GET"),
            (b":scheme", b"https"),
            (b":authority", b"localhost"),
            (b":path", b"/"),
        ],
        end_stream=True,
    )
    assert protocol.bytes_to_send() == b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"

    protocol.bytes_received(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
    assert protocol.next_event() == HeadersReceived(
        stream_id=stream_id,
        headers=[(b":status", b"200"), (b"content-length", b"10")],
    )
    protocol.bytes_received(b"It works!\n")
    assert protocol.next_event() == DataReceived(
        stream_id=stream_id, data=b"It works!\n", end_stream=True
    )
    print("HTTP/1.1 exchange OK: GET / -> 200, 10 bytes")


if __name__ == "__main__":
    main()
