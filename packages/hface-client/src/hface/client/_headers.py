"""``Headers``: header fields as a case-insensitive multi-mapping.

The wire form stays what :class:`~hface.client.Request` and
:class:`~hface.client.Response` hold: a list of ``(name, value)`` byte
pairs, names lower-case. :class:`Headers` wraps such a list (its
:attr:`~Headers.raw`) and reads it as a mapping from ``str`` names, any
case, to ``str`` values (Latin-1, as HTTP field values are octets). A name
given several times keeps every value: ``headers["name"]`` joins them with
``", "`` (RFC 9110 §5.3), :meth:`~Headers.get_list` gives them one by one.

What callers pass as headers (:data:`HeadersInput`) may be a
:class:`Headers`, any mapping (a ``dict``), or a sequence of pairs, of
``str`` or ``bytes``; :func:`header_pairs` turns each into pairs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, MutableMapping, Sequence
from typing import TypeAlias

from hface.common import HeaderType

#: What the client accepts as header fields.
HeadersInput: TypeAlias = (
    "Headers | Mapping[str, str] | Mapping[bytes, bytes]"
    " | Sequence[tuple[str | bytes, str | bytes]]"
)


def _name(name: str | bytes) -> bytes:
    return (name.encode("ascii") if isinstance(name, str) else bytes(name)).lower()


def _value(value: str | bytes) -> bytes:
    return value.encode("latin-1") if isinstance(value, str) else bytes(value)


def header_pairs(headers: object) -> Iterable[tuple[str | bytes, str | bytes]]:
    """The ``(name, value)`` pairs of any :data:`HeadersInput` (not yet checked)."""
    if isinstance(headers, Headers):
        return headers.raw
    if isinstance(headers, Mapping):
        return headers.items()
    if isinstance(headers, Iterable) and not isinstance(headers, str | bytes):
        return headers
    raise TypeError(f"headers must be a mapping or pairs, not {type(headers).__name__}")


class Headers(MutableMapping[str, str]):
    """Header fields: a case-insensitive mapping where a name may come several times.

    :param headers: the fields to start with (a mapping or ``(name, value)``
        pairs, ``str`` or ``bytes``).

    >>> headers = Headers({"Accept": "text/html"})
    >>> headers.add("accept", "application/json")
    >>> headers["ACCEPT"]
    'text/html, application/json'
    >>> headers.get_list("accept")
    ['text/html', 'application/json']
    """

    __slots__ = ("_raw",)

    def __init__(self, headers: HeadersInput | None = None) -> None:
        self._raw: list[HeaderType] = []
        if headers is not None:
            for name, value in header_pairs(headers):
                self._raw.append((_name(name), _value(value)))

    @property
    def raw(self) -> list[HeaderType]:
        """The fields as sent or received: byte pairs, names lower-case, in order."""
        return self._raw

    def __getitem__(self, name: str) -> str:
        values = self.get_list(name)
        if not values:
            raise KeyError(name)
        return ", ".join(values)

    def __setitem__(self, name: str, value: str) -> None:
        """Replace every field ``name`` with one of ``value``."""
        raw_name = _name(name)
        self._raw = [(key, old) for key, old in self._raw if key != raw_name]
        self._raw.append((raw_name, _value(value)))

    def __delitem__(self, name: str) -> None:
        raw_name = _name(name)
        kept = [(key, value) for key, value in self._raw if key != raw_name]
        if len(kept) == len(self._raw):
            raise KeyError(name)
        self._raw = kept

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(key.decode("latin-1") for key, _ in self._raw))

    def __len__(self) -> int:
        return len({key for key, _ in self._raw})

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str | bytes):
            return False
        raw_name = _name(name)
        return any(key == raw_name for key, _ in self._raw)

    def __repr__(self) -> str:
        return f"Headers({self.multi_items()!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return sorted(self._raw) == sorted(other._raw)
        if isinstance(other, Mapping):
            return self == Headers(other)
        return NotImplemented

    def get_list(self, name: str) -> list[str]:
        """Every value of the field ``name`` (any case), in order; ``[]`` if none."""
        raw_name = _name(name)
        return [value.decode("latin-1") for key, value in self._raw if key == raw_name]

    def add(self, name: str, value: str) -> None:
        """Add a field ``name`` after those already there (``set-cookie``, ``accept``...)."""
        self._raw.append((_name(name), _value(value)))

    def multi_items(self) -> list[tuple[str, str]]:
        """Every ``(name, value)``, names lower-case, repeated names repeated."""
        return [(key.decode("latin-1"), value.decode("latin-1")) for key, value in self._raw]
