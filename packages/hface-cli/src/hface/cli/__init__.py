"""The ``hface`` command line: ``hface server``, ``hface client``, ``hface proxy``, ``hface certs``.

Also runs as ``python -m hface``.
"""

from ._main import main as main

__all__ = ("main",)
