"""Run a Python program with every aioquic connection logging its TLS secrets.

Usage::

    python bench/_keylog.py KEYLOG (-m MODULE | SCRIPT) [ARGS...]

aioquic writes a connection's secrets (NSS key log format, which
Wireshark's ``tls.keylog_file`` reads) when its configuration has a
``secrets_log_file``, but hypercorn and hface's server offer no option
for it (hface's client has ``ClientTLSConfig.keylog_filename`` and
honours ``SSLKEYLOGFILE`` on the command line). This runner sets it on every
``QuicConnection`` made in the process, before the handshake installs any
key, and then runs the program as ``python -m MODULE`` or ``python
SCRIPT`` would. Used by bench/h3_wire.py, to decrypt a capture; nothing
else changes (the file is written only at handshakes).
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path
from typing import Any, TextIO

from aioquic.quic.connection import QuicConnection


def _install(log: TextIO) -> None:
    original = QuicConnection.__init__

    def __init__(self: QuicConnection, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self._configuration.secrets_log_file = log

    QuicConnection.__init__ = __init__  # type: ignore[method-assign]


def main() -> None:
    """Parse the command line, install the hook, run the program."""
    if len(sys.argv) < 3 or (sys.argv[2] == "-m" and len(sys.argv) < 4):
        sys.exit(__doc__)
    log = open(sys.argv[1], "a", buffering=1)  # noqa: SIM115 - open while the program runs
    _install(log)
    if sys.argv[2] == "-m":
        module = sys.argv[3]
        sys.argv = [module, *sys.argv[4:]]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    else:
        script = sys.argv[2]
        sys.argv = sys.argv[2:]
        sys.path[0] = str(Path(script).resolve().parent)
        runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
