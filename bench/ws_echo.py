"""WebSocket echo over HTTP/1.1: hface, hypercorn and uvicorn side by side.

Usage (from the repository root)::

    hatch run bench:python bench/ws_echo.py [--seconds 5] [--loop uvloop]

Each server runs one process on 127.0.0.1 with access logs off, serving
:func:`app` (a raw ASGI echo, so no framework is measured), on the same
event loop (uvloop by default). The client is the ``websockets`` library
on one connection, keeping :data:`WINDOW` messages in flight: for each
message size it sends and reads echoes for ``--seconds`` after a warm-up,
and reports messages per second, MB/s each way, and the server's CPU time
per message (user + system of its process, read from ``/proc``).

Over HTTP/2 (RFC 8441) and HTTP/3 (RFC 9220), which uvicorn does not
serve and the ``websockets`` library does not speak, the client is
hface's own (``ClientSession.websocket``) and the servers hface and
hypercorn, on TLS (:func:`measure_tls`); the server's CPU per message is
the figure that does not depend on the client. ``bench/run.py --only
websocket`` puts both in the table (bench/_websocket.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parents[1]
#: Messages in flight on the connection.
WINDOW = 16
#: The message sizes measured.
SIZES = (1024, 1024 * 1024)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Echo every WebSocket message; answer HTTP with 404."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    await receive()
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("bytes") is not None:
            await send({"type": "websocket.send", "bytes": message["bytes"]})
        else:
            await send({"type": "websocket.send", "text": message["text"]})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_argv(name: str, port: int, loop: str, tls: tuple[str, str] | None = None) -> list[str]:
    """The command serving :func:`app` on 127.0.0.1:``port``; ``tls`` (cert, key): over TLS.

    Over TLS hface and hypercorn serve HTTP/1.1, HTTP/2 and HTTP/3 (UDP on the same port).
    """
    target = "bench.ws_echo:app"
    if name == "hface":
        scheme = "http" if tls is None else "https"
        argv = [
            sys.executable, "-m", "hface", "server", target, f"{scheme}://127.0.0.1:{port}",
            "--no-access-log", "--backend", loop, "--ws-max-size", "none",
            "--no-ws-per-message-deflate",
        ]  # fmt: skip
        return argv if tls is None else [*argv, "--cert", tls[0], "--key", tls[1]]
    if name == "hypercorn":
        argv = [
            sys.executable, "-m", "hypercorn", target, "--bind", f"127.0.0.1:{port}",
            "--workers", "0", "--worker-class", loop,
        ]  # fmt: skip
        if tls is None:
            return argv
        return [
            *argv, "--quic-bind", f"127.0.0.1:{port}", "--certfile", tls[0], "--keyfile", tls[1],
        ]  # fmt: skip
    return [
        sys.executable, "-m", "uvicorn", target, "--port", str(port), "--loop", loop,
        "--no-access-log", "--ws", "websockets", "--ws-max-size", str(2**31),
        "--ws-per-message-deflate", "false",
    ]  # fmt: skip


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(
    port: int, size: int, seconds: float, pid: int
) -> tuple[float, float, float, tuple[float, float]]:
    """Return (messages per second, MB/s each way, server CPU µs per message, window).

    The window is the measured run's ``time.monotonic()`` at its start and end.
    """
    from websockets.asyncio.client import connect

    payload = os.urandom(size)
    async with connect(
        f"ws://127.0.0.1:{port}/", max_size=None, compression=None, ping_interval=None
    ) as ws:

        async def run(duration: float) -> tuple[int, float, float, float]:
            count = 0
            start = time.monotonic()
            cpu = cpu_seconds(pid)
            for _ in range(WINDOW):
                await ws.send(payload)
            while time.monotonic() - start < duration:
                await ws.recv()
                await ws.send(payload)
                count += 1
            elapsed = time.monotonic() - start
            used = cpu_seconds(pid) - cpu
            for _ in range(WINDOW):
                await ws.recv()
            return count, start, elapsed, used

        await run(min(1.0, seconds))  # warm-up
        count, start, elapsed, used = await run(seconds)
    rate = count / elapsed
    return rate, rate * size / 1e6, used / count * 1e6, (start, start + elapsed)


async def measure_tls(
    port: int, size: int, seconds: float, pid: int, *, version: str, cafile: str
) -> tuple[float, float, float, tuple[float, float]]:
    """:func:`measure` over HTTP/2 or HTTP/3 (``version`` "2" or "3"), with hface's client."""
    from hface.client import Client, ClientProtocol, ClientTLSConfig

    payload = os.urandom(size)
    client = Client(tls_config=ClientTLSConfig(cafile=cafile))
    client.protocol = ClientProtocol.HTTP2 if version == "2" else ClientProtocol.HTTP3
    async with (
        client.session() as session,
        session.websocket(f"wss://localhost:{port}/", max_message_size=2 * size) as ws,
    ):
        if ws.http_version != version:
            raise RuntimeError(f"the WebSocket went over HTTP/{ws.http_version}")

        async def run(duration: float) -> tuple[int, float, float, float]:
            # Sent and read by two tasks: hface's WebSocket reads only when
            # asked, and a writer that stops reading while its window is full
            # stalls the echo on HTTP/2 and HTTP/3 flow control.
            count = 0
            credit = anyio.Semaphore(WINDOW)
            start = time.monotonic()
            cpu = cpu_seconds(pid)
            stop = start + duration

            async def send() -> None:
                while time.monotonic() < stop:
                    await credit.acquire()
                    await ws.send_bytes(payload)

            async with anyio.create_task_group() as task_group:
                task_group.start_soon(send)
                while time.monotonic() < stop:
                    await ws.receive()
                    credit.release()
                    count += 1
                elapsed = time.monotonic() - start
                used = cpu_seconds(pid) - cpu
                while credit.value < WINDOW:  # the echoes still in flight
                    await ws.receive()
                    credit.release()
            return count, start, elapsed, used

        await run(min(1.0, seconds))  # warm-up
        count, start, elapsed, used = await run(seconds)
    rate = count / elapsed
    return rate, rate * size / 1e6, used / count * 1e6, (start, start + elapsed)


async def wait_for_port(port: int, limit: float = 15) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        return
    raise RuntimeError(f"no server on port {port}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--servers", default="hface,hypercorn,uvicorn")
    args = parser.parse_args()
    print(f"WebSocket echo over HTTP/1.1, one connection, {WINDOW} in flight ({args.loop})")
    print(f"{'server':<10} {'size':>8} {'msg/s':>10} {'MB/s':>8} {'server CPU µs/msg':>18}")
    for name in args.servers.split(","):
        port = free_port()
        process = subprocess.Popen(
            server_argv(name, port, args.loop),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            asyncio.run(wait_for_port(port))
            for size in SIZES:
                rate, mbps, cpu, _ = asyncio.run(measure(port, size, args.seconds, process.pid))
                label = "1 KiB" if size == 1024 else "1 MiB"
                print(f"{name:<10} {label:>8} {rate:>10.0f} {mbps:>8.1f} {cpu:>18.1f}")
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


if __name__ == "__main__":
    main()
