"""Authentication: Basic (RFC 7617) and Digest (RFC 7616).

:class:`BasicAuth` credentials go with every request to the origin of the
first. :class:`DigestAuth` needs the server's challenge: the request goes
without credentials, and a 401 whose ``WWW-Authenticate`` offers Digest is
answered once by the same request with an ``Authorization`` computed from
it (MD5, SHA-256 and their ``-sess`` variants, ``qop=auth``; RFC 2069's
form when the server offers no ``qop``). ``hface client -u``/``--digest``
uses the same computation.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, TypeAlias

from ._models import Request, Response

#: Digest algorithms and their hash functions (RFC 7616 §3.2).
_HASHES: Final[dict[str, Callable[[bytes], str]]] = {
    "MD5": lambda data: hashlib.md5(data).hexdigest(),
    "SHA-256": lambda data: hashlib.sha256(data).hexdigest(),
}

#: ``name=value`` or ``name="quoted value"`` in a challenge.
_PARAMETER: Final = re.compile(
    r'\s*([!#$%&\'*+\-.^_`|~0-9A-Za-z]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,]*)'
)


@dataclass(frozen=True)
class BasicAuth:
    """HTTP Basic authentication (RFC 7617): the credentials go with every request.

    Sent to the origin of the first request only, never to another one a
    redirect leads to. A ``(user, password)`` pair given as ``auth=`` is this.
    """

    #: The user name.
    user: str
    #: The password.
    password: str

    @property
    def authorization(self) -> bytes:
        """The ``Authorization`` value (UTF-8, RFC 7617 §2.1)."""
        token = base64.b64encode(f"{self.user}:{self.password}".encode())
        return b"Basic " + token


@dataclass(frozen=True)
class DigestAuth:
    """HTTP Digest authentication (RFC 7616): MD5 or SHA-256, ``qop=auth``.

    The first request goes without credentials; a 401 with a Digest
    challenge is answered once with them, by the same request (whose body,
    if any, must be ``bytes``). Only for the origin of the first request.
    """

    #: The user name.
    user: str
    #: The password.
    password: str

    @staticmethod
    def parse_challenges(value: str) -> dict[str, dict[str, str]]:
        """The parameters of each scheme in a ``WWW-Authenticate`` value, by lower-case scheme.

        Only one challenge per scheme is kept (the first); token68 forms are skipped.
        """
        return _parse_challenges(value)

    def authorization(
        self, challenge: Mapping[str, str], *, method: str, uri: str, cnonce: str | None = None
    ) -> bytes | None:
        """The ``Authorization`` value answering a Digest challenge, or None if it cannot.

        :param challenge: the parameters of the Digest challenge
            (``parse_challenges(value)["digest"]``).
        :param uri: the request target, as sent (path and query).
        :param cnonce: the client nonce; a random one by default.
        """
        return _digest(self, challenge, method=method, uri=uri, cnonce=cnonce)


#: An ``auth=`` argument.
AuthInput: TypeAlias = "BasicAuth | DigestAuth | tuple[str, str] | None"


def auth_of(value: AuthInput) -> BasicAuth | DigestAuth | None:
    """The authentication an ``auth=`` argument asks for."""
    if value is None or isinstance(value, BasicAuth | DigestAuth):
        return value
    pair: object = value  # from users: any type may come
    if isinstance(pair, tuple) and len(pair) == 2:
        return BasicAuth(str(pair[0]), str(pair[1]))
    raise TypeError(
        f"auth must be a BasicAuth, a DigestAuth or a (user, password) pair, not {value!r}"
    )


def _parse_challenges(value: str) -> dict[str, dict[str, str]]:
    """The parameters of each scheme in a ``WWW-Authenticate`` value, by lower-case scheme.

    Only one challenge per scheme is kept (the first); token68 forms are skipped.
    """
    challenges: dict[str, dict[str, str]] = {}
    scheme: str | None = None
    position = 0
    while position < len(value):
        match = _PARAMETER.match(value, position)
        if match is not None and scheme is not None:
            raw = match.group(2).strip()
            if raw.startswith('"'):
                raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
            challenges[scheme].setdefault(match.group(1).lower(), raw)
            position = match.end()
        else:
            word = re.match(r"\s*([^\s,]+)\s*", value[position:])
            if word is None:
                position += 1
                continue
            position += word.end()
            scheme = word.group(1).lower()
            if scheme in challenges:
                scheme = None  # a second challenge of a scheme: its parameters are skipped
            else:
                challenges[scheme] = {}
        while position < len(value) and value[position] in ", ":
            position += 1
    return {name: params for name, params in challenges.items() if name}


def _digest(
    credentials: DigestAuth,
    challenge: Mapping[str, str],
    *,
    method: str,
    uri: str,
    cnonce: str | None = None,
) -> bytes | None:
    """The ``Authorization`` value answering a Digest challenge, or None if it cannot.

    :param challenge: the parameters of the Digest challenge (:func:`parse_challenges`).
    :param uri: the request target, as sent (path and query).
    :param cnonce: the client nonce; a random one by default.
    """
    algorithm = challenge.get("algorithm", "MD5")
    session = algorithm.upper().endswith("-SESS")
    hash_ = _HASHES.get(algorithm.upper().removesuffix("-SESS"))
    realm, nonce = challenge.get("realm"), challenge.get("nonce")
    if hash_ is None or realm is None or nonce is None:
        return None
    qops = [qop.strip() for qop in challenge.get("qop", "").split(",") if qop.strip()]
    if qops and "auth" not in qops:
        return None  # auth-int only
    cnonce = cnonce or os.urandom(16).hex()
    nc = "00000001"
    ha1 = hash_(f"{credentials.user}:{realm}:{credentials.password}".encode())
    if session:
        ha1 = hash_(f"{ha1}:{nonce}:{cnonce}".encode())
    ha2 = hash_(f"{method}:{uri}".encode())
    if qops:
        response = hash_(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}".encode())
    else:
        response = hash_(f"{ha1}:{nonce}:{ha2}".encode())  # RFC 2069
    fields = [
        f'username="{_quote(credentials.user)}"',
        f'realm="{_quote(realm)}"',
        f'nonce="{_quote(nonce)}"',
        f'uri="{_quote(uri)}"',
    ]
    if qops:
        fields += [f'cnonce="{cnonce}"', f"nc={nc}", "qop=auth"]
    fields.append(f'response="{response}"')
    if "opaque" in challenge:
        fields.append(f'opaque="{_quote(challenge["opaque"])}"')
    if "algorithm" in challenge:
        fields.append(f"algorithm={algorithm}")
    return ("Digest " + ", ".join(fields)).encode()


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def authorize(request: Request, value: bytes) -> None:
    """Add ``Authorization: value`` to ``request`` unless it has one."""
    if all(name != b"authorization" for name, _ in request.headers):
        request.headers.append((b"authorization", value))


def digest_answer(request: Request, response: Response, credentials: DigestAuth) -> bytes | None:
    """The ``Authorization`` answering ``response``'s Digest challenge, if it is one to answer.

    Once per request: not if it already carries credentials, nor if its
    body cannot be sent again.
    """
    if response.status != 401 or not isinstance(request.content, bytes):
        return None
    if any(name == b"authorization" for name, _ in request.headers):
        return None
    values = [value for name, value in response.headers if name == b"www-authenticate"]
    challenge = DigestAuth.parse_challenges(b", ".join(values).decode("latin-1")).get("digest")
    if challenge is None:
        return None
    return credentials.authorization(challenge, method=request.method, uri=request.url.path)
