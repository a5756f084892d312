"""An ASGI application for the client's conveniences (and the six-task scripts).

- ``/get``: the request as JSON: method, path, query (parsed), headers
  (lower-case names, each value list), body (text).
- ``/echo`` and ``/post``: the same, for any method.
- ``/redirect/STATUS?to=URL``: a ``STATUS`` redirect to ``URL`` (default ``/get``).
- ``/redirect-loop``: a 302 to itself, forever.
- ``/basic-auth/USER/PASSWORD``: 200 with ``{"user": USER}`` for those Basic
  credentials, else 401 with ``WWW-Authenticate: Basic``.
- ``/digest-auth/ALGORITHM/USER/PASSWORD``: 200 with ``{"user": USER}``
  for a right RFC 7616 answer (``qop=auth``), else 401 with a Basic and a
  Digest challenge (two ``WWW-Authenticate`` fields).
- ``/cookies/set?NAME=VALUE...``: sets each cookie (``Path=/``), answers as ``/get``;
  ``/cookies/redirect?NAME=VALUE``: sets it and redirects (302) to ``/get``.
- ``/status/N``: an empty response of status N.
- ``/latin1``: ``café`` in ISO-8859-1, said by ``Content-Type``.
- ``/bytes/N``: N bytes (``pattern``), as one ``Content-Length`` body.
- ``/delay/MS``: ``/get`` after MS milliseconds.
- ``/compressed/CODINGS``: ``pattern(100000)`` encoded by each coding of
  CODINGS (``gzip,deflate``...), in order, with ``Content-Encoding`` saying so.
- ``/bomb``: 64 MiB of zeros, gzip-encoded (about 64 KiB).
- ``/corrupt``: ``Content-Encoding: gzip`` on bytes that are not.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import importlib
import json
import re
import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

import anyio

from .asgi_app import pattern

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def _encode(data: bytes, coding: str) -> bytes:
    if coding == "gzip":
        return gzip.compress(data)
    if coding == "deflate":
        return zlib.compress(data)
    if coding == "br":
        brotli: Any = importlib.import_module("brotli")  # optional
        return bytes(brotli.compress(data))
    if coding == "zstd":
        zstandard: Any = importlib.import_module("zstandard")  # optional
        return bytes(zstandard.ZstdCompressor().compress(data))
    raise ValueError(coding)


@functools.cache
def _bomb() -> bytes:
    return gzip.compress(bytes(64 * 1024 * 1024), compresslevel=9)


async def _answer(
    send: Send, status: int, body: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    fields = [*(headers or []), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": fields})
    await send({"type": "http.response.body", "body": body})


_DIGEST_HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


def _digest_ok(scope: Scope, algorithm: str, user: str, password: str) -> bool:
    """Whether the request's ``Authorization`` answers the challenge (computed here anew)."""
    fields = dict(scope["headers"])
    value = fields.get(b"authorization", b"").decode()
    if not value.startswith("Digest "):
        return False
    given = {key: a or b for key, a, b in re.findall(r'(\w+)=(?:"([^"]*)"|([^,\s]*))', value)}

    def digest(text: str) -> str:
        return _DIGEST_HASHES[algorithm](text.encode()).hexdigest()

    target = scope["raw_path"].decode() + (
        "?" + scope["query_string"].decode() if scope["query_string"] else ""
    )
    ha1 = digest(f"{user}:test:{password}")
    ha2 = digest(f"{scope['method']}:{target}")
    expected = digest(f"{ha1}:n0nce:{given.get('nc')}:{given.get('cnonce')}:auth:{ha2}")
    return (
        given.get("username") == user
        and given.get("uri") == target
        and given.get("qop") == "auth"
        and given.get("opaque") == "0paque"
        and given.get("response") == expected
    )


def _described(scope: Scope, body: bytes) -> bytes:
    headers: dict[str, list[str]] = {}
    for name, value in scope["headers"]:
        headers.setdefault(name.decode("latin-1"), []).append(value.decode("latin-1"))
    query = scope["query_string"].decode("latin-1")
    description = {
        "method": scope["method"],
        "path": scope["path"],
        "raw_path": scope["raw_path"].decode("latin-1"),
        "query": parse_qs(query, keep_blank_values=True),
        "headers": headers,
        "body": body.decode("utf-8", "replace"),
        "http_version": scope["http_version"],
    }
    return json.dumps(description).encode()


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    path: str = scope["path"]
    json_type = [(b"content-type", b"application/json")]
    if path.startswith("/delay/"):
        await anyio.sleep(int(path.removeprefix("/delay/")) / 1000)
        path = "/get"
    if path in ("/get", "/echo", "/post") or path.startswith("/anything"):
        await _answer(send, 200, _described(scope, body), json_type)
    elif path in ("/cookies/set", "/cookies/redirect"):
        cookies = [
            (b"set-cookie", f"{name}={values[0]}; Path=/".encode())
            for name, values in parse_qs(scope["query_string"].decode()).items()
        ]
        if path == "/cookies/set":
            await _answer(send, 200, _described(scope, body), json_type + cookies)
        else:
            await _answer(send, 302, b"", [(b"location", b"/get"), *cookies])
    elif path.startswith("/redirect/"):
        status = int(path.removeprefix("/redirect/"))
        target = parse_qs(scope["query_string"].decode()).get("to", ["/get"])[0]
        await _answer(send, status, b"moved", [(b"location", target.encode())])
    elif path == "/redirect-loop":
        await _answer(send, 302, b"", [(b"location", b"/redirect-loop")])
    elif path.startswith("/basic-auth/"):
        user, password = path.removeprefix("/basic-auth/").split("/", 1)
        expected = b"Basic " + base64.b64encode(f"{user}:{password}".encode())
        if any(tuple(field) == (b"authorization", expected) for field in scope["headers"]):
            await _answer(send, 200, json.dumps({"user": user}).encode(), json_type)
        else:
            await _answer(send, 401, b"", [(b"www-authenticate", b'Basic realm="test"')])
    elif path.startswith("/digest-auth/"):
        algorithm, user, password = path.removeprefix("/digest-auth/").split("/", 2)
        if _digest_ok(scope, algorithm, user, password):
            await _answer(send, 200, json.dumps({"user": user}).encode(), json_type)
        else:
            challenge = (
                f'Digest realm="test", qop="auth", nonce="n0nce", opaque="0paque", '
                f"algorithm={algorithm}"
            )
            challenges = [
                (b"www-authenticate", b'Basic realm="test"'),
                (b"www-authenticate", challenge.encode()),
            ]
            await _answer(send, 401, b"", challenges)
    elif path.startswith("/status/"):
        await _answer(send, int(path.removeprefix("/status/")))
    elif path == "/latin1":
        content_type = (b"content-type", b"text/plain; charset=ISO-8859-1")
        await _answer(send, 200, "café".encode("latin-1"), [content_type])
    elif path.startswith("/compressed/"):
        codings = path.removeprefix("/compressed/")
        body = pattern(100000)
        for coding in codings.split(","):
            body = _encode(body, coding)
        await _answer(send, 200, body, [(b"content-encoding", codings.encode())])
    elif path == "/bomb":
        await _answer(send, 200, _bomb(), [(b"content-encoding", b"gzip")])
    elif path == "/corrupt":
        await _answer(send, 200, b"not gzip at all", [(b"content-encoding", b"gzip")])
    elif path.startswith("/bytes/"):
        size = int(path.removeprefix("/bytes/"))
        await _answer(send, 200, pattern(size))
    else:
        await _answer(send, 404, b"not found")
