"""The ASGI lifespan protocol: startup before listening, shutdown after.

As uvicorn's ``lifespan="auto"``: an application that raises on the
``lifespan`` scope (or returns at once) is taken not to support it, and the
server goes on without it.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import anyio
import anyio.abc

from ._asgi_types import LIFESPAN_VERSIONS, ASGIApp, Message

logger = logging.getLogger("hface.server")


class Lifespan:
    """Runs an application's lifespan task beside the server.

    :param state: the dict given to the lifespan scope; request scopes get a
        shallow copy of it.
    """

    def __init__(self, app: ASGIApp, state: dict[str, Any]) -> None:
        self._app = app
        self._state = state
        sender, receiver = anyio.create_memory_object_stream[Message](math.inf)
        self._to_app = sender
        self._from_server = receiver
        self._answer: Message | None = None
        self._answered = anyio.Event()
        self._supported = True
        self._started = False
        # Shielded: the task must live through the cancellation of run() to shut down.
        self._scope = anyio.CancelScope(shield=True)

    async def startup(self, task_group: anyio.abc.TaskGroup) -> None:
        """Start the lifespan task and wait for its answer to startup.

        :raises RuntimeError: with the application's message on ``startup.failed``.
        """
        task_group.start_soon(self._run)
        await self._to_app.send({"type": "lifespan.startup"})
        answer = await self._wait_answer()
        if answer is None:
            return
        if answer["type"] == "lifespan.startup.failed":
            message = answer.get("message", "")
            raise RuntimeError(f"ASGI lifespan startup failed: {message}")
        self._started = True

    async def shutdown(self, seconds: float = 30.0) -> None:
        """Ask the application to shut down; wait up to ``seconds`` for its answer.

        A ``lifespan.shutdown.failed`` answer is logged.
        """
        if not self._supported or not self._started:
            return
        await self._to_app.send({"type": "lifespan.shutdown"})
        with anyio.move_on_after(seconds):
            answer = await self._wait_answer()
            if answer is not None and answer["type"] == "lifespan.shutdown.failed":
                logger.error("ASGI lifespan shutdown failed: %s", answer.get("message", ""))

    def cancel(self) -> None:
        """End the lifespan task (after shutdown, or if startup failed)."""
        self._scope.cancel()

    def close(self) -> None:
        """Release the message queue (once the lifespan task is over)."""
        self._to_app.close()
        self._from_server.close()

    async def _wait_answer(self) -> Message | None:
        await self._answered.wait()
        self._answered = anyio.Event()
        answer, self._answer = self._answer, None
        return answer

    def _reply(self, message: Message | None) -> None:
        self._answer = message
        self._answered.set()

    async def _receive(self) -> Message:
        return await self._from_server.receive()

    async def _send(self, message: Message) -> None:
        kind = message["type"]
        if kind not in (
            "lifespan.startup.complete",
            "lifespan.startup.failed",
            "lifespan.shutdown.complete",
            "lifespan.shutdown.failed",
        ):
            raise RuntimeError(f"unexpected ASGI lifespan message {kind!r}")
        self._reply(message)

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": dict(LIFESPAN_VERSIONS), "state": self._state}
        try:
            with self._scope:
                await self._app(scope, self._receive, self._send)
        except Exception as error:
            if self._started:
                logger.exception("exception in the ASGI lifespan task")
            else:
                self._supported = False
                logger.debug("the ASGI application does not support lifespan: %r", error)
        else:
            if not self._started:
                self._supported = False
                logger.debug("the ASGI application returned from lifespan at once")
        finally:
            if not self._answered.is_set():  # keep an answer not yet read
                self._reply(None)
