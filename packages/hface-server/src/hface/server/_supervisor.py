"""A supervisor of worker processes: start N, restart the dead, reload on SIGHUP, stop on SIGTERM.

Theory of operation
===================

:class:`Supervisor` runs in the main thread of its own process and does
nothing but manage workers; every request is served by a worker, a fresh
Python process running an importable target (``hface.server._worker_process``)
with the sockets the supervisor made (``hface.server._worker_sockets``).

There are ``workers`` *positions*. Each holds at most one *current*
worker, the one that takes new connections, plus, during a reload, a
*replacement* that is starting and *draining* workers that finish what
they have. A worker is in one :class:`WorkerState`: ``STARTING`` until it
writes its ready byte on its control socket, ``READY``, then ``STOPPING``
once sent SIGTERM. The supervisor as a whole is in one :class:`Phase`:

``STARTING``
    Every position's first worker was started. When all are ready: the
    ``on_ready`` callback (the place for a "serving on ..." banner), and
    ``RUNNING``. A worker that exits or is not ready within
    ``startup_timeout`` now means the service cannot start: all stop, and
    :meth:`Supervisor.run` returns 1.
``RUNNING``
    A current worker that exits is restarted at once the first time, then
    after a back-off that doubles (0.5 s, 1 s, 2 s, ... up to
    ``max_restart_delay``) while it keeps dying within ``stable_after``
    seconds of starting, so a crash loop does not eat the machine.

    **SIGHUP** replaces the workers one position at a time: start the
    replacement, wait until it is ready, make it current, send SIGTERM to
    the old one (which drains in the background), go on to the next
    position. A connection always finds a ready worker: TCP sockets are
    shared by the old and the new worker of a position, and QUIC groups
    route new connections to the new worker and the old connections to
    the old one (``WorkerSockets.steer``, called at every change). A
    replacement that fails to start ends the reload; the old worker keeps
    serving. A SIGHUP during a reload extends it to the positions already
    replaced.
``STOPPING``
    On SIGTERM or SIGINT: SIGTERM to every worker, which finishes the
    requests it has (GOAWAY and all) and exits; whoever still runs after
    ``graceful_timeout`` gets SIGKILL. A second SIGTERM or SIGINT kills at
    once. :meth:`Supervisor.run` returns once every worker was reaped, so
    no worker outlives it (and if it is killed itself, the workers see
    their control sockets close and stop: see ``_worker_process``).

The loop waits on one selector: a socket that ``signal.set_wakeup_fd``
writes the number of each signal to (SIGTERM, SIGINT, SIGHUP and SIGCHLD
for exits), the workers' control sockets, and the next deadline. Signals
are acted on in the loop, never in a handler.
"""

from __future__ import annotations

import logging
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from enum import Enum
from types import FrameType
from typing import Final

from hface.common import AddressType
from hface.networking._quic_steering import steering_unavailable_reason

from ._worker_process import READY_MESSAGE, WorkerLaunch
from ._worker_sockets import LANES, ListenSpec, WorkerSockets

logger = logging.getLogger("hface.server.supervisor")

_HANDLED_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)
_STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)
#: The first restart delay that is not zero; doubled for every further quick death.
_FIRST_RESTART_DELAY: Final = 0.5


@dataclass(frozen=True, slots=True, kw_only=True)
class SupervisorConfig:
    """What a :class:`Supervisor` runs, and how patiently."""

    target: str
    """What each worker runs: ``package.module:function``, called with a ``WorkerContext``."""

    workers: int = 1
    """How many workers serve at once."""

    sockets: tuple[ListenSpec, ...] = ()
    """The sockets the supervisor makes and the workers serve."""

    argument: str = ""
    """Passed to every worker's target as ``context.argument`` (e.g. its options, in JSON)."""

    graceful_timeout: float = 30.0
    """Seconds a stopping worker gets before SIGKILL."""

    startup_timeout: float = 60.0
    """Seconds a starting worker gets to say it is ready before SIGKILL."""

    stable_after: float = 10.0
    """A worker that ran this long before it died is restarted at once."""

    max_restart_delay: float = 30.0
    """The longest wait before restarting a worker that keeps dying."""

    def __post_init__(self) -> None:
        if not 1 <= self.workers <= 128:
            raise ValueError("workers must be 1 to 128")


class Phase(Enum):
    """What the supervisor as a whole is doing."""

    STARTING = "starting"
    """The first workers are starting."""

    RUNNING = "running"
    """Serving; restarting the dead; replacing all on SIGHUP."""

    STOPPING = "stopping"
    """Waiting for every worker to exit."""


