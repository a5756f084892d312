"""``hface client ws://...`` (or ``wss://``): a WebSocket between stdin and stdout.

As websocat does: each line read from stdin goes out as a text message
(without its line end); each text message received is written to stdout
as a line, each binary message as its bytes. Once stdin has ended and no
message came for :data:`LINGER` seconds (the answers to the last lines),
the WebSocket closes (code 1000) and the command ends with the server's
Close; the server's Close ends it too. ``-v`` writes the hface events to stderr as
for any request, so the opening handshake shows as the extended CONNECT
(``:protocol websocket``) and its ``200`` on every version (on HTTP/1.1
the protocol sends them as the ``GET`` with ``Upgrade`` and its ``101``).

The connection options are those of requests (``--http1.1``, ``--http2``,
``--http3``, ``--cacert``, ``-k``, ``-x``, ``-H``...). Exit codes are
curl's: 22 for a refused handshake (curl's "Refused WebSockets upgrade"),
56 when the connection ends without a Close, and the same codes as
requests for failures to connect.

stdin is read without a thread: a pipe or a terminal is waited on
(``anyio.wait_readable``), so the command ends when the server closes even
if no line comes; a regular file is read at once.
"""

from __future__ import annotations

import argparse
import math
import os
import stat
import sys
from collections.abc import AsyncIterator
from typing import Final

import anyio

from hface.client import Client, ClientProtocol, WebSocket
from hface.client import errors as client_errors
from hface.common import HeaderType
from hface.errors import HTTPError

from ._client_setup import _client, _headers, usage
from ._errors import CommandError, exit_code, message_of
from ._output import write_stdout
from ._trace import Tracer

#: Exit code of a refused handshake (curl's, for "Refused WebSockets upgrade").
REFUSED: Final = 22
#: Exit code of a WebSocket whose connection ended without a Close.
LOST: Final = 56
#: Seconds to wait for the server's Close once stdin ended.
CLOSE_WAIT: Final = 5.0
#: Seconds without a message, after the end of stdin, before the Close: a
#: server drops its answers to the last lines once it has the Close.
LINGER: Final = 0.5


def is_websocket_url(text: str) -> bool:
    """True if ``text`` is a ``ws://`` or ``wss://`` URL."""
    return text.strip().lower().startswith(("ws://", "wss://"))


def run_websocket(args: argparse.Namespace, tracer: Tracer | None) -> int:
    """Run ``hface client`` on one WebSocket URL; return the exit code.

    :raises CommandError: for usage errors and failures.
    """
    texts = [*args.urls, *args.more_urls]
    if len(texts) != 1:
        raise usage("a ws:// or wss:// URL goes alone")
    text = texts[0].strip()
    secure = text.lower().startswith("wss://")
    protocol = ClientProtocol(args.protocol)
    if protocol is ClientProtocol.HTTP3 and not secure:
        raise usage(f"--http3 needs a wss URL, not {text}")
    headers, _authority = _headers(args, json=False)
    client = _client(args, protocol)
    if tracer is not None:
        tracer.install(client)
    code: int = anyio.run(_run, client, text, headers, backend=args.backend)
    return code


async def _run(client: Client, url: str, headers: list[HeaderType]) -> int:
    try:
        async with client.session() as session:
            async with session.websocket(url, headers=headers) as websocket:
                return await _pipe(websocket)
    except ValueError as error:
        raise usage(str(error)) from None
    except client_errors.WebSocketRejected as error:
        raise CommandError(message_of(error), REFUSED) from None
    except (HTTPError, TimeoutError, OSError, anyio.BrokenResourceError) as error:
        raise CommandError(message_of(error), exit_code(error, client.proxy_origin)) from None


async def _pipe(websocket: WebSocket) -> int:
    """Send stdin's lines and write the messages until either side closes."""
    # Pushed back by each message once stdin has ended (see LINGER).
    linger = anyio.CancelScope(deadline=math.inf)
    async with anyio.create_task_group() as task_group:

        async def send_lines() -> None:
            async for line in _stdin_lines():
                try:
                    await websocket.send_text(line.decode("utf-8", "replace"))
                except client_errors.WebSocketClosed:
                    return
            linger.deadline = anyio.current_time() + LINGER
            with linger:
                await anyio.sleep_forever()
            await websocket.close()
            await anyio.sleep(CLOSE_WAIT)  # the server's Close ends the reading first
            task_group.cancel_scope.cancel()

        task_group.start_soon(send_lines)
        try:
            async for message in websocket:
                if linger.deadline != math.inf:
                    linger.deadline = anyio.current_time() + LINGER
                if isinstance(message, str):
                    write_stdout(message.encode("utf-8") + b"\n")
                else:
                    write_stdout(message)
        except client_errors.WebSocketClosed as closed:
            if closed.code == 1006:
                message = f"the WebSocket to {websocket.url} broke: {closed.reason}"
                raise CommandError(message, LOST) from None
        finally:
            task_group.cancel_scope.cancel()
    return 0


async def _stdin_lines() -> AsyncIterator[bytes]:
    """The lines of stdin (without their line ends) as they come."""
    stdin = sys.stdin
    if stdin is None or stdin.closed:
        return
    descriptor = stdin.fileno()
    mode = os.fstat(descriptor).st_mode
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stdin.isatty()):
        # A file (or /dev/null) never blocks, and epoll refuses it.
        for line in stdin.buffer.read().splitlines():
            yield line
        return
    pending = b""
    while True:
        await anyio.wait_readable(descriptor)
        chunk = os.read(descriptor, 65536)
        if not chunk:
            break
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            yield line.removesuffix(b"\r")
    if pending:
        yield pending.removesuffix(b"\r")
