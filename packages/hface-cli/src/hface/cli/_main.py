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
runs with when it runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from ._certs_command import add_certs_parser, run_certs_command
from ._client_parser import CommandParser, add_client_parser, unknown_option
from ._errors import CommandError as CommandError
from ._errors import report
from ._options import LIMIT_DEFAULTS as LIMIT_DEFAULTS
from ._options import apply_limit_options as apply_limit_options
from ._proxy_command import add_proxy_parser, run_proxy_command
from ._server_command import add_server_parser, run_server_command
from ._server_command import http1_factory as http1_factory

# CommandError, LIMIT_DEFAULTS, apply_limit_options and http1_factory are
# re-exported: the tests import them from here, where they used to live.


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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``hface`` and its subcommands."""
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
    add_server_parser(commands)
    add_certs_parser(commands)
    add_client_parser(commands)
    add_proxy_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``hface``; return the exit code (2 for usage errors, 1 for runtime errors).

    ``hface client`` reports its own errors, with curl's exit codes.
    """
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for --reload's child and workers
    if extras:
        if args.command == "client":
            unknown_option(extras)
        parser.error(f"unrecognized arguments: {' '.join(extras)}")
    try:
        if args.command == "client":
            from ._client_command import run_client

            return run_client(args)
        if args.command == "certs":
            return run_certs_command(args)
        if args.command == "proxy":
            return run_proxy_command(args, parser)
        return run_server_command(args, parser)
    except CommandError as error:
        return report(error)
    except KeyboardInterrupt:
        return 130