class WorkerState(Enum):
    """Where one worker process is in its life."""

    STARTING = "starting"
    """Started, not ready yet."""

    READY = "ready"
    """Serving."""

    STOPPING = "stopping"
    """Sent SIGTERM: finishing what it has."""


@dataclass(slots=True, eq=False)
class _Worker:
    position: int
    generation: int
    lane: int
    epoch: int
    process: subprocess.Popen[bytes]
    control: socket.socket
    started_at: float
    state: WorkerState = WorkerState.STARTING
    deadline: float = 0.0  # ready by (STARTING), killed at (STOPPING)

    def describe(self) -> str:
        return f"worker {self.position} (pid {self.process.pid})"


@dataclass(slots=True)
class _Position:
    index: int
    current: _Worker | None = None
    replacement: _Worker | None = None
    draining: list[_Worker] = field(default_factory=list)
    generations: int = 0
    quick_deaths: int = 0
    restart_at: float | None = None

    def workers(self) -> list[_Worker]:
        found = [self.current, self.replacement, *self.draining]
        return [worker for worker in found if worker is not None]

    def free_lane(self) -> int | None:
        used = {worker.lane for worker in self.workers()}
        return next((lane for lane in range(LANES) if lane not in used), None)


class Supervisor:
    """Runs :attr:`SupervisorConfig.workers` worker processes until SIGTERM or SIGINT.

    :param on_ready: called once, with the bound address of each socket
        spec by name, when the first workers are all ready.
    """

    def __init__(
        self,
        config: SupervisorConfig,
        *,
        on_ready: Callable[[Mapping[str, AddressType]], None] | None = None,
    ) -> None:
        self.config = config
        self._on_ready = on_ready
        needs_steering = any(spec.quic is not None for spec in config.sockets)
        self._sockets = WorkerSockets(
            config.sockets,
            workers=config.workers,
            steering_unavailable=steering_unavailable_reason() if needs_steering else None,
        )
        self._positions = [_Position(index) for index in range(config.workers)]
        self._phase = Phase.STARTING
        self._status = 0
        self._epoch = 0  # raised by each SIGHUP: current workers of older epochs are replaced
        self._reload_epoch: int | None = None
        self._selector = selectors.DefaultSelector()
        self._wakeup_receiver, self._wakeup_sender = socket.socketpair()

    @property
    def phase(self) -> Phase:
        """What the supervisor is doing."""
        return self._phase

    def run(self) -> int:
        """Bind the sockets, run the workers until told to stop; the exit status (0 or 1).

        :raises OSError: if a socket cannot be bound (no worker was started).
        :raises RuntimeError: outside the main thread (signals can be handled there only).
        """
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("a supervisor runs in the main thread")
        with ExitStack() as stack:
            stack.callback(self._selector.close)
            stack.callback(self._wakeup_sender.close)
            stack.callback(self._wakeup_receiver.close)
            self._sockets.open()
            stack.callback(self._sockets.close)
            self._update_steering()  # before any datagram goes to a slot nobody will read
            self._install_signal_handlers(stack)
            stack.callback(self._kill_all)
            self._selector.register(self._wakeup_receiver, selectors.EVENT_READ)
            for position in self._positions:
                self._start(position, replacing=False)
            logger.info("started %d worker(s)", len(self._positions))
            while not (self._phase is Phase.STOPPING and not self._live_workers()):
                self._wait()
                self._reap()
                self._check_deadlines()
                self._advance()
            logger.info("every worker stopped")
        return self._status

    # The loop.

    def _wait(self) -> None:
        now = time.monotonic()
        deadlines = [worker.deadline for worker in self._live_workers() if worker.deadline]
        deadlines += [p.restart_at for p in self._positions if p.restart_at is not None]
        timeout = max(0.0, min(deadlines) - now) if deadlines else None
        for key, _ in self._selector.select(timeout):
            if key.fileobj is self._wakeup_receiver:
                self._handle_signals(self._wakeup_receiver.recv(256))
            else:
                self._handle_control(key.data)

    def _handle_signals(self, numbers: bytes) -> None:
        for number in numbers:
            if number in _STOP_SIGNALS:
                name = signal.Signals(number).name
                if self._phase is Phase.STOPPING:
                    logger.warning("received %s again: killing the workers", name)
                    for worker in self._live_workers():
                        self._kill(worker)
                else:
                    logger.info("received %s: stopping the workers", name)
                    self._stop_all()
            elif number == signal.SIGHUP:
                self._reload()

    def _handle_control(self, worker: _Worker) -> None:
        try:
            message = worker.control.recv(64)
        except OSError:
            message = b""
        if not message:  # the worker closed its end: it is exiting
            self._selector.unregister(worker.control)
            return
        if READY_MESSAGE in message and worker.state is WorkerState.STARTING:
            worker.state = WorkerState.READY
            worker.deadline = 0.0
            logger.info("%s is ready", worker.describe())

    def _reap(self) -> None:
        for position in self._positions:
            for worker in position.workers():
                status = worker.process.poll()
                if status is not None:
                    self._exited(position, worker, status)

    def _check_deadlines(self) -> None:
        now = time.monotonic()
        for worker in self._live_workers():
            if worker.deadline and now >= worker.deadline:
                if worker.state is WorkerState.STARTING:
                    logger.error(
                        "%s was not ready within %g s: killing it",
                        worker.describe(),
                        self.config.startup_timeout,
                    )
                else:
                    logger.warning(
                        "%s did not stop within %g s: killing it",
                        worker.describe(),
                        self.config.graceful_timeout,
                    )
                self._kill(worker)
        for position in self._positions:
            if position.restart_at is not None and now >= position.restart_at:
                position.restart_at = None
                if self._phase is Phase.RUNNING and position.current is None:
                    self._try_start(position, replacing=False)

    def _advance(self) -> None:
        if self._phase is Phase.STARTING and all(
            p.current is not None and p.current.state is WorkerState.READY for p in self._positions
        ):
            self._phase = Phase.RUNNING
            logger.info("%d worker(s) ready", len(self._positions))
            if self._on_ready is not None:
                self._on_ready(self._sockets.addresses)
        if self._phase is Phase.RUNNING and self._reload_epoch is not None:
            self._advance_reload(self._reload_epoch)
        self._update_steering()

    def _advance_reload(self, epoch: int) -> None:
        for position in self._positions:
            replacement = position.replacement
            if replacement is not None:
                if replacement.state is not WorkerState.READY:
                    return  # one position at a time
                old, position.current, position.replacement = position.current, replacement, None
                if old is not None:
                    self._stop(position, old)
                continue
            current = position.current
            if current is None or current.epoch >= epoch:
                continue  # replaced, or restarting (as a worker of this epoch)
            if current.state is not WorkerState.READY or position.free_lane() is None:
                return  # wait: until it is ready, or until a draining worker is gone
            if not self._try_start(position, replacing=True):
                self._reload_epoch = None
            return
        logger.info("reload done: every worker was replaced")
        self._reload_epoch = None

    # Changes.

    def _start(self, position: _Position, *, replacing: bool) -> None:
        lane = position.free_lane()
        assert lane is not None, "a position has a free lane whenever a worker is started"
        launch_sockets = self._sockets.for_worker(position.index, lane)
        control, worker_end = socket.socketpair()
        launch = WorkerLaunch(
            target=self.config.target,
            index=position.index,
            generation=position.generations,
            control_fd=worker_end.fileno(),
            sockets=tuple(described for _, described in launch_sockets),
            argument=self.config.argument,
        )
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "hface.server._worker_process", launch.to_json()],
                stdin=subprocess.DEVNULL,
                pass_fds=[worker_end.fileno(), *(sock.fileno() for sock, _ in launch_sockets)],
                start_new_session=True,
            )
        except OSError:
            control.close()
            raise
        finally:
            worker_end.close()
        now = time.monotonic()
        worker = _Worker(
            position=position.index,
            generation=position.generations,
            lane=lane,
            epoch=self._epoch,
            process=process,
            control=control,
            started_at=now,
            deadline=now + self.config.startup_timeout,
        )
        position.generations += 1
        self._selector.register(control, selectors.EVENT_READ, worker)
        if replacing:
            position.replacement = worker
        else:
            position.current = worker
        logger.info("started %s", worker.describe())

    def _try_start(self, position: _Position, *, replacing: bool) -> bool:
        """:meth:`_start`, which may fail for want of resources: then say so and go on."""
        try:
            self._start(position, replacing=replacing)
        except OSError as exc:
            if replacing:
                logger.error("cannot start a worker (%s): reload stopped", exc)
            else:
                position.quick_deaths += 1
                delay = self._restart_delay(position.quick_deaths)
                message = "cannot start worker %d (%s): retrying in %g s"
                logger.error(message, position.index, exc, delay)
                position.restart_at = time.monotonic() + delay
            return False
        return True

    def _exited(self, position: _Position, worker: _Worker, status: int) -> None:
        with suppress(KeyError, ValueError):
            self._selector.unregister(worker.control)
        worker.control.close()
        how = _exit_description(status)
        if worker in position.draining:
            position.draining.remove(worker)
            logger.info("%s exited (%s)", worker.describe(), how)
            return
        if worker is position.replacement:
            position.replacement = None
            if self._phase is Phase.RUNNING:
                logger.error(
                    "the replacement of worker %d failed to start (%s): "
                    "reload stopped, the old worker keeps serving",
                    position.index,
                    how,
                )
                self._reload_epoch = None
            return
        position.current = None
        if self._phase is Phase.STOPPING:
            logger.info("%s exited (%s)", worker.describe(), how)
        elif self._phase is Phase.STARTING:
            logger.error("%s exited during start-up (%s): stopping", worker.describe(), how)
            self._status = 1
            self._stop_all()
        else:
            now = time.monotonic()
            if now - worker.started_at >= self.config.stable_after:
                position.quick_deaths = 0
            position.quick_deaths += 1
            delay = self._restart_delay(position.quick_deaths)
            logger.warning("%s died (%s): restarting it in %g s", worker.describe(), how, delay)
            position.restart_at = now + delay

    def _restart_delay(self, quick_deaths: int) -> float:
        if quick_deaths <= 1:
            return 0.0
        delay = _FIRST_RESTART_DELAY * 2 ** (quick_deaths - 2)
        return float(min(self.config.max_restart_delay, delay))

    def _reload(self) -> None:
        if self._phase is not Phase.RUNNING:
            logger.warning("received SIGHUP while %s: ignored", self._phase.value)
            return
        self._epoch += 1
        self._reload_epoch = self._epoch
        logger.info("received SIGHUP: replacing the workers one by one")

    def _stop(self, position: _Position, worker: _Worker) -> None:
        """Send SIGTERM to ``worker``, which is no position's current worker any more."""
        if worker.state is not WorkerState.STOPPING:
            logger.info("stopping %s", worker.describe())
            worker.state = WorkerState.STOPPING
            worker.deadline = time.monotonic() + self.config.graceful_timeout
            with suppress(ProcessLookupError):
                worker.process.send_signal(signal.SIGTERM)
        if worker not in position.draining:
            position.draining.append(worker)

    def _stop_all(self) -> None:
        self._phase = Phase.STOPPING
        self._reload_epoch = None
        for position in self._positions:
            position.restart_at = None
            for worker in position.workers():
                if worker is position.current:
                    position.current = None
                if worker is position.replacement:
                    position.replacement = None
                self._stop(position, worker)

    def _kill(self, worker: _Worker) -> None:
        with suppress(ProcessLookupError):
            worker.process.kill()
        worker.deadline = 0.0

    def _kill_all(self) -> None:
        """Last resort on the way out (an error in the loop): nothing outlives the supervisor."""
        for worker in self._live_workers():
            self._kill(worker)
            worker.process.wait()
            worker.control.close()

    def _live_workers(self) -> list[_Worker]:
        return [worker for position in self._positions for worker in position.workers()]

    def _update_steering(self) -> None:
        live: set[int] = set()
        accepting: list[int] = []
        for position in self._positions:
            live.update(LANES * position.index + worker.lane for worker in position.workers())
            lane = position.current.lane if position.current is not None else position.free_lane()
            if lane is not None:
                accepting.append(LANES * position.index + lane)
                live.add(LANES * position.index + lane)
        if accepting:
            self._sockets.steer(live=live, accepting=accepting)

    # Signals.

    def _install_signal_handlers(self, stack: ExitStack) -> None:
        self._wakeup_sender.setblocking(False)
        self._wakeup_receiver.setblocking(False)
        previous_fd = signal.set_wakeup_fd(self._wakeup_sender.fileno(), warn_on_full_buffer=False)
        stack.callback(signal.set_wakeup_fd, previous_fd)
        for number in _HANDLED_SIGNALS:
            # The C handler writes the number to the wakeup socket for any
            # signal with a Python handler; the loop does the rest.
            previous = signal.signal(number, _ignore)
            stack.callback(signal.signal, number, previous)


def _ignore(number: int, frame: FrameType | None) -> None:
    pass


def _exit_description(status: int) -> str:
    if status >= 0:
        return f"status {status}"
    try:
        return f"signal {signal.Signals(-status).name}"
    except ValueError:
        return f"signal {-status}"
