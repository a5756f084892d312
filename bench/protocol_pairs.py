"""Cost of one request/response exchange in each sans-IO protocol, in memory.

No sockets and no event loop: this measures hface's protocol layer (and
h11, h2, aioquic under it) alone. Bounded: N exchanges per version.

    hatch run python bench/protocol_pairs.py [N]
"""

from __future__ import annotations

import sys
import time

sys.path.insert(0, ".")

from tests.helpers.pairs import HTTP_VERSIONS, make_pair

REQUEST = [
    (b":method", b"GET"),
    (b":scheme", b"https"),
    (b":authority", b"localhost"),
    (b":path", b"/"),
]
RESPONSE = [(b":status", b"200"), (b"content-length", b"13")]


def exchanges(http_version: str, count: int) -> float:
    """Run ``count`` sequential exchanges on one connection; return seconds per exchange."""
    pair = make_pair(http_version)
    client, server = pair.client, pair.server
    started = time.perf_counter()
    for _ in range(count):
        stream_id = client.get_available_stream_id()
        client.submit_headers(stream_id, REQUEST, end_stream=True)
        pair.transfer()
        request = pair.server_events()[0]
        server.submit_headers(request.stream_id, RESPONSE)  # type: ignore[attr-defined]
        server.submit_data(request.stream_id, b"Hello, world!", end_stream=True)  # type: ignore[attr-defined]
        pair.transfer()
        pair.client_events()
    return (time.perf_counter() - started) / count


def main() -> None:
    """Print microseconds per exchange for each version."""
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    print(
        f"{'version':>8} {'µs/exchange':>12} {'exchanges/s':>12}   ({count} sequential, in memory)"
    )
    for http_version in HTTP_VERSIONS:
        seconds = exchanges(http_version, count)
        print(f"{'HTTP/' + http_version:>8} {seconds * 1e6:12.1f} {1 / seconds:12.0f}")


if __name__ == "__main__":
    main()
