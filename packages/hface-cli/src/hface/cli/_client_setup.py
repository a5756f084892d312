"""From ``hface client``'s options to what it runs: the client, the transfers' plan, the URLs.

Every usage error is found here, before anything is sent (exit 2), and so
are the files to read that cannot be (26, and 77 for ``--cacert``): a
command that fails this way has sent nothing.
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import ssl
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from hface.client import URL, AltSvcCache, Client, ClientProtocol, ClientTLSConfig, Request
from hface.common import HeaderType

from ._client_networking import ConnectTo, CurlNetworking, HandshakeTimes, Resolve
from ._client_parser import REMOTE_NAME
from ._cookies import CookieJar
from ._errors import USAGE, CommandError
from ._http_auth import Credentials
from ._instruments import instrument
from ._output import WRITE_ERROR, Output
from ._request_bodies import Body, join_data, multipart, parse_form, read_file
from ._retries import RetryPolicy
from ._trace import Tracer
from ._transfer import Plan
from ._write_out import WriteOutFormat

# RFC 9110 §5.1: a field name is a token.
_TOKEN: Final = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
#: Bytes that may not appear in a field value (RFC 9110 §5.5).
_FORBIDDEN_IN_VALUES: Final = frozenset(b"\r\n\0")
#: The most transfers ``-Z`` makes at once (curl's bound on --parallel-max).
_PARALLEL_LIMIT: Final = 300


@dataclass(kw_only=True)
class Job:
    """One URL to fetch, and where its body goes."""

    url: URL
    #: The URL as given, for ``%{url}``.
    given: str
    #: The file (``-o``, ``-O``), or None for stdout.
    output: str | None


@dataclass(kw_only=True)
class Setup:
    """What :func:`prepare` makes of the options."""

    client: Client
    plan: Plan
    jobs: list[Job]
    #: Transfers at once: 1 without ``-Z``.
    parallel: int
    #: ``-c FILE``.
    cookie_jar: str | None
    create_dirs: bool
    #: Whether ``-o`` files get a progress bar.
    progress: bool
    tracer: Tracer | None
    #: ``--alt-svc FILE``: where the Alt-Svc cache is saved at the end.
    alt_svc_file: str | None = None


def usage(message: str) -> CommandError:
    """A usage error (exit 2)."""
    return CommandError(message, USAGE)


def prepare(args: argparse.Namespace, tracer: Tracer | None) -> Setup:
    """Check the options and make the client and the transfers.

    :raises CommandError: for usage errors (2) and files that cannot be read.
    """
    protocol = ClientProtocol(args.protocol)
    texts = [*args.urls, *args.more_urls]
    if not texts:
        raise usage("no URL given")
    credentials = _credentials(args.user, digest=args.digest)
    urls: list[tuple[str, URL]] = []
    for text in texts:
        url, from_url = _parse_url(text)
        credentials = credentials or from_url
        if protocol is ClientProtocol.HTTP3 and url.scheme != "https":
            raise usage(f"--http3 needs an https URL, not {url}")
        urls.append((text, url))
    plan_method, body, body_type, query = _body(args)
    headers, authority = _headers(args, json=body_type == b"application/json")
    method = args.method or plan_method
    try:
        Request(method, urls[0][1], headers=headers)
    except ValueError as error:
        raise usage(str(error)) from None
    if query is not None:
        urls = [(text, _with_query(url, query)) for text, url in urls]
    if args.upload_file is not None and args.upload_file != "-":
        name = quote(os.path.basename(args.upload_file))
        urls = [(text, _with_file_name(url, name)) for text, url in urls]
    client = _client(args, protocol)
    networking = client.networking
    assert isinstance(networking, CurlNetworking)
    if tracer is not None:
        tracer.install(client)
    write_format = _write_out(args.write_out)
    if write_format is not None:
        instrument(client, HandshakeTimes())
    cookie_text, jar = _cookies(args)
    silent = args.silent and not args.show_error
    plan = Plan(
        custom_method=args.method,
        method=plan_method,
        headers=tuple(headers),
        authority=authority,
        body=body,
        body_type=body_type,
        credentials=credentials,
        follow=args.follow,
        max_redirs=args.max_redirs,
        location_trusted=args.location_trusted,
        keep_post=frozenset(args.keep_post),
        include=args.include,
        head=args.head,
        fail=args.fail or args.fail_with_body,
        fail_with_body=args.fail_with_body,
        compressed=args.compressed,
        cookie_text=cookie_text,
        cookies=jar,
        retry=RetryPolicy(
            retries=max(args.retry, 0),
            delay=args.retry_delay or None,
            max_time=args.retry_max_time or None,
            connrefused=args.retry_connrefused,
            all_errors=args.retry_all_errors,
        ),
        max_time=args.max_time,
        dump_header=None if args.dump_header is None else Output(args.dump_header),
        write_out=write_format,
        show_errors=not silent,
        proxy=client.proxy_origin,
        addresses=networking.addresses,
        tracer=tracer,
    )
    jobs = [
        Job(url=url, given=text, output=_output_path(args, index, url))
        for index, (text, url) in enumerate(urls)
    ]
    return Setup(
        client=client,
        plan=plan,
        jobs=jobs,
        parallel=max(1, min(args.parallel_max, _PARALLEL_LIMIT)) if args.parallel else 1,
        cookie_jar=args.cookie_jar,
        create_dirs=args.create_dirs,
        progress=not args.verbose and not args.silent and sys.stderr.isatty(),
        tracer=tracer,
        alt_svc_file=args.alt_svc or None,
    )


# -- URLs ---------------------------------------------------------------------------------


def _parse_url(text: str) -> tuple[URL, Credentials | None]:
    """The URL, and the credentials in its userinfo (``https://user:pw@host/``), if any."""
    credentials = None
    parts = urlsplit(text if "://" in text else f"http://{text}")
    if "@" in parts.netloc:
        userinfo, _, host = parts.netloc.rpartition("@")
        user, _, password = userinfo.partition(":")
        credentials = Credentials(user=unquote(user), password=unquote(password))
        text = urlunsplit(parts._replace(netloc=host))
    if any(character.isspace() for character in parts.path + parts.query):
        # curl refuses them (exit 3); the library would percent-encode them.
        message = "characters not allowed in a path or query (percent-encode them)"
        raise usage(f"invalid URL {text!r}: {message}")
    try:
        return URL.parse(text), credentials
    except ValueError as error:
        raise usage(str(error)) from None


def _with_query(url: URL, query: str) -> URL:
    separator = "&" if "?" in url.path else "?"
    try:
        return URL.parse(f"{url}{separator}{query}")
    except ValueError as error:
        raise usage(f"cannot put -d's data in the URL (-G): {error}") from None


def _with_file_name(url: URL, name: str) -> URL:
    path, question, query = url.path.partition("?")
    if not path.endswith("/"):
        return url
    return url._replace(path=f"{path}{name}{question}{query}")


def _output_path(args: argparse.Namespace, index: int, url: URL) -> str | None:
    outputs: list[str] = args.outputs
    if index < len(outputs):
        output = outputs[index]
    elif args.remote_name_all:
        output = REMOTE_NAME
    else:
        return None
    if output == REMOTE_NAME:
        output = unquote(url.path.partition("?")[0].rpartition("/")[2])
        if not output:
            raise CommandError(f"no file name in {url} for -O", WRITE_ERROR)
    if output == "-":
        return None
    if args.output_dir and not os.path.isabs(output):
        output = os.path.join(args.output_dir, output)
    return output


# -- the request -----------------------------------------------------------------------------


def _body(args: argparse.Namespace) -> tuple[str, Body | None, bytes | None, str | None]:
    """``(method, body, content_type, query)`` from the body options (query: ``-G``'s)."""
    chosen = [
        name
        for name, given in (
            ("-d", args.data),
            ("-F", args.form),
            ("-T", args.upload_file is not None),
            ("-I", args.head),
        )
        if given
    ]
    if len(chosen) > 1 and not (args.get and chosen[0] == "-d" and chosen[1:] == ["-I"]):
        raise usage(f"you can only select one HTTP request method ({' and '.join(chosen)})")
    head_or_get = "HEAD" if args.head else "GET"
    if args.data:
        data, is_json = join_data(args.data)
        if args.get:
            return head_or_get, None, None, os.fsdecode(data)
        content_type = b"application/json" if is_json else b"application/x-www-form-urlencoded"
        return "POST", Body(data=data), content_type, None
    if args.form:
        parts = [parse_form(text, literal=kind == "form-string") for kind, text in args.form]
        data, content_type = multipart(parts)
        return "POST", Body(data=data), content_type, None
    if args.upload_file is not None:
        body = Body(upload=args.upload_file)
        _ = body.length  # a file that cannot be read: exit 26 now
        return "PUT", body, None, None
    return head_or_get, None, None, None


def _headers(args: argparse.Namespace, *, json: bool) -> tuple[list[HeaderType], bytes | None]:
    """The header fields, the defaults included, and ``-H Host``'s authority."""
    given: list[HeaderType] = []
    removed: set[bytes] = set()
    for text in _header_lines(args.headers):
        name, value = _parse_header(text)
        if value is None:
            removed.add(name)
        else:
            given.append((name, value))
    names = {name for name, _ in given} | removed
    defaults: list[HeaderType] = []
    if args.user_agent is not None and args.user_agent != "":
        defaults.append((b"user-agent", os.fsencode(args.user_agent)))
    if args.referer is not None:
        defaults.append((b"referer", os.fsencode(args.referer)))
    if args.oauth2_bearer is not None:
        defaults.append((b"authorization", b"Bearer " + os.fsencode(args.oauth2_bearer)))
    defaults.append((b"accept", b"application/json" if json else b"*/*"))
    headers = [*given, *(field for field in defaults if field[0] not in names)]
    authority = None
    for name, value in headers:
        if name == b"host":
            authority = value
    return [field for field in headers if field[0] != b"host"], authority


def _header_lines(options: list[str]) -> list[str]:
    lines: list[str] = []
    for option in options:
        if option.startswith("@"):
            content = read_file(option[1:]).decode("latin-1")
            lines += [line for line in content.splitlines() if line.strip()]
        else:
            lines.append(option)
    return lines


def _parse_header(text: str) -> tuple[bytes, bytes | None]:
    """``(name, value)`` of ``-H``: value None for ``Name:`` (remove), empty for ``Name;``."""
    if not text.endswith(";") or ":" in text:
        name, colon, value = text.partition(":")
        empty = False
    else:
        name, colon, value, empty = text[:-1], ":", "", True
    name = name.strip()
    if not colon or not _TOKEN.match(name):
        raise usage(f"invalid header {text!r}: expected 'Name: value'")
    raw_value = os.fsencode(value.strip())
    if _FORBIDDEN_IN_VALUES & set(raw_value):
        raise usage(f"invalid header {text!r}: CR, LF and NUL are not allowed in a value")
    if not raw_value and not empty:
        return name.lower().encode("ascii"), None
    return name.lower().encode("ascii"), raw_value


def _credentials(user: str | None, *, digest: bool) -> Credentials | None:
    if user is None:
        return None
    name, colon, password = user.partition(":")
    if not colon:
        if not sys.stdin.isatty():
            raise usage(f"-u {user}: give the password too (-u USER:PASSWORD)")
        password = getpass.getpass(f"Enter host password for user '{name}': ")
    return Credentials(user=name, password=password, digest=digest)


def _cookies(args: argparse.Namespace) -> tuple[bytes | None, CookieJar | None]:
    """``-b``'s text to send as it is, and the cookie engine if ``-b FILE`` or ``-c`` asks."""
    texts = [text for text in args.cookies if "=" in text]
    files = [text for text in args.cookies if "=" not in text]
    jar = CookieJar() if files or args.cookie_jar else None
    if jar is not None:
        for path in files:
            if path:
                jar.load(path)
    return (b"; ".join(os.fsencode(text) for text in texts) or None), jar


def _write_out(text: str | None) -> WriteOutFormat | None:
    if text is None:
        return None
    if text.startswith("@"):
        text = read_file(text[1:]).decode("utf-8", "replace")

    def warn(message: str) -> None:
        sys.stderr.write(f"hface: warning: {message}\n")

    return WriteOutFormat.parse(text, warn=warn)


# -- the client ----------------------------------------------------------------------------------


def _client(args: argparse.Namespace, protocol: ClientProtocol) -> Client:
    proxy_protocol = ClientProtocol(args.proxy_protocol or ClientProtocol.TCP.value)
    if args.proxy_protocol is not None and not args.proxy:
        raise usage("--proxy-http1, --proxy-http2 and --proxy-http3 need --proxy")
    if args.proxy and protocol is ClientProtocol.HTTP3 and proxy_protocol is ClientProtocol.HTTP1:
        raise usage("--http3 through a proxy needs CONNECT-UDP: --proxy-http2 or --proxy-http3")
    if args.proxy and (args.resolve or args.connect_to):
        raise usage("--resolve and --connect-to do not apply through a proxy (-x)")
    try:
        resolve = [Resolve.parse(text) for text in args.resolve]
    except ValueError as error:
        raise usage(f"invalid --resolve {error}: expected HOST:PORT:ADDRESS[,ADDRESS]") from None
    try:
        connect_to = [ConnectTo.parse(text) for text in args.connect_to]
    except ValueError as error:
        raise usage(f"invalid --connect-to {error}: expected HOST1:PORT1:HOST2:PORT2") from None
    tls_config = ClientTLSConfig(
        insecure=args.insecure,
        certfile=args.cert,
        keyfile=args.key,
        # Wireshark's convention (curl, browsers): TCP and QUIC secrets alike.
        keylog_filename=os.environ.get("SSLKEYLOGFILE") or None,
    )
    try:
        client = Client(
            tls_config=tls_config,
            protocol=protocol,
            proxy_origin=args.proxy or None,
            proxy_protocol=proxy_protocol,
            connect_timeout=args.connect_timeout,
        )
    except ValueError as error:
        raise usage(str(error)) from None
    proxy = client.proxy_origin
    if proxy is not None and proxy_protocol is ClientProtocol.HTTP3 and not proxy.tls:
        raise usage(f"--proxy-http3 needs an https proxy, not {proxy}")
    if args.cacert:
        _check_cafile(args.cacert)
        tls_config.cafile = args.cacert
    for path in (args.cert, args.key):
        if path is not None and not Path(path).is_file():
            raise CommandError(f"cannot read {path}", 58)
    qlog_dir = args.qlog_dir or os.environ.get("QLOGDIR") or None
    if qlog_dir is not None and not Path(qlog_dir).is_dir():
        raise CommandError(f"--qlog-dir: {qlog_dir} is not a directory", 26)
    client.qlog_dir = qlog_dir
    if args.alt_svc is not None:
        if args.proxy:
            raise usage("--alt-svc does not apply through a proxy (-x)")
        try:  # curl's --alt-svc: "" is a cache in memory; a file missing is an empty one
            client.alt_svc = AltSvcCache.load(args.alt_svc) if args.alt_svc else AltSvcCache()
        except OSError as error:
            raise CommandError(f"cannot read {args.alt_svc}: {error.strerror}", 26) from None
    client.networking = CurlNetworking(resolve=resolve, connect_to=connect_to)
    return client


def _check_cafile(path: str) -> None:
    try:
        ssl.create_default_context(cafile=path)
    except OSError as error:
        reason = error.strerror or str(error)
        message = f"cannot read the CA certificates in {path}: {reason}"
        raise CommandError(message, 77) from None
    except ssl.SSLError:
        raise CommandError(f"no CA certificates (PEM) in {path}", 77) from None
