"""A site to run curl and ``hface client`` against side by side: nginx in front of an ASGI app.

nginx (Debian's) serves TLS on one port of 127.0.0.1, HTTP/1.1 and HTTP/2 by
ALPN (and the same site on a TLS port without HTTP/2, and in cleartext on
a third), and does what nginx does itself: static files, gzip, Basic auth,
redirects with ``return``. The rest goes to :func:`app`, an ASGI app that
hface's own server runs (in a thread of the test process) on a second port:

- ``/echo...``: the request as the app saw it, as text: ``METHOD /path``,
  then the header fields nginx passed on (``name: value``, sorted), a blank
  line, and the body;
- ``/status/N``: status N with a body of ``status N``;
- ``/redirect/N``: a chain of N redirects (302) ending at ``/echo/end``;
  ``/redirect-to?status=S&url=U``: one redirect (S, 302 by default) to U;
- ``/cookies/set?name=value...``: sets each cookie (``Path=/``),
  ``/cookies/set-and-redirect?...``: the same, and a redirect to
  ``/cookies/show``, which shows the ``Cookie`` field received;
- ``/digest``: Digest authentication (RFC 7616, MD5, qop=auth) for user
  ``alice`` with password ``secret``;
- ``/flaky/KEY?fail=N&status=S``: status S (503) with ``Retry-After: 0``
  for the first N requests with that KEY, then 200 ``ok after N``;
- ``/slow``: an answer in an hour;
- ``/json``: the request's Content-Type and Accept, then its body.

nginx itself serves ``/static/`` (files written by :func:`curl_site`),
``/basic/`` (Basic auth: ``alice:secret``), ``/gzip/`` (gzip when asked),
``/nginx-redirect`` (302 to ``/static/hello.txt``) and ``/nginx-503``.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import secrets
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, quote

import anyio
import anyio.from_thread

from hface.server import ASGIServer, Endpoint
from tests.helpers.certs import TLSFiles
from tests.helpers.peers import find_peer, free_port, spawn, wait_until_listening

Scope = dict[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: The credentials of ``/basic/`` and ``/digest``.
USER: Final = "alice"
PASSWORD: Final = "secret"
#: The Digest realm of ``/digest``.
REALM: Final = "hface"

#: Header fields the echo leaves out: nginx's own, for its upstream connection.
_NOT_ECHOED: Final = frozenset({b"connection"})

#: Requests per ``/flaky/KEY`` so far.
_flaky_counts: dict[str, int] = {}
#: Nonces ``/digest`` has issued.
_nonces: set[str] = set()


async def _read_body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += bytes(message.get("body", b""))
        if not message.get("more_body"):
            return body


async def _answer(
    send: Send,
    status: int,
    body: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    content_type: bytes = b"text/plain",
) -> None:
    fields = [(b"content-type", content_type), *(headers or [])]
    await send({"type": "http.response.start", "status": status, "headers": fields})
    await send({"type": "http.response.body", "body": body})


def _digest_challenge() -> bytes:
    nonce = secrets.token_hex(16)
    _nonces.add(nonce)
    return f'Digest realm="{REALM}", qop="auth", algorithm=MD5, nonce="{nonce}"'.encode()


def _digest_valid(authorization: str, method: str) -> bool:
    scheme, _, rest = authorization.partition(" ")
    if scheme.lower() != "digest":
        return False
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, _, value = part.strip().partition("=")
        fields[name.lower()] = value.strip().strip('"')
    if fields.get("username") != USER or fields.get("nonce") not in _nonces:
        return False

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    ha1 = md5(f"{USER}:{REALM}:{PASSWORD}")
    ha2 = md5(f"{method}:{fields.get('uri', '')}")
    expected = md5(
        f"{ha1}:{fields['nonce']}:{fields.get('nc', '')}:{fields.get('cnonce', '')}:auth:{ha2}"
    )
    return fields.get("response") == expected


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The dynamic routes of the site (see the module docstring)."""
    if scope["type"] != "http":
        return
    path: str = scope["path"]
    query = dict(parse_qsl(scope["query_string"].decode(), keep_blank_values=True))
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    method: str = scope["method"]
    body = await _read_body(receive)
    if path.startswith("/echo"):
        target = scope["raw_path"] + (
            b"?" + scope["query_string"] if scope["query_string"] else b""
        )
        lines = [f"{method} ".encode() + target]
        lines += sorted(name + b": " + value for name, value in headers if name not in _NOT_ECHOED)
        await _answer(send, 200, b"\n".join(lines) + b"\n\n" + body)
    elif path.startswith("/status/"):
        status = int(path.removeprefix("/status/"))
        await _answer(send, status, f"status {status}\n".encode())
    elif path.startswith("/redirect/"):
        left = int(path.removeprefix("/redirect/"))
        location = b"/echo/end" if left <= 1 else f"/redirect/{left - 1}".encode()
        await _answer(send, 302, b"redirecting\n", [(b"location", location)])
    elif path == "/redirect-to":
        status = int(query.get("status", "302"))
        location = query["url"].encode()
        await _answer(send, status, b"redirecting\n", [(b"location", location)])
    elif path in ("/cookies/set", "/cookies/set-and-redirect"):
        cookies = [
            (b"set-cookie", f"{name}={quote(value)}; Path=/".encode())
            for name, value in query.items()
        ]
        if path == "/cookies/set":
            await _answer(send, 200, b"cookies set\n", cookies)
        else:
            await _answer(send, 302, b"", [*cookies, (b"location", b"/cookies/show")])
    elif path == "/cookies/show":
        cookie = b"; ".join(value for name, value in headers if name == b"cookie")
        await _answer(send, 200, b"cookie: " + cookie + b"\n")
    elif path == "/digest":
        authorization = dict(headers).get(b"authorization", b"").decode()
        if _digest_valid(authorization, method):
            await _answer(send, 200, b"digest ok\n")
        else:
            challenge = [(b"www-authenticate", _digest_challenge())]
            await _answer(send, 401, b"who are you?\n", challenge)
    elif path.startswith("/flaky/"):
        key = path.removeprefix("/flaky/")
        count = _flaky_counts[key] = _flaky_counts.get(key, 0) + 1
        fail = int(query.get("fail", "1"))
        if count <= fail:
            status = int(query.get("status", "503"))
            await _answer(send, status, b"not yet\n", [(b"retry-after", b"0")])
        else:
            await _answer(send, 200, f"ok after {fail}\n".encode())
    elif path == "/slow":
        await anyio.sleep(3600)
    elif path == "/json":
        fields = dict(headers)
        lines = [
            b"content-type: " + fields.get(b"content-type", b""),
            b"accept: " + fields.get(b"accept", b""),
        ]
        await _answer(send, 200, b"\n".join(lines) + b"\n\n" + body)
    else:
        await _answer(send, 404, b"no such route\n")


