"""The request bodies of ``hface client``: ``-d`` and its kin, ``--json``, ``-F`` and ``-T``.

- ``-d DATA`` (``--data``, ``--data-ascii``), ``--data-binary``,
  ``--data-raw`` and ``--data-urlencode``: the pieces, in order, joined by
  ``&`` (``-d @FILE`` and ``--data-binary @FILE`` send the file's bytes as
  they are; curl's ``-d @FILE`` drops its newlines); sent as
  ``application/x-www-form-urlencoded`` unless ``-H`` says otherwise, or
  appended to the URL's query with ``-G``.
- ``--json DATA``: the pieces joined as they are, sent as
  ``application/json`` with ``Accept: application/json``.
- ``-F name=value``, ``-F name=@FILE[;type=T][;filename=N]``,
  ``-F name=<FILE`` and ``--form-string name=value``: a
  ``multipart/form-data`` body (RFC 7578) laid out as curl lays it out.
- ``-T FILE``: the file, streamed as it is read (``-T -``: stdin), with a
  PUT; a URL ending in ``/`` gets the file's name.

Every body can be sent again (a redirect, a retry, a Digest challenge):
:meth:`Body.content` makes a fresh one each time, but for stdin.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import quote_plus

import anyio

from ._errors import USAGE, CommandError

#: Bytes read from a ``-T`` file at once.
_CHUNK_SIZE: Final = 65536

#: The exit code for a file that cannot be read (curl's 26).
READ_ERROR: Final = 26

#: curl's guesses of a ``-F`` file's type from its name's extension.
_CONTENT_TYPES: Final = {
    ".gif": "image/gif",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".txt": "text/plain",
    ".htm": "text/html",
    ".html": "text/html",
    ".pdf": "application/pdf",
    ".xml": "application/xml",
}


def read_file(path: str) -> bytes:
    """The bytes of ``path`` (``-``: stdin).

    :raises CommandError: (26) if it cannot be read.
    """
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise CommandError(f"cannot read {path}: {error.strerror or error}", READ_ERROR) from None


def _urlencode(data: bytes) -> bytes:
    return quote_plus(data, safe="").encode("ascii")


def data_piece(kind: str, text: str) -> bytes:
    """One ``-d``-like piece as sent: ``kind`` is the option's name without ``--``.

    :raises CommandError: (26) if a file it names cannot be read.
    """
    if kind == "data-raw":
        return os.fsencode(text)
    if kind == "data-urlencode":
        # curl: "content", "=content", "name=content", "@file", "name@file":
        # the first of "=" and "@" decides.
        marks = [index for index in (text.find("="), text.find("@")) if index >= 0]
        if not marks:
            return _urlencode(os.fsencode(text))
        cut = min(marks)
        name, content = os.fsencode(text[:cut]), text[cut + 1 :]
        data = read_file(content) if text[cut] == "@" else os.fsencode(content)
        return name + b"=" + _urlencode(data) if name else _urlencode(data)
    if text.startswith("@"):  # data, data-ascii, data-binary, json
        return read_file(text[1:])
    return os.fsencode(text)


def join_data(pieces: list[tuple[str, str]]) -> tuple[bytes, bool]:
    """The body of the ``-d``-like options: ``(body, is_json)``."""
    is_json = any(kind == "json" for kind, _ in pieces)
    parts = [data_piece(kind, text) for kind, text in pieces]
    return (b"" if is_json else b"&").join(parts), is_json


@dataclass(frozen=True, kw_only=True)
class FormPart:
    """One ``-F`` part."""

    name: str
    #: The value, or the content of the file.
    data: bytes
    #: The file name sent (``-F name=@FILE``), if any.
    filename: str | None = None
    content_type: str | None = None


def parse_form(text: str, *, literal: bool) -> FormPart:
    """A ``-F name=...`` (``--form-string`` if ``literal``) part.

    :raises CommandError: (2) without ``=``; (26) if a file cannot be read.
    """
    name, equals, value = text.partition("=")
    if not equals:
        raise CommandError(f"invalid -F {text!r}: expected name=content", USAGE)
    if literal:
        return FormPart(name=name, data=os.fsencode(value))
    value, *parameters = value.split(";")
    options = {}
    for parameter in parameters:
        key, _, argument = parameter.partition("=")
        options[key.strip().lower()] = argument.strip().strip('"')
    content_type = options.get("type")
    if value.startswith("@"):
        path = value[1:]
        filename = options.get("filename", os.path.basename(path))
        guessed = _CONTENT_TYPES.get(os.path.splitext(path)[1].lower(), "application/octet-stream")
        return FormPart(
            name=name,
            data=read_file(path),
            filename=filename,
            content_type=content_type or guessed,
        )
    if value.startswith("<"):
        return FormPart(name=name, data=read_file(value[1:]), content_type=content_type)
    return FormPart(name=name, data=os.fsencode(value), content_type=content_type)


def _quoted(text: str) -> str:
    return text.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def multipart(parts: list[FormPart]) -> tuple[bytes, bytes]:
    """``(body, content_type)`` of a ``multipart/form-data`` body, as curl makes it."""
    boundary = ("-" * 24 + secrets.token_hex(8)).encode()
    chunks: list[bytes] = []
    for part in parts:
        disposition = f'Content-Disposition: form-data; name="{_quoted(part.name)}"'
        if part.filename is not None:
            disposition += f'; filename="{_quoted(part.filename)}"'
        head = [b"--" + boundary, os.fsencode(disposition)]
        if part.content_type is not None:
            head.append(f"Content-Type: {part.content_type}".encode("latin-1"))
        chunks.append(b"\r\n".join(head) + b"\r\n\r\n" + part.data + b"\r\n")
    chunks.append(b"--" + boundary + b"--\r\n")
    return b"".join(chunks), b"multipart/form-data; boundary=" + boundary


@dataclass(frozen=True, kw_only=True)
class Body:
    """A request body that can be sent again (but stdin).

    :param data: the whole body, or None for :attr:`upload`'s file.
    :param upload: ``-T``'s file (``-``: stdin), streamed.
    """

    data: bytes | None = None
    upload: str | None = None

    @property
    def length(self) -> int | None:
        """The body's size, if known before sending (stdin's is not)."""
        if self.data is not None:
            return len(self.data)
        if self.upload is None or self.upload == "-":
            return None
        try:
            return os.stat(self.upload).st_size
        except OSError as error:
            reason = error.strerror or str(error)
            raise CommandError(f"cannot read {self.upload}: {reason}", READ_ERROR) from None

    @property
    def replayable(self) -> bool:
        """False for stdin, which is read once."""
        return self.upload != "-"

    def content(self) -> bytes | AsyncIterator[bytes]:
        """The body to send: bytes, or the upload's chunks as they are read."""
        if self.data is not None:
            return self.data
        assert self.upload is not None
        return _read_upload(self.upload)


async def _read_upload(path: str) -> AsyncIterator[bytes]:
    if path == "-":
        stdin = anyio.wrap_file(sys.stdin.buffer)
        while chunk := await stdin.read(_CHUNK_SIZE):
            yield chunk
        return
    try:
        file = await anyio.open_file(path, "rb")
    except OSError as error:
        raise CommandError(f"cannot read {path}: {error.strerror or error}", READ_ERROR) from None
    async with file:
        while chunk := await file.read(_CHUNK_SIZE):
            yield chunk
