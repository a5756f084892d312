"""Decompressing response bodies as they stream: ``Content-Encoding`` undone.

:meth:`ClientSession.request`, its shortcuts and ``stream(method, url)``
send ``Accept-Encoding`` with what can be decoded here (:func:`accept_encoding`):
``deflate`` and ``gzip`` always (:mod:`zlib`), ``br`` where the ``brotli``
(or ``brotlicffi``) package is installed (``hface-client[brotli]``),
``zstd`` where ``zstandard`` is (``hface-client[zstd]``; or Python's own
``compression.zstd``, 3.14). A response's ``Content-Encoding`` is undone
coding by coding, the last applied first (RFC 9110 §8.4), chunk by chunk
as the body arrives (:func:`decoded`).

Against decompression bombs, the decoded body may grow to
``max_ratio`` times the encoded bytes received (past its first MiB): a
server must send a body's worth of bytes for each hundred-odd decoded.
A coding that cannot be undone, data that does not decode and a body
past the ratio end the response with :exc:`~.errors.DecodingError`.
(``dispatch`` and ``stream(request)`` decode nothing: what the server
sent is what they give.)
"""

from __future__ import annotations

import functools
import importlib
import zlib
from collections.abc import AsyncGenerator, Callable
from typing import Any, Final, Protocol, cast

from . import errors


class _Decoder(Protocol):
    def decompress(self, data: bytes) -> bytes: ...


def _module(*names: str) -> Any:
    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


class _Deflate:
    """``deflate`` is zlib's format (RFC 9110 §8.4.1.2), though some send raw deflate."""

    def __init__(self) -> None:
        self._inner: Any = None
        self._first = b""

    def decompress(self, data: bytes) -> bytes:
        if self._inner is None:
            self._first += data
            if len(self._first) < 2:
                return b""
            data, self._first = self._first, b""
            zlib_header = (data[0] & 0x0F) == 8 and (data[0] << 8 | data[1]) % 31 == 0
            self._inner = zlib.decompressobj(zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS)
        result: bytes = self._inner.decompress(data)
        return result


def _gzip() -> _Decoder:
    return zlib.decompressobj(16 + zlib.MAX_WBITS)


def _brotli() -> _Decoder | None:
    module = _module("brotli", "brotlicffi")
    if module is None:
        return None
    decoder: Any = module.Decompressor()
    if hasattr(decoder, "decompress"):
        return cast("_Decoder", decoder)
    return _Process(decoder)  # Google's brotli (and older brotlicffi) call it process()


class _Process:
    """A decoder whose method is ``process``, as ``decompress``."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def decompress(self, data: bytes) -> bytes:
        result: bytes = self._inner.process(data)
        return result


def _zstd() -> _Decoder | None:
    standard = _module("compression.zstd")
    if standard is not None:
        return cast("_Decoder", standard.ZstdDecompressor())  # Python 3.14
    module = _module("zstandard")
    if module is None:
        return None
    return cast("_Decoder", module.ZstdDecompressor().decompressobj())


#: Each coding's decoder, made on demand; None where its package is missing.
_DECODERS: dict[str, Callable[[], _Decoder | None]] = {
    "deflate": _Deflate,
    "gzip": _gzip,
    "x-gzip": _gzip,
    "br": _brotli,
    "zstd": _zstd,
}


@functools.cache
def accept_encoding() -> bytes:
    """The ``Accept-Encoding`` value: the codings this installation decodes."""
    return ", ".join(
        name for name in ("deflate", "gzip", "br", "zstd") if _available(name)
    ).encode()


def _available(name: str) -> bool:
    if name in ("deflate", "gzip"):
        return True
    if name == "br":
        return _module("brotli", "brotlicffi") is not None
    return _module("compression.zstd", "zstandard") is not None


class BodyDecoder:
    """Undoes a response's ``Content-Encoding``, chunk by chunk.

    For a body read with :meth:`ClientSession.dispatch
    <hface.client.ClientSession.dispatch>` or ``stream(request)``, which
    decode nothing (``hface client --compressed`` uses it so).

    :param content_encoding: the field's value(s), joined with commas.
    :raises hface.client.errors.DecodingError: if a coding is not one this
        installation decodes (its ``origin`` is empty).
    """

    def __init__(self, content_encoding: str) -> None:
        codings = [coding.strip().lower() for coding in content_encoding.split(",")]
        self._decoders: list[_Decoder] = []
        for coding in reversed([coding for coding in codings if coding]):
            if coding == "identity":
                continue
            make = _DECODERS.get(coding)
            decoder = make() if make is not None else None
            if decoder is None:
                raise errors.DecodingError(f"unrecognized content encoding {coding!r}", origin="")
            self._decoders.append(decoder)

    def decode(self, data: bytes) -> bytes:
        """Decode the next chunk; the result may be empty.

        :raises hface.client.errors.DecodingError: if the data does not
            decode (its ``origin`` is empty).
        """
        try:
            for decoder in self._decoders:
                data = decoder.decompress(data)
        except Exception as error:  # each library has its own error class
            message = f"the response body does not decode: {error}"
            raise errors.DecodingError(message, origin="") from None
        return data


#: Decoded bytes allowed before the ratio applies.
_RATIO_FLOOR: Final = 1024 * 1024


async def decoded(
    body: AsyncGenerator[bytes, None],
    content_encoding: str,
    *,
    max_ratio: float | None,
    origin: str,
) -> AsyncGenerator[bytes, None]:
    """``body`` with ``content_encoding`` undone, chunk by chunk.

    :raises hface.client.errors.DecodingError: an unknown coding, corrupt
        data, or more than ``max_ratio`` decoded bytes per encoded byte.
    """
    try:
        decoder = BodyDecoder(content_encoding)
        received = produced = 0
        async for chunk in body:
            received += len(chunk)
            data = decoder.decode(chunk)
            produced += len(data)
            if max_ratio is not None and produced > max(_RATIO_FLOOR, max_ratio * received):
                raise errors.DecodingError(
                    f"the response body from {origin} decodes to more than {max_ratio:g} "
                    f"times its size ({produced} bytes of {received}): refused as a bomb",
                    origin=origin,
                )
            if data:
                yield data
    except errors.DecodingError as exc:
        if exc.origin:
            raise
        raise errors.DecodingError(f"{exc} (from {origin})", origin=origin) from None
    finally:
        await body.aclose()
