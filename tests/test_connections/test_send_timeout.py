"""``send_headers``/``send_data`` with ``max_wait``: a deadline only where a send waits.

What the peer takes at once goes out without a cancel scope or a trip
through the event loop (on asyncio, whose streams can write without an
await); a send that has to wait for the peer (a full socket buffer, a shut
flow-control window) gets the deadline and raises ``TimeoutError``. Real
TLS sockets on loopback (QUIC for HTTP/3), asyncio and Trio; each test is
bounded by ``anyio.fail_after``.
"""

from __future__ import annotations

import hashlib
from typing import Any

import anyio
import pytest

from hface.common import ClientTLSConfig, HeadersType, ServerTLSConfig
from hface.connections import HTTPConnection
from hface.errors import TransportError
from hface.events import ConnectionTerminated, DataReceived, HeadersReceived

from .conftest import REQUEST, Handler, connect, serving
from .conftest import next_event as _next
from .conftest import request_headers as _request_headers

pytestmark = pytest.mark.anyio

#: The write timeout of the tests that make a send wait.
SHORT = 0.5


async def _until_terminated(connection: HTTPConnection) -> None:
    while not isinstance(await connection.receive_event(), ConnectionTerminated):
        pass


async def _get(
    http_version: str,
    server_tls_config: ServerTLSConfig,
    client_tls_config: ClientTLSConfig,
    handler: Handler,
) -> tuple[HeadersType, bytes]:
    """One request to a server whose connections ``handler`` serves: the response."""
    async with serving(http_version, server_tls_config, handler) as address:
        async with await connect(http_version, address, client_tls_config) as client:
            stream_id = client.get_available_stream_id()
            await client.send_headers(stream_id, REQUEST, end_stream=True)
            return await _read_body(client)


async def _read_body(connection: HTTPConnection) -> tuple[HeadersType, bytes]:
    response = await _next(connection)
    assert isinstance(response, HeadersReceived)
    body = bytearray()
    while not response.end_stream:
        event = await _next(connection)
        assert isinstance(event, DataReceived)
        body += event.data
        if event.end_stream:
            break
    return response.headers, bytes(body)


