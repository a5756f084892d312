"""HTTPConnection over real loopback sockets: every version, asyncio and Trio."""

from __future__ import annotations

import hashlib
import random

import anyio
import anyio.lowlevel
import pytest

from hface.common import ClientTLSConfig, HeadersType, ServerTLSConfig
from hface.connections import HTTPConnection
from hface.errors import TransportError
from hface.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    HeadersReceived,
    StreamResetReceived,
)
from tests.helpers.pairs import HTTP_VERSIONS

from .conftest import connect, serving

pytestmark = pytest.mark.anyio

CHUNK = 64 * 1024


def _request(path: str = "/", method: bytes = b"GET") -> HeadersType:
    return [
        (b":method", method),
        (b":scheme", b"https"),
        (b":authority", b"localhost"),
        (b":path", path.encode()),
    ]


def _header(headers: HeadersType, name: bytes) -> bytes | None:
    return next((value for key, value in headers if key == name), None)


class StreamReader:
    """Demultiplexes one connection's events by stream, for tests."""

    def __init__(self, connection: HTTPConnection) -> None:
        self.connection = connection
        self.events: list[Event] = []

    async def read_response(self, stream_id: int) -> tuple[HeadersType, bytes]:
        headers: HeadersType = []
        body = bytearray()
        while True:
            event = await self.connection.receive_event()
            self.events.append(event)
            if isinstance(event, ConnectionTerminated):
                raise AssertionError(f"connection ended: {event}")
            if getattr(event, "stream_id", None) != stream_id:
                continue
            if isinstance(event, HeadersReceived):
                if not headers:
                    headers = event.headers
                if event.end_stream:
                    return headers, bytes(body)
            elif isinstance(event, DataReceived):
                body += event.data
                if event.end_stream:
                    return headers, bytes(body)
            elif isinstance(event, StreamResetReceived):
                raise AssertionError(f"stream reset: {event}")


async def echo_handler(connection: HTTPConnection) -> None:
    """Answers each request with 200 and the sha256 and size of its body.

    ``GET /bytes/N`` answers N pseudo-random bytes instead; ``/slow/N`` answers
    N bytes and records how far it got in ``echo_handler.progress``.
    """
    bodies: dict[int, hashlib._Hash] = {}
    sizes: dict[int, int] = {}
    paths: dict[int, bytes] = {}
    async with anyio.create_task_group() as task_group:
        while True:
            event = await connection.receive_event()
            if isinstance(event, ConnectionTerminated):
                task_group.cancel_scope.cancel()
                return
            if isinstance(event, HeadersReceived) and _header(event.headers, b":method"):
                paths[event.stream_id] = _header(event.headers, b":path") or b"/"
                bodies[event.stream_id] = hashlib.sha256()
                sizes[event.stream_id] = 0
            elif isinstance(event, DataReceived) and event.stream_id in bodies:
                bodies[event.stream_id].update(event.data)
                sizes[event.stream_id] += len(event.data)
            else:
                continue
            if event.end_stream:
                path = paths.pop(event.stream_id)
                digest = bodies.pop(event.stream_id).hexdigest().encode()
                size = sizes.pop(event.stream_id)
                task_group.start_soon(_respond, connection, event.stream_id, path, digest, size)


progress: dict[str, int] = {}


async def _respond(
    connection: HTTPConnection, stream_id: int, path: bytes, digest: bytes, size: int
) -> None:
    try:
        if path.startswith((b"/bytes/", b"/slow/")):
            total = int(path.rsplit(b"/", 1)[1])
            await connection.send_headers(stream_id, [(b":status", b"200")])
            rng = random.Random(total)
            sent = 0
            while sent < total:
                chunk = rng.randbytes(min(CHUNK, total - sent))
                sent += len(chunk)
                await connection.send_data(stream_id, chunk, end_stream=sent >= total)
                progress[path.decode()] = sent
            return
        headers = [(b":status", b"200"), (b"x-sha256", digest), (b"x-size", str(size).encode())]
        await connection.send_headers(stream_id, headers)
        await connection.send_data(stream_id, b"stream %d" % stream_id, end_stream=True)
    except TransportError:
        pass


