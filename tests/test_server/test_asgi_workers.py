"""ASGIServer runs requests in reused worker tasks: each still as if in a task of its own.

A connection's worker task, its request done, waits for the next request
instead of ending (starting a task costs more than a small request). What
a task of its own gave the application must still hold: its context
variables are its own, and a request cancelled (client gone) or failed
leaves the worker fit for the next.
"""

from __future__ import annotations

import contextvars
from typing import Any

import anyio
import pytest

from hface.common import ClientTLSConfig, ServerTLSConfig
from hface.connections import HTTPConnection
from hface.events import ConnectionTerminated, DataReceived, HeadersReceived, StreamReset
from hface.server import ASGIServer
from hface.server._asgi_connection import _InContext
from tests.test_server.conftest import client, read_response, running, send_request

pytestmark = pytest.mark.anyio

Scope = dict[str, Any]

#: Set by the application: a request must never see another's value.
request_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_var", default="unset")
#: Set around the server: every request sees the value it had there.
outer_var: contextvars.ContextVar[str] = contextvars.ContextVar("outer_var", default="unset")


async def reply(send: Any, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def read_bodies(connection: HTTPConnection, stream_ids: list[int]) -> list[bytes]:
    """The bodies of responses coming at once on ``stream_ids``."""
    bodies = dict.fromkeys(stream_ids, b"")
    pending = set(stream_ids)
    with anyio.fail_after(10):
        while pending:
            event = await connection.receive_event()
            assert not isinstance(event, (ConnectionTerminated, StreamReset)), event
            if isinstance(event, DataReceived):
                bodies[event.stream_id] += event.data
            if isinstance(event, (HeadersReceived, DataReceived)) and event.end_stream:
                pending.discard(event.stream_id)
    return [bodies[stream_id] for stream_id in stream_ids]


def make_server(app: Any, tls_config: ServerTLSConfig) -> ASGIServer:
    server = ASGIServer(app)
    server.tls_config = tls_config
    server.access_log = False
    return server


async def test_context_variables_stay_with_their_request(
    http_version: str, client_tls_config: ClientTLSConfig, server_tls_config: ServerTLSConfig
) -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        seen = f"{request_var.get()} {outer_var.get()}"
        request_var.set(scope["path"])
        await anyio.sleep(0.01)  # the others run meanwhile (HTTP/2, HTTP/3)
        await reply(send, 200, f"{seen} {request_var.get()}".encode())

    token = outer_var.set("outer")
    try:
        async with (
            running(make_server(app, server_tls_config)) as address,
            client(http_version, address, client_tls_config) as connection,
        ):
            bodies = []
            for number in range(3):  # one after another on one connection
                stream_id = await send_request(connection, path=f"/{number}".encode())
                bodies.append((await read_response(connection, stream_id)).body)
            if connection.multiplexed:  # and at once
                stream_ids = [
                    await send_request(connection, path=f"/{number}".encode())
                    for number in range(3, 8)
                ]
                bodies.extend(await read_bodies(connection, stream_ids))
    finally:
        outer_var.reset(token)
    expected = [f"unset outer /{number}".encode() for number in range(len(bodies))]
    assert bodies == expected


async def test_a_failed_or_cancelled_request_leaves_the_connection_serving(
    http_version: str, client_tls_config: ClientTLSConfig, server_tls_config: ServerTLSConfig
) -> None:
    cancelled = anyio.Event()

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/fail":
            raise RuntimeError("this request fails")
        if scope["path"] == "/hang":
            try:
                await anyio.sleep_forever()
            finally:
                cancelled.set()
        await reply(send, 200, b"ok")

    server = make_server(app, server_tls_config)
    server.disconnect_grace = 0.05
    async with (
        running(server) as address,
        client(http_version, address, client_tls_config) as connection,
    ):
        stream_id = await send_request(connection, path=b"/fail")
        assert (await read_response(connection, stream_id)).status == 500
        stream_id = await send_request(connection, path=b"/")
        assert (await read_response(connection, stream_id)).body == b"ok"
        if connection.multiplexed:
            stream_id = await send_request(connection, path=b"/hang")
            await anyio.sleep(0.05)
            await connection.send_stream_reset(stream_id, connection.error_codes.cancel)
            with anyio.fail_after(5):
                await cancelled.wait()
            for _ in range(3):
                stream_id = await send_request(connection, path=b"/")
                assert (await read_response(connection, stream_id)).body == b"ok"


async def test_a_late_cancellation_spares_the_next_request_of_the_worker(
    http_version: str, client_tls_config: ClientTLSConfig, server_tls_config: ServerTLSConfig
) -> None:
    # The grace after a reset runs out while the worker, done with the reset
    # request, serves another: only the reset request may be cancelled.
    if http_version == "1.1":
        pytest.skip("one request at a time: a reset ends the HTTP/1.1 connection")
    left = anyio.Event()

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/leave":
            while (await receive())["type"] != "http.disconnect":
                pass
            left.set()
            return
        await anyio.sleep(0.3)  # past the grace of /leave
        await reply(send, 200, b"ok")

    server = make_server(app, server_tls_config)
    server.disconnect_grace = 0.05
    async with (
        running(server) as address,
        client(http_version, address, client_tls_config) as connection,
    ):
        stream_id = await send_request(connection, path=b"/leave")
        await anyio.sleep(0.05)
        await connection.send_stream_reset(stream_id, connection.error_codes.cancel)
        with anyio.fail_after(5):
            await left.wait()
        await anyio.sleep(0.01)  # the worker is idle again
        with anyio.fail_after(5):
            for _ in range(2):
                stream_id = await send_request(connection, path=b"/")
                assert (await read_response(connection, stream_id)).body == b"ok"


async def test_in_context_runs_every_step_in_its_context() -> None:
    context = contextvars.copy_context()

    async def steps() -> None:
        request_var.set("inside")
        await anyio.lowlevel.checkpoint()
        assert request_var.get() == "inside"
        await anyio.lowlevel.checkpoint()

    await _InContext(steps(), context)
    assert request_var.get() == "unset"  # not the awaiting task's
    assert context[request_var] == "inside"


async def test_in_context_passes_cancellation_through() -> None:
    finished = []

    async def sleeper() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            finished.append(request_var.get())

    async def body() -> None:
        request_var.set("sleeper")
        await sleeper()

    with anyio.move_on_after(0.05) as scope:
        await _InContext(body(), contextvars.copy_context())
    assert scope.cancelled_caught
    assert finished == ["sleeper"]


async def test_in_context_passes_errors_and_results_through() -> None:
    async def fails() -> None:
        await anyio.lowlevel.checkpoint()
        raise ValueError("from inside")

    with pytest.raises(ValueError, match="from inside"):
        await _InContext(fails(), contextvars.copy_context())
