"""One transfer of ``hface client``: a URL's requests, its redirects and retries, its output.

Theory of operation. A :class:`Transfer` makes one or more requests through
the command's :class:`~hface.client.ClientSession` (one session for every
URL, so that connections are reused, as curl reuses them), each with
:meth:`~hface.client.ClientSession.stream`, and writes what curl writes:

- **an attempt** is a chain of requests: the URL's, then, for a 401 that
  asks for Digest (``--digest``), the same one with credentials, and with
  ``-L`` one per redirect (300, 301, 302, 303, 307, 308 with a
  ``Location``), up to ``--max-redirs``. The heads of every response go to
  ``-D`` and, with ``-i``/``-I``, to the output; only the last body does
  (the others are read and dropped). Redirects follow curl's rules: a POST
  becomes a GET on 301 and 302 (unless ``--post301``/``--post302``), any
  method but HEAD on 303, the body going with it; 307 and 308 keep both;
  ``-X``'s method stays; credentials (``-u``, and ``-H`` ``Authorization``
  and ``Cookie`` fields) go to the first host only, unless
  ``--location-trusted``, and a ``-H Host`` field to the first host only.
- **retries** (``--retry N``) repeat the attempt as curl does (see
  :mod:`hface.cli._retries`); a file being written starts again, stdout
  keeps what it got.
- ``-m`` bounds each attempt; ``-f`` ends one on a status of 400 or more
  (exit 22) before anything of it is written (``--fail-with-body``: after).

The transfer records what ``-w`` reports in its :class:`TransferInfo`,
which :data:`~hface.cli._client_networking.TRANSFER` makes the connects of
its requests see.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import AsyncIterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urljoin, urlsplit

import anyio

from hface.client import URL, BodyDecoder, ClientSession, Origin, Request, Response, accept_encoding
from hface.client.errors import DecodingError
from hface.common import AddressType, HeaderType
from hface.errors import HTTPError

from ._client_networking import TRANSFER
from ._cookies import CookieJar
from ._errors import CommandError, exit_code, message_of, report
from ._http_auth import Credentials, digest_authorization, parse_challenges
from ._output import Output, format_head, write_stdout
from ._request_bodies import Body
from ._retries import Outcome, RetryPolicy, retry_after, retrying
from ._trace import Tracer
from ._write_out import TransferInfo, WriteOutFormat, write_out

#: What the client raises that a transfer reports with an exit code.
_CLIENT_ERRORS: Final = (
    HTTPError,
    TimeoutError,
    OSError,
    ValueError,
    NotImplementedError,
    anyio.BrokenResourceError,
    anyio.EndOfStream,
)

#: The statuses ``-L`` follows (with a ``Location``).
REDIRECTS: Final = frozenset({300, 301, 302, 303, 307, 308})
#: Bytes that may stay as they are in a URL from a ``Location`` (RFC 3986
#: unreserved and reserved characters, and ``%``); others are percent-encoded.
_URL_SAFE: Final = frozenset(
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~:/?#[]@!$&'()*+,;=%"
)
#: Fields that go to the first host only (with ``-L``, unless ``--location-trusted``).
_FIRST_HOST_ONLY: Final = frozenset({b"authorization", b"cookie"})


@dataclass(frozen=True, kw_only=True)
class Plan:
    """What every transfer of a command does, from its options."""

    #: ``-X``: the method of every request, whatever a redirect says.
    custom_method: str | None = None
    #: The method the options imply: GET, POST (``-d``, ``-F``), PUT (``-T``), HEAD (``-I``).
    method: str = "GET"
    #: Header fields: ``-H``'s and the defaults (``-A``, ``-e``, ``Accept``), no ``Host``.
    headers: tuple[HeaderType, ...] = ()
    #: ``-H 'Host: x'``: the ``:authority`` (HTTP/1.1: ``Host``) to the first host.
    authority: bytes | None = None
    body: Body | None = None
    #: The Content-Type the body goes with, unless ``-H`` gives one.
    body_type: bytes | None = None
    credentials: Credentials | None = None
    follow: bool = False
    #: ``--max-redirs``; -1: no limit.
    max_redirs: int = 50
    location_trusted: bool = False
    #: The statuses whose redirect keeps a POST a POST (``--post301``...).
    keep_post: frozenset[int] = frozenset()
    include: bool = False
    #: ``-I``: heads only.
    head: bool = False
    fail: bool = False
    fail_with_body: bool = False
    compressed: bool = False
    #: ``-b 'name=value'``: sent as it is.
    cookie_text: bytes | None = None
    #: ``-b FILE``, ``-c FILE``: the cookie engine.
    cookies: CookieJar | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_time: float | None = None
    #: ``-D``: where every head goes too.
    dump_header: Output | None = None
    write_out: WriteOutFormat | None = None
    #: Whether errors are written (not with ``-s``, unless ``-S``).
    show_errors: bool = True
    #: The proxy, to tell its failures apart (exit codes).
    proxy: Origin | None = None
    #: The ``(remote, local)`` addresses of the connections, by address asked
    #: for (``%{remote_ip}``...): :attr:`CurlNetworking.addresses`.
    addresses: Mapping[AddressType, tuple[AddressType, AddressType]] = field(default_factory=dict)
    tracer: Tracer | None = None


class CurlRequest(Request):
    """A :class:`~hface.client.Request` whose ``:authority`` may come from a ``-H Host`` field.

    curl sends ``-H 'Host: x'`` as the authority on HTTP/2 and HTTP/3 (on
    HTTP/1.1 the ``Host`` field is the authority), where a separate
    ``host`` field would contradict ``:authority`` (RFC 9113 §8.3.1).
    """

    __slots__ = ("_authority",)

    def __init__(
        self,
        method: str,
        url: URL,
        *,
        headers: Sequence[HeaderType],
        content: bytes | AsyncIterable[bytes] | None,
        authority: bytes | None,
    ) -> None:
        super().__init__(method, url, headers=headers, content=content)
        self._authority = authority

    @property
    def pseudo_headers(self) -> list[HeaderType]:
        headers = super().pseudo_headers
        if self._authority is not None:
            headers = [
                (name, self._authority if name == b":authority" else value)
                for name, value in headers
            ]
        return headers


class Transfer:
    """One URL of the command (see the module docstring)."""

    def __init__(
        self,
        plan: Plan,
        session: ClientSession,
        *,
        url: URL,
        given: str,
        number: int,
        output: Output,
    ) -> None:
        self.plan = plan
        self.session = session
        self.url = url
        self.output = output
        #: What ``-w`` reports.
        self.info = TransferInfo(url=given, urlnum=number, url_effective=str(url))
        self.info.filename_effective = output.path or ""

    async def run(self) -> int:
        """Make the transfer, report its error (if any) and ``-w``; return its exit code.

        Raises nothing: whatever fails is reported here (transfers may run at once).
        """
        token = TRANSFER.set(self.info)
        try:
            outcome = await retrying(
                self.plan.retry,
                self._timed_attempt,
                rewind=self.output.rewind,
                warn=self._warn,
                fail=self.plan.fail,
            )
            if outcome.failure is None:
                self.output.create()
            self.output.close()
        except CommandError as error:  # writing the output failed
            outcome = Outcome(failure=error)
        finally:
            TRANSFER.reset(token)
        info = self.info
        info.time_total = info.elapsed()
        if info.http_code:
            target = URL.parse(info.url_effective).origin.address
            (info.remote_ip, info.remote_port), (info.local_ip, info.local_port) = (
                self.plan.addresses.get(target, (("", 0), ("", 0)))
            )
        failure = outcome.failure
        if failure is not None:
            info.exitcode, info.errormsg = failure.code, str(failure)
            if self.plan.show_errors:
                report(failure)
        if self.plan.write_out is not None:
            try:
                write_out(self.plan.write_out, info, stdout=self._write_text)
            except CommandError as error:  # stdout is gone
                if failure is None:
                    failure = error
                    if self.plan.show_errors:
                        report(error)
        return failure.code if failure is not None else 0

    def _write_text(self, text: str) -> None:
        write_stdout(text.encode("utf-8", "replace"))

    def _warn(self, message: str) -> None:
        if self.plan.show_errors:
            sys.stderr.write(f"Warning: {message}\n")
            sys.stderr.flush()

    async def _timed_attempt(self) -> Outcome:
        plan = self.plan
        info = self.info
        # Each attempt is counted afresh, as curl counts a retry.
        info.started = time.perf_counter()
        for moment in ("namelookup", "connect", "appconnect", "pretransfer", "starttransfer"):
            setattr(info, f"time_{moment}", 0.0)
        info.time_redirect = 0.0
        info.num_redirects = info.num_connects = 0
        info.size_header = info.size_download = info.size_upload = info.size_request = 0
        info.redirect_url = ""
        timeout = math.inf if plan.max_time is None else plan.max_time
        try:
            with anyio.move_on_after(timeout) as scope:
                return await self._attempt()
        except CommandError as failure:
            return Outcome(status=info.http_code, failure=failure)
        except _CLIENT_ERRORS as error:
            code = exit_code(error, plan.proxy)
            reported = CommandError(message_of(error), code)
            return Outcome(status=info.http_code, failure=reported, error=error)
        finally:
            self.output.end_body()
        assert scope.cancelled_caught
        message = f"timed out after {plan.max_time} s (--max-time) on {info.method} {self.url}"
        return Outcome(status=info.http_code, failure=CommandError(message, 28))

    # -- one attempt ---------------------------------------------------------------------------

    async def _attempt(self) -> Outcome:
        plan = self.plan
        info = self.info
        url, method, body = self.url, plan.method, plan.body
        first = (url.host, url.port)
        authorization = None
        if plan.credentials is not None and not plan.credentials.digest:
            authorization = plan.credentials.basic()
        digest_sent = False
        redirects = 0
        while True:
            trusted = plan.location_trusted or (url.host, url.port) == first
            request = CurlRequest(
                plan.custom_method or method,
                url,
                headers=self._headers(url, body, authorization, trusted=trusted),
                content=None if body is None else body.content(),
                authority=plan.authority if (url.host, url.port) == first else None,
            )
            info.method, info.url_effective = request.method, str(url)
            info.size_request += _head_size(request)
            if body is not None:
                info.size_upload += body.length or 0
            if redirects or digest_sent:
                info.time_redirect = info.elapsed()
            requested = info.elapsed()
            async with self.session.stream(request) as response:
                self._received(response, requested)
                status = response.status
                if plan.cookies is not None:
                    for name, value in response.headers:
                        if name == b"set-cookie":
                            plan.cookies.receive(
                                value.decode("latin-1"), host=url.host, path=url.path
                            )
                if plan.fail and status >= 400 and not plan.fail_with_body:
                    return self._failed(status, url)
                self._write_head(response)
                if status == 401 and not digest_sent and self._asks_digest():
                    authorization = self._digest(response, request)
                    if authorization is not None:
                        digest_sent = True
                        info.num_redirects += 1
                        await _discard(response)
                        continue
                location = response.get_header("location")
                if status in REDIRECTS and location is not None:
                    target = _redirect_target(url, location)
                    if plan.follow:
                        if 0 <= plan.max_redirs <= redirects:
                            message = f"maximum ({plan.max_redirs}) redirects followed"
                            return Outcome(status=status, failure=CommandError(message, 47))
                        await _discard(response)
                        method, body = self._redirected(status, method, body)
                        url = target
                        redirects += 1
                        info.num_redirects += 1
                        continue
                    info.redirect_url = str(target)
                if not plan.head:
                    await self._write_body(response)
                if plan.fail and status >= 400:
                    return self._failed(status, url)
                return Outcome(status=status, retry_after=retry_after(response))

    def _headers(
        self, url: URL, body: Body | None, authorization: bytes | None, *, trusted: bool
    ) -> list[HeaderType]:
        plan = self.plan
        headers = [
            (name, value) for name, value in plan.headers if trusted or name not in _FIRST_HOST_ONLY
        ]
        names = {name for name, _ in headers}
        if body is not None:
            if plan.body_type is not None and b"content-type" not in names:
                headers.append((b"content-type", plan.body_type))
            length = body.length
            if body.data is None and length is not None:  # the client counts bytes itself
                headers.append((b"content-length", str(length).encode()))
        if plan.compressed and b"accept-encoding" not in names:
            headers.append((b"accept-encoding", accept_encoding()))
        if authorization is not None and trusted and b"authorization" not in names:
            headers.append((b"authorization", authorization))
        # -H's, the engine's, then -b's text (curl's order).
        cookies = [value for name, value in headers if name == b"cookie"]
        if plan.cookies is not None:
            found = plan.cookies.header(url.host, url.path, https=url.scheme == "https")
            if found is not None:
                cookies.append(found.encode("latin-1"))
        if plan.cookie_text is not None:
            cookies.append(plan.cookie_text)
        if cookies:
            headers = [(name, value) for name, value in headers if name != b"cookie"]
            headers.append((b"cookie", b"; ".join(cookies)))
        return headers

    def _received(self, response: Response, requested: float) -> None:
        info = self.info
        info.mark("starttransfer")
        # Ready to send once connected, if this request had to connect.
        info.time_pretransfer = max(requested, info.time_connect, info.time_appconnect)
        info.http_code = response.status
        info.http_version = response.http_version
        info.headers = list(response.headers)
        info.size_header += len(format_head(response))

    def _write_head(self, response: Response) -> None:
        head = format_head(response)
        if self.plan.dump_header is not None:
            self.plan.dump_header.write(head)
        if self.plan.include or self.plan.head:
            self.output.write(head)

    def _failed(self, status: int, url: URL) -> Outcome:
        failure = CommandError(f"the server answered {status} ({url})", 22)
        return Outcome(status=status, failure=failure)

    def _asks_digest(self) -> bool:
        credentials = self.plan.credentials
        return credentials is not None and credentials.digest

    def _digest(self, response: Response, request: Request) -> bytes | None:
        credentials = self.plan.credentials
        assert credentials is not None
        offers = b", ".join(
            value for name, value in response.headers if name == b"www-authenticate"
        )
        challenge = parse_challenges(offers.decode("latin-1")).get("digest")
        if challenge is None:
            return None
        return digest_authorization(
            credentials, challenge, method=request.method, uri=request.url.path
        )

    def _redirected(self, status: int, method: str, body: Body | None) -> tuple[str, Body | None]:
        """The method and body after a redirect with ``status`` (curl's rules)."""
        keep = self.plan.keep_post
        if status in (301, 302) and method == "POST" and status not in keep:
            return "GET", None
        if (
            status == 303
            and method not in ("GET", "HEAD")
            and not (method == "POST" and 303 in keep)
        ):
            return "GET", None
        if body is not None and not body.replayable:
            raise CommandError("cannot send the body again (stdin) to follow the redirect", 65)
        return method, body

    async def _write_body(self, response: Response) -> None:
        plan = self.plan
        encoding = b", ".join(
            value for name, value in response.headers if name == b"content-encoding"
        )
        decoder = None
        if plan.compressed and encoding:
            try:
                decoder = BodyDecoder(encoding.decode("latin-1"))
            except DecodingError as error:
                raise CommandError(str(error), 61) from None
        length = response.get_header("content-length")
        total = int(length) if length is not None and length.isdigit() and not decoder else None
        output = self.output
        output.start_body(total)
        received = 0
        async for chunk in response.aiter_bytes():
            received += len(chunk)
            self.info.size_download += len(chunk)
            if decoder is not None:
                try:
                    chunk = decoder.decode(chunk)
                except DecodingError as error:
                    raise CommandError(str(error), 61) from None
            output.write(chunk)
        output.end_body()
        if plan.tracer is not None:
            plan.tracer.log(
                f"response complete: status {response.status}, {received} bytes of body"
            )


async def _discard(response: Response) -> None:
    """Read a body nobody wants (a redirect's, a 401's), so the connection can go on."""
    async for _ in response.aiter_bytes():
        pass


def _percent_encode(raw: bytes) -> str:
    """``raw`` with what a URL may not hold percent-encoded (curl does that to a Location)."""
    return "".join(chr(byte) if byte in _URL_SAFE else f"%{byte:02X}" for byte in raw)


def _redirect_target(url: URL, location: bytes) -> URL:
    """The URL a ``Location`` points to, relative to ``url``.

    :raises CommandError: (1) for a scheme other than http and https; (3)
        for a URL that does not parse.
    """
    target = _percent_encode(location.strip())
    try:
        joined = urljoin(str(url), target)
        scheme = urlsplit(joined).scheme.lower()
    except ValueError as error:  # "Invalid IPv6 URL"
        raise CommandError(f"cannot follow the redirect to {target}: {error}", 3) from None
    if scheme not in ("http", "https"):
        raise CommandError(f"cannot follow the redirect to {joined}: unsupported scheme", 1)
    try:
        return URL.parse(joined)
    except ValueError as error:
        raise CommandError(f"cannot follow the redirect: {error}", 3) from None


def _head_size(request: Request) -> int:
    """The size of the request's head written as HTTP/1.1 (``%{size_request}``)."""
    size = len(f"{request.method} {request.url.path} HTTP/1.1\r\n") + 2
    for name, value in request.protocol_headers:
        if name == b":authority":
            name = b"host"
        elif name.startswith(b":"):
            continue
        size += len(name) + len(value) + 4
    return size
