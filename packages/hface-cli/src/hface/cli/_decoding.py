"""``hface client --compressed``: ask for compressed responses and decompress them as they stream.

``Accept-Encoding`` lists what can be decoded here: ``deflate`` and
``gzip`` always (:mod:`zlib`), ``br`` where the ``brotli`` (or
``brotlicffi``) package is installed, ``zstd`` where ``zstandard`` is (or
Python's own :mod:`compression.zstd`, 3.14). A response's
``Content-Encoding`` is undone coding by coding, the last applied first
(RFC 9110 §8.4); a coding that cannot be undone is an error (curl's 61),
and so is data that does not decode.

Kept apart from the rest of the command so that it can give way to the
client library's decoding when it has its own.
"""

from __future__ import annotations

import importlib
import zlib
from collections.abc import Callable
from typing import Any, Protocol, cast


class DecodingError(Exception):
    """The body cannot be decoded (an unknown coding, or corrupt data)."""


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
    if not hasattr(decoder, "decompress"):  # brotlicffi's older name
        decoder.decompress = decoder.process
    return cast("_Decoder", decoder)


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

    :param content_encoding: the field's value(s), joined with commas.
    :raises DecodingError: if a coding is not one this installation decodes.
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
                raise DecodingError(f"unrecognized content encoding {coding!r}")
            self._decoders.append(decoder)

    def decode(self, data: bytes) -> bytes:
        """Decode the next chunk; the result may be empty.

        :raises DecodingError: if the data does not decode.
        """
        try:
            for decoder in self._decoders:
                data = decoder.decompress(data)
        except Exception as error:  # each library has its own error class
            raise DecodingError(f"the response body does not decode: {error}") from None
        return data
