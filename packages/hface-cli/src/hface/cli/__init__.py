"""The ``hface`` command line (in progress)."""

from __future__ import annotations

import sys
from importlib.metadata import version

__all__ = ("main",)


def main(argv: list[str] | None = None) -> int:
    """Run the ``hface`` command; return its exit code."""
    args = sys.argv[1:] if argv is None else argv
    if args in (["--version"], ["-V"]):
        print(f"hface {version('hface-cli')}")
        return 0
    print("usage: hface --version (server, client and proxy are coming)", file=sys.stderr)
    return 2
