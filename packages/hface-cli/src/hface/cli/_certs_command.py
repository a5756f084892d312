"""``hface certs DIR``: write a development CA and a certificate for localhost.

The certificates are made by ``_certs``, imported (with ``cryptography``)
only when the command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._errors import CommandError


def add_certs_parser(commands: Any, summary: str) -> None:
    """Add ``hface certs`` to the subparsers ``commands`` (``add_subparsers()``).

    :param summary: what ``hface --help`` says of it.
    """
    certs: argparse.ArgumentParser = commands.add_parser(
        "certs",
        help=summary,
        description="Write cacert.pem, cert.pem and key.pem (localhost) into DIR.",
    )
    certs.add_argument("directory", metavar="DIR")


def run_certs_command(args: argparse.Namespace) -> int:
    """Run ``hface certs`` with parsed ``args``; return the exit code.

    :raises CommandError: if the files cannot be written.
    """
    from ._certs import write_certificates

    directory = Path(args.directory)
    try:
        files = write_certificates(directory)
    except OSError as error:
        raise CommandError(f"cannot write certificates to {directory}: {error.strerror}") from None
    print(f"Wrote {files.cafile}, {files.certfile} and {files.keyfile}")
    return 0
