"""``hface client URL...``: HTTP requests from the command line, as curl makes them.

The options are curl's (:mod:`hface.cli._client_parser`); :mod:`hface.cli._client_setup`
turns them into a :class:`~hface.client.Client` and a plan; here the
transfers run, one after the other (each body written as it arrives) or,
with ``-Z``, at once over one session, so that HTTP/2 and HTTP/3 carry
them on one connection. Each transfer (:mod:`hface.cli._transfer`) follows
redirects, retries and writes its output. ``-v`` writes every hface event
to stderr as it happens (see :mod:`hface.cli._trace`). A ``ws://`` or
``wss://`` URL is a WebSocket between stdin and stdout instead
(:mod:`hface.cli._websocket_command`).

Errors are one line on stderr, ``hface: error: ...``, and the exit code
says what went wrong, with curl's numbers (:data:`EXIT_CODES` and
``exit_code()``, in ``_errors``): the last transfer's without ``-Z``, the
first failure's with it, as curl.
"""

from __future__ import annotations

import argparse
import logging
import sys
from contextlib import suppress

import anyio

from hface.client import ClientProtocol
from hface.errors import HTTPError

from ._client_parser import _PROTOCOL_NAMES
from ._client_setup import Job, Setup, prepare
from ._errors import EXIT_CODES as EXIT_CODES
from ._errors import TRIO_MISSING, CommandError, message_of, report, require_module
from ._errors import exit_code as exit_code
from ._output import Output, write_stdout
from ._trace import Tracer
from ._transfer import Transfer
from ._websocket_command import is_websocket_url, run_websocket


def run_client(args: argparse.Namespace) -> int:
    """Run ``hface client`` with parsed ``args``; return the exit code.

    Errors are printed as one line on stderr (usage errors with exit code 2).
    """
    tracer = Tracer(sys.stderr, proxy=bool(args.proxy)) if args.verbose else None
    handler = _LogHandler(tracer)
    root = logging.getLogger()
    # Libraries' warnings (aioquic's, say) become trace lines with -v and
    # are dropped otherwise: the error line says what went wrong.
    root.addHandler(handler)
    try:
        if args.backend == "trio":
            require_module("trio", TRIO_MISSING)
        if any(is_websocket_url(text) for text in [*args.urls, *args.more_urls]):
            return run_websocket(args, tracer)
        setup = prepare(args, tracer)
        code: int = anyio.run(_run, setup, backend=args.backend)
        return code
    except CommandError as error:
        if args.silent and not args.show_error:
            return error.code
        return report(error, command="client")
    finally:
        root.removeHandler(handler)


class _LogHandler(logging.Handler):
    """Writes log records as trace lines (``-v``), or drops them."""

    def __init__(self, tracer: Tracer | None) -> None:
        super().__init__(logging.WARNING)
        self._tracer = tracer

    def emit(self, record: logging.LogRecord) -> None:
        if self._tracer is not None:
            with suppress(Exception):
                self._tracer.log(f"log {record.name}: {record.getMessage()}")


async def _run(setup: Setup) -> int:
    """Make every transfer; return the exit code."""
    client = setup.client
    try:
        async with client.session() as session:
            transfers = [
                Transfer(
                    setup.plan,
                    session,
                    url=job.url,
                    given=job.given,
                    number=number,
                    output=Output(
                        job.output, create_dirs=setup.create_dirs, progress=setup.progress
                    ),
                )
                for number, job in enumerate(setup.jobs)
            ]
            if setup.parallel > 1:
                code = await _run_parallel(setup, transfers)
            else:
                code = 0
                for job, transfer in zip(setup.jobs, transfers, strict=True):
                    _log_start(setup, job)
                    code = await transfer.run()
    except (HTTPError, TimeoutError, OSError, anyio.BrokenResourceError) as error:
        # The session's own start or end (a transfer reports its own errors).
        raise CommandError(message_of(error), exit_code(error, client.proxy_origin)) from None
    finally:
        _finish(setup)
    return code


async def _run_parallel(setup: Setup, transfers: list[Transfer]) -> int:
    """Run the transfers at once, at most ``setup.parallel``; return the first failure's code."""
    limiter = anyio.CapacityLimiter(setup.parallel)
    failures: list[int] = []

    async def run_one(job: Job, transfer: Transfer) -> None:
        async with limiter:
            _log_start(setup, job)
            code = await transfer.run()
        if code:
            failures.append(code)

    async with anyio.create_task_group() as task_group:
        for job, transfer in zip(setup.jobs, transfers, strict=True):
            task_group.start_soon(run_one, job, transfer)
    return failures[0] if failures else 0


def _log_start(setup: Setup, job: Job) -> None:
    tracer = setup.tracer
    if tracer is None:
        return
    client = setup.client
    origin = job.url.origin
    versions = _PROTOCOL_NAMES[client.protocol.value]
    if client.protocol is ClientProtocol.TCP and not origin.tls:
        versions = "HTTP/1.1"
    through = ""
    if client.proxy_origin is not None:
        proxy_versions = _PROTOCOL_NAMES[client.proxy_protocol.value]
        through = f" through the proxy {client.proxy_origin} ({proxy_versions})"
    tracer.log(f"connecting to {origin} ({versions}){through}")


def _finish(setup: Setup) -> None:
    """Write the cookie jar (``-c``) and the Alt-Svc cache, close ``-D``'s file: the end."""
    plan = setup.plan
    alt_svc = setup.client.alt_svc
    if setup.alt_svc_file is not None and alt_svc is not None:
        try:
            alt_svc.save(setup.alt_svc_file)
        except OSError as error:
            reason = error.strerror or str(error)
            raise CommandError(f"cannot write {setup.alt_svc_file}: {reason}", 23) from None
    if plan.dump_header is not None:
        plan.dump_header.close()
    if setup.cookie_jar is not None and plan.cookies is not None:
        text = plan.cookies.save()
        if setup.cookie_jar == "-":
            write_stdout(text.encode())
            return
        try:
            with open(setup.cookie_jar, "w", encoding="utf-8") as file:
                file.write(text)
        except OSError as error:
            reason = error.strerror or str(error)
            raise CommandError(f"cannot write {setup.cookie_jar}: {reason}", 23) from None
