"""The ``hface`` command line: ``hface server``, ``hface certs`` (client and proxy to come).

Also runs as ``python -m hface``.
"""

from ._main import main as main

__all__ = ("main",)
