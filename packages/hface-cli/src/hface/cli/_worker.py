"""``--workers`` and ``--quic-server-id``: ``hface server`` and ``hface proxy`` in worker processes.

Theory of operation: with ``--workers N`` the process started is the
supervisor. It runs the command as typed (parsing, the certificate, the
application's import, so that a mistake is one line before any worker
starts, and the banner), but instead of serving it runs
``hface.server``'s supervisor with ``hface.cli._worker_target:serve`` as
the workers' target and the command line as their payload. Each worker
runs that command line again, through :func:`hface.cli._main.main`, with
its :class:`~hface.server._worker_process.WorkerContext` set here: the
command's :func:`~hface.cli._run.run` then serves the server it made on
the worker's sockets (``hface.server._workers.serve_in_worker``) instead
of binding its own. A worker's standard output (the banner again) goes to
``/dev/null``; its log lines go to standard error, as the supervisor's.

``--quic-server-id HEX`` puts a fixed server ID in every QUIC connection
ID, with or without workers, for a load balancer that routes by it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hface.server._worker_process import WorkerContext

#: The context of this process when it is a worker (set by :func:`set_worker_context`).
_context: WorkerContext | None = None

#: The most workers a supervisor runs (its slots are one byte, two per worker).
MAX_WORKERS = 128


@dataclass(frozen=True, kw_only=True)
class WorkerOptions:
    """``--workers`` and ``--quic-server-id``, and the command line to repeat in the workers."""

    #: How many worker processes; None: serve in this process.
    count: int | None
    #: The server ID in QUIC connection IDs (empty: none).
    quic_server_id: bytes
    #: The command line (without the program name), for the workers.
    argv: Sequence[str]


def worker_count(text: str) -> int:
    """An ``argparse`` type: a number of workers, 1 to :data:`MAX_WORKERS`."""
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(
            f"invalid number of workers: {text!r} (1 to {MAX_WORKERS})"
        )
    return int(text)


def server_id(text: str) -> bytes:
    """An ``argparse`` type: a QUIC server ID in hexadecimal, 1 to 5 bytes."""
    try:
        value = bytes.fromhex(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid server ID: {text!r} (hexadecimal)") from None
    if not 1 <= len(value) <= 5:
        raise argparse.ArgumentTypeError(f"invalid server ID: {text!r} (1 to 5 bytes)")
    return value


def add_worker_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--workers`` and ``--quic-server-id`` to ``parser``."""
    group = parser.add_argument_group("processes")
    group.add_argument(
        "--workers",
        type=worker_count,
        metavar="N",
        help="serve with N worker processes, restarted if they die, replaced one by one on "
        "SIGHUP (default: one process, no supervisor)",
    )
    group.add_argument(
        "--quic-server-id",
        type=server_id,
        default=b"",
        metavar="HEX",
        help="a server ID (1 to 5 bytes) in every QUIC connection ID, for a load balancer "
        "that routes by it (QUIC-LB)",
    )


def worker_options(args: argparse.Namespace) -> WorkerOptions:
    """The worker options parsed in ``args``."""
    return WorkerOptions(
        count=args.workers,
        quic_server_id=args.quic_server_id,
        argv=tuple(getattr(args, "argv", sys.argv[1:])),
    )


def worker_context() -> WorkerContext | None:
    """This process's worker context, if it is a worker of ``--workers``."""
    return _context


def set_worker_context(context: WorkerContext) -> None:
    """Make this process a worker of ``--workers`` (see :mod:`._worker_target`)."""
    global _context
    _context = context
