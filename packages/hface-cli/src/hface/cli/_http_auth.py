"""``hface client -u USER:PASSWORD``: Basic (RFC 7617) and, with ``--digest``, Digest (RFC 7616).

Basic credentials go with the first request. Digest needs the server's
challenge: the first request goes without credentials, and a 401 whose
``WWW-Authenticate`` offers Digest is answered by the same request with
an ``Authorization`` computed from it (MD5, SHA-256 and their ``-sess``
variants, ``qop=auth``), once, as curl does (curl counts that second
request in ``%{num_redirects}``).

The Digest computation is the client library's (:class:`hface.client.DigestAuth`);
this module keeps curl's side: ``-u``, ``--digest``, one answer per request.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from hface.client import DigestAuth


@dataclass(frozen=True, kw_only=True)
class Credentials:
    """``-u USER:PASSWORD``, and whether ``--digest`` was asked for."""

    user: str
    password: str
    digest: bool = False

    def basic(self) -> bytes:
        """The ``Authorization`` value for Basic (UTF-8, as curl sends what it is given)."""
        token = base64.b64encode(f"{self.user}:{self.password}".encode())
        return b"Basic " + token


def parse_challenges(value: str) -> dict[str, dict[str, str]]:
    """The parameters of each scheme in a ``WWW-Authenticate`` value, by lower-case scheme.

    The library's parsing (:meth:`hface.client.DigestAuth.parse_challenges`).
    """
    return DigestAuth.parse_challenges(value)


def digest_authorization(
    credentials: Credentials,
    challenge: dict[str, str],
    *,
    method: str,
    uri: str,
    cnonce: str | None = None,
) -> bytes | None:
    """The ``Authorization`` value answering a Digest challenge, or None if it cannot.

    The library's computation (:meth:`hface.client.DigestAuth.authorization`).
    """
    digest = DigestAuth(credentials.user, credentials.password)
    return digest.authorization(challenge, method=method, uri=uri, cnonce=cnonce)
