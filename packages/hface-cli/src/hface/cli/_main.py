"""``hface``: the command line. The only place that reads argv and the environment.

This module is the dispatcher: it builds the parser from the commands'
modules and runs the command asked for. Nothing imports it but
:mod:`hface.cli` itself. Who owns what:

- ``_server_command``, ``_proxy_command``, ``_certs_command``, and
  ``_client_parser`` with ``_client_command``: one command each, its
  parser and its run;
- ``_options``: the options ``hface server`` and ``hface proxy`` share;
- ``_deploy_options``: their deployment options and logging set-up;
- ``_reload``: ``hface server --reload``;
- ``_run``: running a server (certificates, the event loop);
- ``_errors``: one-line errors and exit codes.

Building the parser imports neither :mod:`hface.server` nor
:mod:`hface.client` (nor ``cryptography``); each command imports what it
runs with when it runs. Run with a command, ``hface`` builds (and imports
the module of) that command's parser only: the others are named, with
their summaries, for ``hface --help``, so that ``hface server`` does not
keep ``hface client``'s hundred options in memory.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from ._errors import CommandError as CommandError
from ._errors import CommandParser, report

if TYPE_CHECKING:
    from ._options import LIMIT_DEFAULTS as LIMIT_DEFAULTS
    from ._options import apply_limit_options as apply_limit_options
    from ._server_command import http1_factory as http1_factory

#: Each command: what ``hface --help`` says of it, the module with its
#: parser and the function of that module adding it.
_COMMANDS: Final = {
    "server": ("serve an ASGI application", "._server_command", "add_server_parser"),
    "certs": (
        "write a development CA and a localhost certificate",
        "._certs_command",
        "add_certs_parser",
    ),
    "client": ("make HTTP requests (like curl)", "._client_parser", "add_client_parser"),
    "proxy": (
        "run an HTTP proxy (CONNECT and CONNECT-UDP tunnels)",
        "._proxy_command",
        "add_proxy_parser",
    ),
}

#: Names the tests import from here, where they used to live, and their
#: modules (imported on first use, as the commands' own).
_MOVED: Final = {
    "LIMIT_DEFAULTS": "._options",
    "apply_limit_options": "._options",
    "http1_factory": "._server_command",
}


class _VersionAction(argparse.Action):
    """``--version``: the version is looked up only when asked for.

    (``importlib.metadata`` is not imported otherwise: a server spares its memory.)
    """

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        from importlib.metadata import version

        print(f"hface {version('hface-cli')}")  # on stdout, as argparse's own action
        parser.exit()


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser of ``hface`` and its subcommands.

    :param argv: the arguments it is for: only the parser of the command
        they name is complete (see the module docstring). Without, every
        command's is.
    """
    parser = argparse.ArgumentParser(
        prog="hface",
        description="HTTP/1.1, HTTP/2 and HTTP/3 server, client and proxy.",
    )
    parser.add_argument(
        "--version", action=_VersionAction, help="show the program's version number and exit"
    )
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=CommandParser
    )
    named = None if argv is None else _command_named(argv)
    for name, (summary, module, function) in _COMMANDS.items():
        if argv is None or name == named:
            add_parser = getattr(importlib.import_module(module, __package__), function)
            add_parser(commands, summary)
        else:
            commands.add_parser(name, help=summary)
    return parser


def _command_named(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names: its first word that is not an option.

    (``hface`` itself has no option with a value.)
    """
    return next((word for word in argv if not word.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``hface``; return the exit code (2 for usage errors, 1 for runtime errors).

    ``hface client`` reports its own errors, with curl's exit codes.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args, extras = parser.parse_known_args(argv)
    args.argv = argv  # for --reload's child and workers
    if extras:
        if args.command == "client":
            from ._client_parser import unknown_option

            unknown_option(extras)
        parser.error(f"unrecognized arguments: {' '.join(extras)}")
    try:
        if args.command == "client":
            from ._client_command import run_client

            return run_client(args)
        if args.command == "certs":
            from ._certs_command import run_certs_command

            return run_certs_command(args)
        if args.command == "proxy":
            from ._proxy_command import run_proxy_command

            return run_proxy_command(args, parser)
        from ._server_command import run_server_command

        return run_server_command(args, parser)
    except CommandError as error:
        return report(error)
    except KeyboardInterrupt:
        return 130


def __getattr__(name: str) -> Any:
    """The names of :data:`_MOVED`, imported on first use."""
    module = _MOVED.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __package__), name)
    globals()[name] = value  # found directly from now on
    return value