@pytest.mark.parametrize("http_version", HTTP_VERSIONS)
async def test_request_and_response(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    async with serving(http_version, server_tls_config, echo_handler) as address:
        async with await connect(http_version, address, client_tls_config) as connection:
            assert connection.http_version == http_version
            assert connection.remote_address == address
            stream_id = connection.get_available_stream_id()
            await connection.send_headers(stream_id, _request(), end_stream=True)
            headers, body = await StreamReader(connection).read_response(stream_id)
    assert _header(headers, b":status") == b"200"
    assert _header(headers, b"x-size") == b"0"
    assert body == b"stream %d" % stream_id


@pytest.mark.parametrize("http_version", ["2", "3"])
async def test_a_hundred_concurrent_streams(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    async with serving(http_version, server_tls_config, echo_handler) as address:
        async with await connect(http_version, address, client_tls_config) as connection:
            stream_ids = []
            for _ in range(100):
                stream_id = connection.get_available_stream_id()
                await connection.send_headers(stream_id, _request(), end_stream=True)
                stream_ids.append(stream_id)
            ended: dict[int, bytes] = {}
            bodies: dict[int, bytearray] = {}
            while len(ended) < 100:
                event = await connection.receive_event()
                assert not isinstance(event, ConnectionTerminated | StreamResetReceived), event
                if isinstance(event, DataReceived):
                    bodies.setdefault(event.stream_id, bytearray()).extend(event.data)
                    if event.end_stream:
                        ended[event.stream_id] = bytes(bodies[event.stream_id])
    assert sorted(ended) == sorted(stream_ids)
    for stream_id, body in ended.items():
        assert body == b"stream %d" % stream_id


FIFTY_MIB = 50 * 1024 * 1024


@pytest.mark.slow
@pytest.mark.timeout(600)  # bulk transfers; far less is needed on an idle machine
@pytest.mark.parametrize("http_version", HTTP_VERSIONS)
async def test_fifty_mib_upload(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    rng = random.Random(50)
    digest = hashlib.sha256()
    async with serving(http_version, server_tls_config, echo_handler) as address:
        async with await connect(http_version, address, client_tls_config) as connection:
            stream_id = connection.get_available_stream_id()
            await connection.send_headers(stream_id, _request("/upload", b"POST"))
            sent = 0
            while sent < FIFTY_MIB:
                chunk = rng.randbytes(CHUNK)
                digest.update(chunk)
                sent += len(chunk)
                await connection.send_data(stream_id, chunk, end_stream=sent >= FIFTY_MIB)
            headers, _ = await StreamReader(connection).read_response(stream_id)
    assert _header(headers, b"x-size") == str(FIFTY_MIB).encode()
    assert _header(headers, b"x-sha256") == digest.hexdigest().encode()


@pytest.mark.slow
@pytest.mark.timeout(600)  # bulk transfers; far less is needed on an idle machine
@pytest.mark.parametrize("http_version", HTTP_VERSIONS)
async def test_fifty_mib_download(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    expected = hashlib.sha256()
    rng = random.Random(FIFTY_MIB)
    for _ in range(FIFTY_MIB // CHUNK):
        expected.update(rng.randbytes(CHUNK))
    async with serving(http_version, server_tls_config, echo_handler) as address:
        async with await connect(http_version, address, client_tls_config) as connection:
            stream_id = connection.get_available_stream_id()
            await connection.send_headers(
                stream_id, _request(f"/bytes/{FIFTY_MIB}"), end_stream=True
            )
            _, body = await StreamReader(connection).read_response(stream_id)
    assert len(body) == FIFTY_MIB
    assert hashlib.sha256(body).hexdigest() == expected.hexdigest()


@pytest.mark.parametrize("http_version", HTTP_VERSIONS)
async def test_a_reader_that_stops_bounds_what_the_sender_buffers(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    total = 200 * 1024 * 1024
    path = f"/slow/{total}"
    progress.pop(path, None)
    async with serving(http_version, server_tls_config, echo_handler) as address:
        async with await connect(http_version, address, client_tls_config) as connection:
            stream_id = connection.get_available_stream_id()
            await connection.send_headers(stream_id, _request(path), end_stream=True)
            # Read the headers and a little data, then stop reading.
            received = 0
            while received < CHUNK:
                event = await connection.receive_event()
                if isinstance(event, DataReceived):
                    received += len(event.data)
            await anyio.sleep(1.0)
            first = progress.get(path, 0)
            await anyio.sleep(0.5)
            second = progress.get(path, 0)
    # The server's sender stopped: nothing more left it while nobody read...
    assert second == first
    # ...after at most the windows, the socket buffers and our queue bound.
    assert first < 24 * 1024 * 1024, first


@pytest.mark.parametrize("http_version", HTTP_VERSIONS)
async def test_server_closing_mid_stream_ends_the_client_cleanly(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    async def close_mid_response(connection: HTTPConnection) -> None:
        event = await connection.receive_event()
        assert isinstance(event, HeadersReceived)
        await connection.send_headers(event.stream_id, [(b":status", b"200")])
        await connection.send_data(event.stream_id, b"partial")
        # the handler returns: the listener closes the connection

    async with serving(http_version, server_tls_config, close_mid_response) as address:
        async with await connect(http_version, address, client_tls_config) as connection:
            stream_id = connection.get_available_stream_id()
            await connection.send_headers(stream_id, _request(), end_stream=True)
            events = []
            with anyio.fail_after(10):
                while not isinstance(
                    event := await connection.receive_event(), ConnectionTerminated
                ):
                    events.append(event)
            # Every later call gives the same end, never a hang.
            assert await connection.receive_event() == event
            with pytest.raises(TransportError):
                await connection.send_data(stream_id, b"too late")
    data = b"".join(e.data for e in events if isinstance(e, DataReceived))
    assert data == b"partial"
    ends = [e for e in events if isinstance(e, DataReceived | HeadersReceived) and e.end_stream]
    assert not ends  # the response never completed


@pytest.mark.parametrize("http_version", HTTP_VERSIONS)
async def test_client_closing_mid_stream_ends_the_handler(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    seen: list[Event] = []
    done = anyio.Event()

    async def record(connection: HTTPConnection) -> None:
        try:
            with anyio.fail_after(10):
                while not isinstance(
                    event := await connection.receive_event(), ConnectionTerminated
                ):
                    seen.append(event)
        finally:
            done.set()

    async with serving(http_version, server_tls_config, record) as address:
        async with await connect(http_version, address, client_tls_config) as connection:
            stream_id = connection.get_available_stream_id()
            await connection.send_headers(stream_id, _request("/", b"POST"))
            await connection.send_data(stream_id, b"partial")
            await anyio.sleep(0.2)
        with anyio.fail_after(10):
            await done.wait()
    assert any(isinstance(event, HeadersReceived) for event in seen)


async def test_no_task_outlives_the_connection(
    server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    before = {task.id for task in anyio.get_running_tasks()}
    for http_version in HTTP_VERSIONS:
        async with serving(http_version, server_tls_config, echo_handler) as address:
            async with await connect(http_version, address, client_tls_config) as connection:
                stream_id = connection.get_available_stream_id()
                await connection.send_headers(stream_id, _request(), end_stream=True)
                await StreamReader(connection).read_response(stream_id)
    await anyio.lowlevel.checkpoint()
    after = {task.id for task in anyio.get_running_tasks()}
    assert after <= before, [t for t in anyio.get_running_tasks() if t.id not in before]


async def test_cancelling_the_enclosing_task_group_leaves_no_task(
    server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    before = {task.id for task in anyio.get_running_tasks()}
    async with serving("2", server_tls_config, echo_handler) as address:
        with anyio.move_on_after(0.5):
            async with await connect("2", address, client_tls_config) as connection:
                stream_id = connection.get_available_stream_id()
                await connection.send_headers(
                    stream_id, _request("/slow/100000000"), end_stream=True
                )
                while True:
                    await connection.receive_event()
    await anyio.lowlevel.checkpoint()
    after = {task.id for task in anyio.get_running_tasks()}
    assert after <= before


@pytest.mark.parametrize("http_version", HTTP_VERSIONS)
async def test_goaway_lets_the_stream_in_flight_finish(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    async def goaway_then_answer(connection: HTTPConnection) -> None:
        event = await connection.receive_event()
        assert isinstance(event, HeadersReceived)
        await connection.send_goaway()
        assert not connection.is_available()
        await anyio.sleep(0.1)
        await connection.send_headers(event.stream_id, [(b":status", b"200")])
        await connection.send_data(event.stream_id, b"finished", end_stream=True)
        await anyio.sleep(0.1)

    async with serving(http_version, server_tls_config, goaway_then_answer) as address:
        async with await connect(http_version, address, client_tls_config) as connection:
            stream_id = connection.get_available_stream_id()
            await connection.send_headers(stream_id, _request(), end_stream=True)
            _, body = await StreamReader(connection).read_response(stream_id)
            assert body == b"finished"
            assert not connection.is_available()


@pytest.mark.parametrize("http_version", HTTP_VERSIONS)
async def test_tls_attributes(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    from anyio.streams.tls import TLSAttribute

    alpn = {"1.1": "http/1.1", "2": "h2", "3": "h3"}[http_version]
    async with serving(http_version, server_tls_config, echo_handler) as address:
        async with await connect(http_version, address, client_tls_config) as connection:
            assert connection.extra(TLSAttribute.alpn_protocol) == alpn
            assert connection.extra(TLSAttribute.tls_version) == "TLSv1.3"
            assert connection.local_address[0] == "127.0.0.1"


@pytest.mark.parametrize("http_version", HTTP_VERSIONS)
async def test_aclose_with_an_error_code(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    """``aclose(error_code)``: GOAWAY with the code, or an HTTP/1.1 status (408)."""

    async def close_with_code(connection: HTTPConnection) -> None:
        event = await connection.receive_event()
        assert isinstance(event, HeadersReceived)
        code = 408 if http_version == "1.1" else connection.error_codes.internal_error
        await connection.aclose(code)
        await connection.aclose(code)  # closing again does nothing

    async with serving(http_version, server_tls_config, close_with_code) as address:
        async with await connect(http_version, address, client_tls_config) as connection:
            stream_id = connection.get_available_stream_id()
            await connection.send_headers(stream_id, _request("/", b"POST"))  # never finished
            events: list[Event] = []
            with anyio.fail_after(10):
                # HTTP/1.1 ends with the response: the client's request is
                # still unfinished, so the connection is not over for it.
                while not isinstance(
                    event := await connection.receive_event(), ConnectionTerminated
                ):
                    events.append(event)
                    if isinstance(event, DataReceived) and event.end_stream:
                        break
    if http_version == "1.1":
        statuses = [
            _header(e.headers, b":status") for e in events if isinstance(e, HeadersReceived)
        ]
        assert statuses == [b"408"]
        assert isinstance(event, DataReceived)
        assert event.data == b"Request Timeout\n"
    else:
        assert isinstance(event, ConnectionTerminated)
        assert event.error_code == connection.error_codes.internal_error
        assert not any(isinstance(e, HeadersReceived) for e in events)


# An HTTP/1.1 client's submit_close() only stops new requests: not a case here.
@pytest.mark.parametrize("http_version", ["2", "3"])
async def test_a_send_after_the_protocol_ended_itself_is_a_transport_error(
    http_version: str, server_tls_config: ServerTLSConfig, client_tls_config: ClientTLSConfig
) -> None:
    # The protocol can end the connection on its own (a flood, an internal
    # error) before the connection has processed that event: a send then
    # meets a closed protocol, which is the connection's end, not a misuse.
    async with serving(http_version, server_tls_config, echo_handler) as address:
        async with await connect(http_version, address, client_tls_config) as connection:
            stream_id = connection.get_available_stream_id()
            await connection.send_headers(stream_id, _request(method=b"POST"))
            protocol = connection.protocol
            protocol.submit_close(protocol.error_codes.internal_error)
            with pytest.raises(TransportError):
                await connection.send_data(stream_id, b"more")
            with pytest.raises(TransportError):
                await connection.send_headers(stream_id, [(b"x-trailer", b"1")], end_stream=True)
