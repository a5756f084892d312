"""``hface server --reload``: restart the server when Python files change (development).

The command given with ``--reload`` does not serve: it runs the same
command without ``--reload`` in a child process, watches the directories
(the current one, or each ``--reload-dir``) with :mod:`watchfiles`, and on
a change to a ``.py`` file stops the child (SIGINT: a graceful shutdown,
killed after a few seconds) and starts a new one. SIGINT or SIGTERM stop
the watching and the child. watchfiles is an
optional dependency: ``pip install 'hface-cli[reload]'``.
"""

from __future__ import annotations

import importlib
import shlex
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from ._errors import CommandError

#: The options of this module, removed from the child's command line.
_OWN_FLAGS = ("--reload",)
_OWN_VALUED = ("--reload-dir",)


def child_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` (without the program's name) minus ``--reload`` and ``--reload-dir DIR``."""
    child: list[str] = []
    skip = False
    for item in argv:
        if skip:
            skip = False
            continue
        if item in _OWN_FLAGS or any(item.startswith(f"{flag}=") for flag in _OWN_VALUED):
            continue
        if item in _OWN_VALUED:
            skip = True
            continue
        child.append(item)
    return child


def run_reloading(argv: Sequence[str], directories: Sequence[str]) -> int:
    """Serve in a child process, restarted on every change of a ``.py`` file; return 0.

    :param argv: the command line of ``hface``, without the program's name.
    :param directories: the directories to watch (the current one if empty).
    :raises CommandError: if watchfiles is not installed, or a directory does not exist.
    """
    try:
        watchfiles = importlib.import_module("watchfiles")
    except ImportError:
        raise CommandError("--reload needs watchfiles: pip install 'hface-cli[reload]'") from None
    paths = [Path(directory) for directory in directories] or [Path.cwd()]
    for path in paths:
        if not path.is_dir():
            raise CommandError(f"--reload-dir: {path} is not a directory")
    command = shlex.join([sys.executable, "-m", "hface", *child_argv(argv)])
    # SIGINT and SIGTERM stop the watching (and the child), even where the
    # shell that started us in the background made SIGINT ignored.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    print(f"hface: watching {', '.join(str(path) for path in paths)} for .py changes")
    sys.stdout.flush()
    watchfiles.run_process(
        *paths,
        target=command,
        target_type="command",
        watch_filter=watchfiles.PythonFilter(),
        callback=_changed,
    )
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _changed(changes: set[tuple[object, str]]) -> None:
    names = sorted({Path(path).name for _, path in changes})
    print(f"hface: {', '.join(names)} changed, restarting")
    sys.stdout.flush()
