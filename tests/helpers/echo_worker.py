"""A tiny worker target for the supervisor's tests: TCP and UDP echo that says who answered.

``tests.helpers.echo_worker:serve`` serves every socket the supervisor
hands it (``hface.server._worker_process``), on asyncio:

- TCP: one request per connection: a line, answered with ``INDEX
  GENERATION PID LINE``. ``sleep SECONDS`` is work in flight: first a
  ``started`` line, then the answer that many seconds later.
- UDP: each datagram is answered with ``INDEX GENERATION PID SLOT `` and
  the datagram itself.

On SIGTERM or SIGINT it stops accepting TCP connections, lets the ones it
has finish, keeps answering UDP for ``drain`` more seconds (the QUIC
connections a real worker would still serve), and returns. The
supervisor's argument is a JSON object of options: ``drain`` (seconds),
``fail_at_start`` (raise before saying ready), ``crash_after`` (seconds
after ready, then exit with status 3: a crashing worker) for the
generations from ``crash_from_generation`` (0 by default) on.
"""

from __future__ import annotations

import json
import os
import signal
import socket
from typing import Any

import anyio
from anyio.abc import SocketListener, SocketStream, TaskGroup, UDPSocket

from hface.server._worker_process import WorkerContext


def serve(context: WorkerContext) -> None:
    """Serve the context's sockets until SIGTERM or SIGINT."""
    options: dict[str, Any] = json.loads(context.argument or "{}")
    if options.get("fail_at_start"):
        raise RuntimeError("this worker fails at start, as asked")
    anyio.run(_serve, context, options)


async def _serve(context: WorkerContext, options: dict[str, Any]) -> None:
    identity = f"{context.index} {context.generation} {os.getpid()}"
    tcp_scopes: list[anyio.CancelScope] = []
    udp_scopes: list[anyio.CancelScope] = []
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with anyio.create_task_group() as in_flight, anyio.create_task_group() as serving:
            for item in context.sockets:
                scope = anyio.CancelScope()
                if item.socket.type == socket.SOCK_STREAM:
                    listener = await SocketListener.from_socket(item.socket)
                    serving.start_soon(_accept, scope, listener, identity, in_flight)
                    tcp_scopes.append(scope)
                else:
                    udp_socket = await UDPSocket.from_socket(item.socket)
                    serving.start_soon(_echo, scope, udp_socket, f"{identity} {item.slot}")
                    udp_scopes.append(scope)
            context.ready()
            crashing = context.generation >= int(options.get("crash_from_generation", 0))
            if "crash_after" in options and crashing:
                await anyio.sleep(float(options["crash_after"]))
                os._exit(3)
            async for _ in signals:
                break
            for scope in tcp_scopes:
                scope.cancel()
            await anyio.sleep(float(options.get("drain", 0)))
            for scope in udp_scopes:
                scope.cancel()


async def _accept(
    scope: anyio.CancelScope, listener: SocketListener, identity: str, in_flight: TaskGroup
) -> None:
    async def handle(stream: SocketStream) -> None:
        async with stream:
            line = b""
            while not line.endswith(b"\n"):
                chunk = await stream.receive()
                line += chunk
            words = line.split()
            if len(words) == 2 and words[0] == b"sleep":
                await stream.send(b"started\n")
                await anyio.sleep(float(words[1]))
            await stream.send(f"{identity} ".encode() + line)

    # Connections live in in_flight, outside this scope: cancelling the accept
    # loop (on SIGTERM) leaves them to finish.
    with scope:
        await listener.serve(handle, in_flight)


async def _echo(scope: anyio.CancelScope, udp_socket: UDPSocket, identity: str) -> None:
    with scope:
        async for datagram, address in udp_socket:
            await udp_socket.sendto(f"{identity} ".encode() + datagram, *address)
