"""Where ``hface client`` writes: stdout, ``-o FILE``, ``-O``, ``-D FILE``, and ``-i``'s heads.

Bodies are written as bytes, chunk by chunk as they arrive, never held
whole in memory; on stdout each chunk is flushed at once, so that a reader
sees it. A file is created when its first byte comes (a transfer that
fails before has made none), in the directories ``--create-dirs`` makes;
a retry starts it again from nothing (curl's "Throwing away N bytes").

Writing errors are exit 23 (curl's "failed writing received data"); a
reader of stdout that went away is one of them, reported once, without
Python's own complaint at exit.
"""

from __future__ import annotations

import os
import sys
from contextlib import suppress
from http import HTTPStatus
from typing import BinaryIO, Final

from hface.client import Response

from ._errors import CommandError
from ._progress import ProgressBar

#: The exit code of a failed write (curl's 23).
WRITE_ERROR: Final = 23


def format_head(response: Response) -> bytes:
    """The status line and header fields of ``response``, as ``-i`` and ``-D`` write them.

    HTTP/1.1 gets the standard reason phrase (the client does not keep the
    server's); names are lower case, as the protocols deliver them.
    """
    status_line = f"HTTP/{response.http_version} {response.status}"
    if response.http_version == "1.1":
        with suppress(ValueError):
            status_line += f" {HTTPStatus(response.status).phrase}"
    lines = [status_line.encode(), *(name + b": " + value for name, value in response.headers)]
    return b"".join(line + b"\r\n" for line in lines) + b"\r\n"


def silence_stdout() -> None:
    """Point stdout at /dev/null: Python flushes it at exit, and a closed pipe would complain."""
    with suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def write_stdout(data: bytes) -> None:
    """Write ``data`` to stdout and flush it.

    :raises CommandError: (23) if stdout cannot take it.
    """
    try:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        silence_stdout()
        raise CommandError("cannot write the output: the reader went away", WRITE_ERROR) from None
    except OSError as error:
        reason = error.strerror or str(error)
        raise CommandError(f"cannot write the output: {reason}", WRITE_ERROR) from None


class Output:
    """The destination of one transfer's body: stdout (``path`` None or ``-``) or a file.

    :param create_dirs: make the file's missing directories (``--create-dirs``).
    :param progress: draw a progress bar on stderr while the body comes.
    """

    def __init__(self, path: str | None, *, create_dirs: bool = False, progress: bool = False):
        self.path = None if path == "-" else path
        self._create_dirs = create_dirs
        self._progress = progress and self.path is not None
        self._file: BinaryIO | None = None
        self._bar: ProgressBar | None = None
        #: Bytes written since the file was (re)started.
        self.written = 0

    def write(self, data: bytes) -> None:
        """Write ``data``.

        :raises CommandError: (23) if it cannot be written.
        """
        if not data:
            return
        if self.path is None:
            write_stdout(data)
        else:
            file = self._file or self._open()
            try:
                file.write(data)
            except OSError as error:
                raise CommandError(self._failure(error), WRITE_ERROR) from None
        self.written += len(data)
        if self._bar is not None:
            self._bar.update(len(data))

    def start_body(self, length: int | None) -> None:
        """A body begins: start the progress bar (its size, if known)."""
        if self._progress:
            self._bar = ProgressBar(sys.stderr, length)

    def end_body(self) -> None:
        """The body ended, or failed: end the progress bar's line (before any error line)."""
        bar, self._bar = self._bar, None
        if bar is not None:
            bar.finish()

    def rewind(self) -> int:
        """Start again from nothing (a retry); return the bytes thrown away (0 on stdout)."""
        thrown = self.written if self._file is not None else 0
        if self._file is not None:
            try:
                self._file.seek(0)
                self._file.truncate()
            except OSError as error:
                raise CommandError(self._failure(error), WRITE_ERROR) from None
        self.written = 0
        return thrown

    def create(self) -> None:
        """Make the file now if no byte made it (an empty body still makes one, as curl)."""
        if self.path is not None and self._file is None:
            self._open()

    def close(self) -> None:
        """Close the file, if one was opened.

        :raises CommandError: (23) if what was written cannot be.
        """
        self.end_body()
        file, self._file = self._file, None
        if file is not None:
            try:
                file.close()
            except OSError as error:
                raise CommandError(self._failure(error), WRITE_ERROR) from None

    def _open(self) -> BinaryIO:
        assert self.path is not None
        try:
            if self._create_dirs:
                directory = os.path.dirname(self.path)
                if directory:
                    os.makedirs(directory, exist_ok=True)
            self._file = open(self.path, "wb")  # noqa: SIM115 - closed by close()
        except OSError as error:
            raise CommandError(self._failure(error), WRITE_ERROR) from None
        return self._file

    def _failure(self, error: OSError) -> str:
        return f"cannot write {self.path}: {error.strerror or error}"
