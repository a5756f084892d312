"""The target of ``hface server --workers`` and ``hface proxy --workers`` worker processes.

Theory of operation: the supervisor (see :mod:`._worker`) starts each
worker with the command line it was given, in the plan's payload. The
worker sets its context (so that :func:`~hface.cli._run.run` serves the
worker's sockets instead of binding) and runs the same command through
:func:`hface.cli._main.main`, its standard output (the banner again) in
``/dev/null``. Nothing imports this module: the supervisor names it.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import redirect_stdout

from hface.server._worker_process import WorkerContext
from hface.server._workers import WorkerPlan

from ._main import main
from ._worker import set_worker_context


def serve(context: WorkerContext) -> None:
    """Run the supervisor's command line, serving ``context``'s sockets."""
    argv = json.loads(WorkerPlan.from_json(context.argument).payload)
    set_worker_context(context)
    if "LISTEN_PID" in os.environ:
        # The command names sockets systemd passed to the supervisor (fd://NAME):
        # parsed here again, as the supervisor's, and not used (the worker
        # serves the sockets it was handed).
        os.environ["LISTEN_PID"] = str(os.getpid())
    with open(os.devnull, "w") as devnull, redirect_stdout(devnull):
        status = main(argv)
    if status:
        sys.exit(status)
