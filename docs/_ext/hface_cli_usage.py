"""A Sphinx directive that prints ``hface``'s help from its argparse parser.

``.. hface-usage::`` gives the help of ``hface`` itself and
``.. hface-usage:: server`` the help of one subcommand, so the CLI page
cannot drift from the parser (:func:`hface.cli._main.build_parser`).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

#: Columns the help is wrapped to, whatever the terminal of the build.
WIDTH = 88


def _parser() -> argparse.ArgumentParser:
    from hface.cli._main import build_parser

    return build_parser()


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse has no public way to list subcommands
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _help(parser: argparse.ArgumentParser) -> str:
    if hasattr(parser, "color"):  # Python 3.14+ may colour help on a terminal
        parser.color = False
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(WIDTH)  # argparse reads it for each formatter
    try:
        return parser.format_help().rstrip()
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous


class HfaceUsage(SphinxDirective):
    """``.. hface-usage:: [COMMAND]``: the ``--help`` text of ``hface [COMMAND]``."""

    optional_arguments = 1

    def run(self) -> list[nodes.Node]:
        parser = _parser()
        if self.arguments:
            name = self.arguments[0]
            commands = _subparsers(parser)
            if name not in commands:
                known = ", ".join(sorted(commands))
                raise self.error(f"hface has no command {name!r} (it has: {known})")
            parser = commands[name]
        text = _help(parser)
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the directive."""
    app.add_directive("hface-usage", HfaceUsage)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
