"""Cookies for :meth:`ClientSession.request`: the standard library's :mod:`http.cookiejar`.

Each session keeps a :class:`~http.cookiejar.CookieJar` (its
:attr:`ClientSession.cookies`; :attr:`Client.cookies` shares one between
sessions). Before each request, redirects included, the jar adds the
``Cookie`` field its cookies call for (domain, path, ``Secure``, expiry:
RFC 6265 as :mod:`http.cookiejar` applies it), unless the request has one
already; after each response it takes the ``Set-Cookie`` fields.

The jar speaks :mod:`urllib.request`'s objects, so each request is shown
to it as a :class:`urllib.request.Request` and each response's fields as
an :class:`email.message.Message`, as httpx does.
"""

from __future__ import annotations

import email.message
import urllib.request
from http.client import HTTPResponse
from http.cookiejar import CookieJar
from typing import cast

from ._models import Request, Response


class _ResponseInfo:
    """What :meth:`CookieJar.extract_cookies` reads of a response: ``info()``."""

    def __init__(self, response: Response) -> None:
        self._message = email.message.Message()
        for name, value in response.headers:
            if name in (b"set-cookie", b"set-cookie2"):
                self._message[name.decode("latin-1")] = value.decode("latin-1")

    def info(self) -> email.message.Message:
        return self._message


def add_cookies(jar: CookieJar, request: Request) -> bytes | None:
    """Add the ``Cookie`` field ``jar`` has for ``request`` (unless it has one); return it."""
    if any(name == b"cookie" for name, _ in request.headers):
        return None
    shown = urllib.request.Request(str(request.url), method=request.method)
    jar.add_cookie_header(shown)
    value = shown.get_header("Cookie")
    if value is None:
        return None
    raw = value.encode("latin-1")
    request.headers.append((b"cookie", raw))
    return raw


def take_cookies(jar: CookieJar, request: Request, response: Response) -> None:
    """Store in ``jar`` the cookies ``response`` sets."""
    if all(name != b"set-cookie" for name, _ in response.headers):
        return
    shown = urllib.request.Request(str(request.url), method=request.method)
    jar.extract_cookies(cast("HTTPResponse", _ResponseInfo(response)), shown)