def _nginx_config(
    directory: Path, *, ports: tuple[int, int, int], backend: int, tls_files: TLSFiles
) -> str:
    """nginx's configuration: everything under ``directory``, nothing outside it."""
    # As root nginx runs its worker as "nobody" unless told otherwise, and
    # nobody cannot read pytest's private temporary directories.
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};\n" if os.geteuid() == 0 else ""
    temp = directory / "temp"
    port, http1_port, cleartext_port = ports
    return f"""
{user}daemon off;
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    types {{ text/plain txt; text/html html; application/octet-stream bin; }}
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port} ssl http2;
        listen 127.0.0.1:{http1_port} ssl;
        listen 127.0.0.1:{cleartext_port};
        server_name localhost;
        ssl_certificate {tls_files.server_cert_file};
        ssl_certificate_key {tls_files.server_key_file};
        root {directory}/www;
        location /static/ {{ }}
        location /basic/ {{
            auth_basic "{REALM}";
            auth_basic_user_file {directory}/htpasswd;
        }}
        location /gzip/ {{
            gzip on;
            gzip_min_length 1;
            gzip_types text/plain;
        }}
        location = /nginx-redirect {{ return 302 /static/hello.txt; }}
        location = /nginx-503 {{ return 503 "busy\\n"; }}
        location / {{
            proxy_pass http://127.0.0.1:{backend};
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_request_buffering off;
            proxy_buffering off;
            proxy_read_timeout 3600s;
        }}
    }}
}}
"""


#: The files under ``/static/``, ``/basic/`` and ``/gzip/``.
STATIC_FILES: Final = {
    "static/hello.txt": b"hello from nginx\n",
    "static/data.bin": bytes(range(256)) * 64,
    "basic/secret.txt": b"the basic secret\n",
    "gzip/text.txt": b"compress me, compress me, compress me!\n" * 200,
}


@dataclass(frozen=True, kw_only=True)
class Site:
    """A running :func:`curl_site`."""

    #: ``https://localhost:PORT``: nginx, HTTP/1.1 and HTTP/2.
    base: str
    #: nginx's port.
    port: int
    #: ``https://localhost:PORT``: the same site, HTTP/1.1 only (ALPN offers no h2).
    http1_base: str
    #: ``http://localhost:PORT``: the same site in cleartext, HTTP/1.1.
    cleartext_base: str
    #: The CA that trusts nginx's certificate.
    cafile: str


@contextmanager
def curl_site(directory: Path, tls_files: TLSFiles) -> Iterator[Site]:
    """Run :func:`app` and nginx in front of it, files under ``directory``.

    Skips the test where nginx is not installed (Debian package nginx).
    """
    import pytest

    executable = find_peer("nginx")
    if executable is None:
        pytest.skip("nginx is not installed (Debian package nginx)")
    for name, content in STATIC_FILES.items():
        path = directory / "www" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    (directory / "temp").mkdir(exist_ok=True)
    # nginx reads {PLAIN} passwords (and hashed ones); the test needs no hashing.
    (directory / "htpasswd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
    server = ASGIServer(app)
    server.handle_signals = False
    server.access_log = False
    server.graceful_timeout = 0.5  # /slow never ends: do not wait for it at the end
    backend, port, http1_port, cleartext_port = (free_port() for _ in range(4))
    config = directory / "nginx.conf"
    config.write_text(
        _nginx_config(
            directory,
            ports=(port, http1_port, cleartext_port),
            backend=backend,
            tls_files=tls_files,
        )
    )
    log_file = directory / "nginx.log"
    with anyio.from_thread.start_blocking_portal() as portal:
        future, _ = portal.start_task(server.run, [Endpoint("http", "127.0.0.1", backend)])
        try:
            with spawn(
                [executable, "-c", str(config), "-p", str(directory)], log_file=log_file
            ) as process:
                portal.call(
                    lambda: wait_until_listening(
                        process, host="127.0.0.1", port=port, transport="tcp", log_file=log_file
                    )
                )
                yield Site(
                    base=f"https://localhost:{port}",
                    port=port,
                    http1_base=f"https://localhost:{http1_port}",
                    cleartext_base=f"http://localhost:{cleartext_port}",
                    cafile=tls_files.ca_file,
                )
        finally:
            future.cancel()
