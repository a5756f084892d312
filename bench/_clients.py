"""The client side of the benchmark: one client library, one measurement, JSON out.

Run by bench/run.py on core 1, one process per measurement::

    python bench/_clients.py get CLIENT VERSION URL --count N --concurrency K --cafile CA
    python bench/_clients.py download URL --cafile CA [--version V] [--proxy URL --proxy-version V]
    python bench/_clients.py hold URL --connections C --streams M [--idle] --cafile CA

``get``: N GETs, K at a time, with CLIENT (hface, httpx, aiohttp, niquests)
speaking VERSION (1.1, 2, 3); prints seconds and per-request latencies.
``download``: one GET with hface's client, directly or tunnelled through
an HTTP proxy; prints bytes, seconds and the window (``time.monotonic()``).
``hold``: opens C HTTP/2 connections with M requests each and prints
``ready`` (see :func:`_hold`).
Each run stops itself after ``--time-limit`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import anyio

from hface.client import URL, Client, ClientProtocol, ClientTLSConfig, Request
from hface.connections import HTTPConnection, HTTPOverTCPOpener
from hface.events import ConnectionTerminated, DataReceived, HeadersReceived
from hface.protocols.http2 import HTTP2ClientFactory

Fetch = Callable[[], Awaitable[int]]

_PROTOCOLS = {"1.1": ClientProtocol.HTTP1, "2": ClientProtocol.HTTP2, "3": ClientProtocol.HTTP3}


async def _run_gets(fetch: Fetch, count: int, concurrency: int) -> dict[str, Any]:
    """Call ``fetch`` ``count`` times, ``concurrency`` at a time; time each call."""
    latencies: list[float] = []
    remaining = count
    failures = 0

    async def worker() -> None:
        nonlocal remaining, failures
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            status = await fetch()
            latencies.append(time.perf_counter() - started)
            failures += status >= 400

    await fetch()  # the connection is opened outside the measurement
    started = time.perf_counter()
    async with anyio.create_task_group() as task_group:
        for _ in range(concurrency):
            task_group.start_soon(worker)
    return {
        "seconds": time.perf_counter() - started,
        "latencies": latencies,
        "errors": failures,
    }


async def _get_hface(args: argparse.Namespace) -> dict[str, Any]:
    client = Client(tls_config=ClientTLSConfig(cafile=args.cafile))
    client.protocol = _PROTOCOLS[args.version]
    client.max_idle_connections = args.concurrency
    async with client.session() as session:
        request = Request("GET", args.url)

        async def fetch() -> int:
            response = await session.dispatch(request)
            return response.status

        result = await _run_gets(fetch, args.count, args.concurrency)
        result["connections"] = session.connections_opened
        return result


async def _get_httpx(args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    limits = httpx.Limits(
        max_connections=args.concurrency, max_keepalive_connections=args.concurrency
    )
    context = ssl.create_default_context(cafile=args.cafile)
    http2 = args.version == "2"
    async with httpx.AsyncClient(
        verify=context, http1=not http2, http2=http2, limits=limits
    ) as client:

        async def fetch() -> int:
            response = await client.get(args.url)
            if response.http_version != ("HTTP/2" if http2 else "HTTP/1.1"):
                raise RuntimeError(f"httpx spoke {response.http_version}")
            return response.status_code

        return await _run_gets(fetch, args.count, args.concurrency)


async def _get_aiohttp(args: argparse.Namespace) -> dict[str, Any]:
    import aiohttp

    context = ssl.create_default_context(cafile=args.cafile)
    connector = aiohttp.TCPConnector(ssl=context, limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def fetch() -> int:
            async with session.get(args.url) as response:
                await response.read()
                return int(response.status)

        return await _run_gets(fetch, args.count, args.concurrency)


async def _get_niquests(args: argparse.Namespace) -> dict[str, Any]:
    import niquests

    wanted = {"1.1": "HTTP/1.1", "2": "HTTP/2", "3": "HTTP/3"}[args.version]
    async with niquests.AsyncSession(
        disable_http1=args.version != "1.1",
        disable_http2=args.version != "2",
        disable_http3=args.version != "3",
        pool_connections=1,
        pool_maxsize=args.concurrency,
        verify=args.cafile,
    ) as session:

        async def fetch() -> int:
            response = await session.get(args.url, verify=args.cafile)
            version = {10: "HTTP/1.0", 11: "HTTP/1.1", 20: "HTTP/2", 30: "HTTP/3"}.get(
                response.raw.version if response.raw is not None else 0, "?"
            )
            if version != wanted:
                raise RuntimeError(f"niquests spoke {version}, not {wanted}")
            return int(response.status_code or 0)

        return await _run_gets(fetch, args.count, args.concurrency)


_CLIENTS = {
    "hface": _get_hface,
    "httpx": _get_httpx,
    "aiohttp": _get_aiohttp,
    "niquests": _get_niquests,
}


async def _download(args: argparse.Namespace) -> dict[str, Any]:
    """One GET of ``args.url`` with hface's client, tunnelled through ``args.proxy`` if given."""
    protocol = _PROTOCOLS[args.version]  # to the origin (HTTP/3: through CONNECT-UDP)
    client = Client(tls_config=ClientTLSConfig(cafile=args.cafile), protocol=protocol)
    if args.proxy:
        client = Client(
            tls_config=ClientTLSConfig(cafile=args.cafile),
            protocol=protocol,
            proxy_origin=args.proxy,
            proxy_protocol=_PROTOCOLS[args.proxy_version],
        )
    received = 0
    async with client.session() as session:
        started = time.monotonic()
        async with session.stream(Request("GET", URL.parse(args.url))) as response:
            if response.status != 200:
                raise RuntimeError(f"status {response.status}")
            async for chunk in response.aiter_bytes():
                received += len(chunk)
        ended = time.monotonic()
    # The window (time.monotonic(), one clock machine-wide) for the proxy's CPU time.
    return {"seconds": ended - started, "bytes": received, "window": [started, ended]}


