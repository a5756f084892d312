"""The worker side of the supervisor: a fresh process running a target with inherited sockets.

Theory of operation
===================

The supervisor (``hface.server._supervisor``) starts each worker as
``python -m hface.server._worker_process LAUNCH``, where ``LAUNCH`` is a
:class:`WorkerLaunch` in JSON: the importable target (``module:function``),
the worker's index and generation, the file descriptors of the sockets it
inherits (``subprocess``'s ``pass_fds`` keeps their numbers) and the
supervisor's opaque argument for the target. :func:`main` rebuilds the
sockets, then calls the target with a :class:`WorkerContext`; the target
serves until it is told to stop (SIGTERM), and returns.

One end of a socket pair, the *control* socket, links the worker to the
supervisor:

- the worker says it is ready (``context.ready()``, once its sockets are
  being served) with one byte; the supervisor waits for that byte, not for
  a delay, before it counts on the worker (and, on SIGHUP, before it stops
  the worker this one replaces);
- a thread of the worker reads the other direction, where the supervisor
  never writes: end of file means the supervisor is gone (even killed
  with SIGKILL), and the worker sends itself SIGTERM, so that no worker
  outlives its supervisor.

Workers run in sessions of their own, so a terminal's Ctrl-C reaches the
supervisor only, which then stops the workers in order.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, Final

from hface.networking._connection_ids import ConnectionIDLayout

#: What the worker writes on its control socket once it serves.
READY_MESSAGE: Final = b"R"


@dataclass(frozen=True, slots=True, kw_only=True)
class InheritedSocket:
    """A socket as the supervisor describes it to a worker."""

    name: str
    """The name of the supervisor's :class:`~hface.server._worker_sockets.ListenSpec`."""

    fd: int
    """Its file descriptor in the worker."""

    slot: int | None = None
    """For a steered QUIC socket: its index in the group, which the worker's IDs carry."""

    connection_ids: ConnectionIDLayout | None = None
    """For a steered QUIC socket: the layout of the connection IDs to issue."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerLaunch:
    """Everything a worker process is started with (its command line, as JSON)."""

    target: str
    """The function to run, as ``package.module:function``."""

    index: int
    """The worker's position, 0 to the number of workers minus one."""

    generation: int
    """How many workers held this position before this one."""

    control_fd: int
    """The worker's end of the control socket pair."""

    sockets: tuple[InheritedSocket, ...]
    """The sockets to serve."""

    argument: str = ""
    """The supervisor's argument for the target, as it was given."""

    def to_json(self) -> str:
        """This launch as the command-line argument of a worker."""
        sockets = [
            {
                "name": item.name,
                "fd": item.fd,
                "slot": item.slot,
                "connection_ids": None
                if item.connection_ids is None
                else {
                    "length": item.connection_ids.length,
                    "server_id": item.connection_ids.server_id.hex(),
                    "config_rotation": item.connection_ids.config_rotation,
                },
            }
            for item in self.sockets
        ]
        return json.dumps(
            {
                "target": self.target,
                "index": self.index,
                "generation": self.generation,
                "control_fd": self.control_fd,
                "sockets": sockets,
                "argument": self.argument,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> WorkerLaunch:
        """The launch :meth:`to_json` wrote.

        :raises ValueError: if ``text`` is not one.
        """
        try:
            data: dict[str, Any] = json.loads(text)
            sockets = tuple(
                InheritedSocket(
                    name=str(item["name"]),
                    fd=int(item["fd"]),
                    slot=None if item["slot"] is None else int(item["slot"]),
                    connection_ids=None
                    if item["connection_ids"] is None
                    else ConnectionIDLayout(
                        length=int(item["connection_ids"]["length"]),
                        server_id=bytes.fromhex(item["connection_ids"]["server_id"]),
                        config_rotation=int(item["connection_ids"]["config_rotation"]),
                    ),
                )
                for item in data["sockets"]
            )
            return cls(
                target=str(data["target"]),
                index=int(data["index"]),
                generation=int(data["generation"]),
                control_fd=int(data["control_fd"]),
                sockets=sockets,
                argument=str(data["argument"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"not a worker launch description: {exc}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerSocket:
    """A socket the worker serves, made by the supervisor."""

    name: str
    """The name of the supervisor's :class:`~hface.server._worker_sockets.ListenSpec`."""

    socket: socket.socket
    """The socket: listening (TCP) or bound (UDP)."""

    slot: int | None
    """For a steered QUIC socket: its index in the group; None otherwise."""

    connection_ids: ConnectionIDLayout | None
    """For a steered QUIC socket: the layout of the connection IDs to issue; None otherwise."""

    def connection_id_generator(self) -> Callable[[], bytes] | None:
        """What makes this worker's connection IDs, for a steered QUIC socket; else None."""
        if self.connection_ids is None or self.slot is None:
            return None
        return self.connection_ids.generator(self.slot)


class WorkerContext:
    """What a worker's target is called with."""

    def __init__(
        self,
        *,
        index: int,
        generation: int,
        sockets: Sequence[WorkerSocket],
        argument: str,
        control: socket.socket,
    ) -> None:
        #: The worker's position, 0 to the number of workers minus one.
        self.index = index
        #: How many workers held this position before this one.
        self.generation = generation
        #: The sockets to serve, in the supervisor's order.
        self.sockets = tuple(sockets)
        #: The supervisor's argument for the target.
        self.argument = argument
        self._control = control
        self._ready = False

    def socket(self, name: str) -> WorkerSocket | None:
        """The socket of the spec called ``name``, or None if this worker has none."""
        return next((item for item in self.sockets if item.name == name), None)

    def ready(self) -> None:
        """Tell the supervisor this worker serves its sockets now (once; later calls do nothing)."""
        if self._ready:
            return
        self._ready = True
        # If the supervisor is gone, the lifeline thread stops this worker.
        with suppress(OSError):
            self._control.sendall(READY_MESSAGE)


def _watch_supervisor(control: socket.socket) -> None:
    """Stop this worker (SIGTERM to itself) once the supervisor's end of ``control`` closes."""
    try:
        while control.recv(64):
            pass
    except OSError:
        pass
    os.kill(os.getpid(), signal.SIGTERM)


def load_target(target: str) -> Callable[[WorkerContext], object]:
    """Import ``package.module:function``.

    :raises ValueError: if ``target`` is not of that form, or names nothing callable.
    :raises ImportError: if the module cannot be imported.
    """
    module_name, colon, attribute = target.partition(":")
    if not colon or not module_name or not attribute:
        raise ValueError(f"a worker target is 'package.module:function', not {target!r}")
    value: object = importlib.import_module(module_name)
    for part in attribute.split("."):
        value = getattr(value, part, None)
    if not callable(value):
        raise ValueError(f"{target!r} is not a function")
    function: Callable[[WorkerContext], object] = value
    return function


def main(argv: Sequence[str]) -> int:
    """Run the worker described by ``argv[0]`` (a :class:`WorkerLaunch` in JSON)."""
    if len(argv) != 1:
        print("usage: python -m hface.server._worker_process LAUNCH", file=sys.stderr)
        return 2
    launch = WorkerLaunch.from_json(argv[0])
    control = socket.socket(fileno=launch.control_fd)
    threading.Thread(
        target=_watch_supervisor, args=(control,), name="hface-lifeline", daemon=True
    ).start()
    sockets = [
        WorkerSocket(
            name=item.name,
            socket=socket.socket(fileno=item.fd),
            slot=item.slot,
            connection_ids=item.connection_ids,
        )
        for item in launch.sockets
    ]
    target = load_target(launch.target)
    context = WorkerContext(
        index=launch.index,
        generation=launch.generation,
        sockets=sockets,
        argument=launch.argument,
        control=control,
    )
    target(context)
    return 0


if __name__ == "__main__":
    # Run the imported module's main, not this __main__ copy's, so that the
    # target and the worker share one WorkerContext class.
    from hface.server._worker_process import main as _main

    sys.exit(_main(sys.argv[1:]))
