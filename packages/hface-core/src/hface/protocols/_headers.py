"""Header rules every HTTP version shares."""

from __future__ import annotations

from typing import Final

#: Fields that belong to one HTTP/1.1 connection and that HTTP/2 and HTTP/3
#: forbid (RFC 9113 §8.2.2, RFC 9114 §4.2). ``te`` is allowed there only as
#: ``te: trailers``, so each version handles it beside this list.
CONNECTION_SPECIFIC_HEADERS: Final = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)