async def _hold(args: argparse.Namespace) -> dict[str, Any]:
    """Hold ``--connections`` HTTP/2 connections with ``--streams`` GETs each.

    With ``--idle``, the responses are read first, then ``ready`` is printed
    and the connections sit idle for ``--hold`` seconds. Otherwise ``ready``
    is printed once every request is sent, and the responses are awaited
    (``--path /sleep/MS`` keeps them all in flight meanwhile).
    """
    url = URL.parse(args.url)
    opener = HTTPOverTCPOpener(HTTP2ClientFactory(), tls_config=ClientTLSConfig(cafile=args.cafile))
    request = [
        (b":method", b"GET"),
        (b":scheme", b"https"),
        (b":authority", f"{url.host}:{url.port}".encode()),
        (b":path", url.path.encode()),
    ]
    connections: list[HTTPConnection] = []
    completed = failed = 0

    async def read_responses(connection: HTTPConnection, streams: int) -> None:
        nonlocal completed, failed
        done = 0
        while done < streams:
            event = await connection.receive_event()
            if isinstance(event, ConnectionTerminated):
                failed += streams - done
                return
            if isinstance(event, HeadersReceived) and not dict(event.headers).get(
                b":status", b""
            ).startswith(b"2"):
                failed += 1
            if isinstance(event, HeadersReceived | DataReceived) and event.end_stream:
                done += 1
                completed += 1

    # Connections enter task groups of their own: they must close in reverse order.
    async with AsyncExitStack() as stack:
        for _ in range(args.connections):
            connection = await opener((url.host, url.port), tls=True, server_name=url.host)
            await stack.enter_async_context(connection)
            connections.append(connection)
            for _ in range(args.streams):
                stream_id = connection.get_available_stream_id()
                await connection.send_headers(stream_id, request, end_stream=True)
        async with anyio.create_task_group() as task_group:
            if not args.idle:
                print("ready", flush=True)
            for connection in connections:
                task_group.start_soon(read_responses, connection, args.streams)
        if args.idle:
            print("ready", flush=True)
            await anyio.sleep(args.hold)
    return {"completed": completed - failed, "failed": failed}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="_clients", description="one client measurement")
    modes = parser.add_subparsers(dest="mode", required=True)
    get = modes.add_parser("get")
    get.add_argument("client", choices=sorted(_CLIENTS))
    get.add_argument("version", choices=["1.1", "2", "3"])
    get.add_argument("url")
    get.add_argument("--count", type=int, default=2000)
    get.add_argument("--concurrency", type=int, default=1)
    download = modes.add_parser("download")
    download.add_argument("url")
    download.add_argument("--proxy")
    download.add_argument("--proxy-version", choices=["1.1", "2", "3"], default="1.1")
    download.add_argument("--version", choices=["1.1", "3"], default="1.1")
    hold = modes.add_parser("hold")
    hold.add_argument("url")
    hold.add_argument("--connections", type=int, default=100)
    hold.add_argument("--streams", type=int, default=1)
    hold.add_argument("--idle", action="store_true")
    hold.add_argument("--hold", type=float, default=3.0)
    for sub in (get, download, hold):
        sub.add_argument("--cafile", required=True)
        sub.add_argument("--time-limit", type=float, default=120.0)
    return parser


def main() -> int:
    """Run one measurement; print its JSON; return the exit code."""
    args = _parser().parse_args()
    if args.mode == "get":
        if args.count < 1 or not 1 <= args.concurrency <= args.count:
            print("_clients: error: need 1 <= --concurrency <= --count", file=sys.stderr)
            return 2
        job: Callable[[argparse.Namespace], Awaitable[dict[str, Any]]] = _CLIENTS[args.client]
    else:
        job = _download if args.mode == "download" else _hold

    try:
        result = asyncio.run(asyncio.wait_for(job(args), args.time_limit))
    except Exception as error:  # one line for the table, whatever the library raised
        print(f"_clients: error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
