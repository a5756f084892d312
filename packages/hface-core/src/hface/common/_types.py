from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

#: A network address: ``(host, port)``. IPv6 hosts are given without brackets.
AddressType: TypeAlias = tuple[str, int]

#: A UDP datagram with its peer: ``(payload, address)``.
DatagramType: TypeAlias = tuple[bytes, AddressType]

#: One header field: ``(name, value)``, names lower-case on every version.
HeaderType: TypeAlias = tuple[bytes, bytes]

#: A header block in the HTTP/2 style, pseudo-headers (``:method``, ...) first.
HeadersType: TypeAlias = Sequence[HeaderType]