@pytest.mark.parametrize("http_version", ["1.1", "2", "3"])
async def test_a_send_the_peer_does_not_take_times_out(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    outcome: list[tuple[str, float]] = []
    done = anyio.Event()

    async def handler(connection: HTTPConnection) -> None:
        stream_id = await _request_headers(connection)
        await connection.send_headers(stream_id, [(b":status", b"200")], max_wait=SHORT)
        chunk = b"x" * 65536
        try:
            for _ in range(10_000):  # far more than socket buffers and windows hold
                start = anyio.current_time()
                await connection.send_data(stream_id, chunk, max_wait=SHORT)
            outcome.append(("sent everything", 0.0))
        except TimeoutError:
            outcome.append(("timeout", anyio.current_time() - start))
        except TransportError as error:
            outcome.append((f"transport error: {error}", 0.0))
        finally:
            done.set()
        await _until_terminated(connection)

    with anyio.fail_after(30):
        async with serving(http_version, server_tls_config, handler) as address:
            client = await connect(http_version, address, client_tls_config)
            async with client:
                stream_id = client.get_available_stream_id()
                await client.send_headers(stream_id, REQUEST, end_stream=True)
                # Never read: HTTP/2 and HTTP/3 windows stay shut, HTTP/1.1's socket fills.
                await done.wait()
    assert [what for what, _ in outcome] == ["timeout"]
    assert SHORT * 0.9 <= outcome[0][1] < SHORT + 5


@pytest.mark.parametrize("http_version", ["1.1", "2"])
async def test_a_small_response_with_a_timeout_goes_out_without_a_deadline_or_task_switch(
    http_version: str,
    anyio_backend: str,
    server_tls_config: ServerTLSConfig,
    client_tls_config: ClientTLSConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    switched: list[bool] = []
    deadlines: list[float | None] = []  # the timeouts of the deadlines armed
    fail_after = anyio.fail_after

    def counting_fail_after(delay: float | None, shield: bool = False) -> Any:
        deadlines.append(delay)
        return fail_after(delay, shield)

    async def handler(connection: HTTPConnection) -> None:
        stream_id = await _request_headers(connection)
        ran = False

        async def mark() -> None:
            nonlocal ran
            ran = True

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(mark)  # runs at the first trip through the event loop
            headers = [(b":status", b"200"), (b"content-length", b"5")]
            with monkeypatch.context() as patch:
                patch.setattr(anyio, "fail_after", counting_fail_after)
                await connection.send_headers(stream_id, headers, flush=False, max_wait=5)
                await connection.send_data(stream_id, b"hello", end_stream=True, max_wait=5)
            switched.append(ran)
        await _until_terminated(connection)

    with anyio.fail_after(20):
        headers, body = await _get(http_version, server_tls_config, client_tls_config, handler)
    assert headers[0] == (b":status", b"200")
    assert body == b"hello"
    if anyio_backend == "asyncio":
        # The event loop's streams take the bytes at once: no deadline, no
        # cancel scope, no await that yields.
        assert (switched, deadlines) == ([False], [])
    else:
        # anyio's streams await each write: under the deadline.
        assert (len(switched), deadlines) == (1, [5])


@pytest.mark.parametrize("http_version", ["1.1", "2"])
async def test_bytes_a_send_could_not_write_at_once_go_out_first_and_whole(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    # Over the stream's high-water mark, so that the write without an await
    # is refused and what was taken from the protocol waits for the awaited one.
    big = bytes(range(256)) * 4096  # 1 MiB
    tail = b"<the end>"

    async def handler(connection: HTTPConnection) -> None:
        stream_id = await _request_headers(connection)
        await connection.send_headers(stream_id, [(b":status", b"200")], flush=False, max_wait=5)
        await connection.send_data(stream_id, big, max_wait=5)
        await connection.send_data(stream_id, tail, end_stream=True, max_wait=5)
        await _until_terminated(connection)

    with anyio.fail_after(20):
        headers, body = await _get(http_version, server_tls_config, client_tls_config, handler)
    assert headers[0] == (b":status", b"200")
    assert len(body) == len(big) + len(tail)
    assert hashlib.sha256(body).digest() == hashlib.sha256(big + tail).digest()


@pytest.mark.parametrize("http_version", ["1.1", "2"])
async def test_a_send_without_checkpoint_the_peer_takes_at_once_is_not_cancelled(
    http_version: str,
    anyio_backend: str,
    server_tls_config: ServerTLSConfig,
    client_tls_config: ClientTLSConfig,
) -> None:
    """``checkpoint=False``: a cancelled task's send that needs no wait goes out whole."""
    outcome: list[str] = []

    async def handler(connection: HTTPConnection) -> None:
        stream_id = await _request_headers(connection)
        await connection.send_headers(stream_id, [(b":status", b"200")], max_wait=5)
        with anyio.CancelScope() as scope:
            scope.cancel()
            await connection.send_data(stream_id, b"hello", max_wait=5, checkpoint=False)
            outcome.append("sent without a checkpoint")
            await connection.send_data(stream_id, b"?", max_wait=5)
            outcome.append("sent with a checkpoint")
        await connection.send_data(stream_id, b" world", end_stream=True, max_wait=5)
        await _until_terminated(connection)

    with anyio.fail_after(20):
        _, body = await _get(http_version, server_tls_config, client_tls_config, handler)
    if anyio_backend == "asyncio":
        # (The cancelled send's data was handed to the protocol before its checkpoint.)
        assert outcome == ["sent without a checkpoint"]
        assert body.startswith(b"hello")
        assert body.endswith(b" world")
    else:
        # anyio's streams await each write: the send waits, and is cancelled there.
        assert outcome == []
        assert body.endswith(b" world")
