"""The parts of ``hface client`` that curl's behaviour is made of, one by one.

The command as a whole is compared with curl in ``test_curl_table.py``;
here each part is checked against its specification: RFC 6265 and curl's
cookie files, curl's ``-w`` format, RFC 7616's Digest examples, the
multipart layout, ``--resolve``/``--connect-to`` and the decoders.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import time
import zlib

import anyio
import pytest
from anyio.abc import SocketAttribute

from hface.cli._client_networking import ConnectTo, CurlNetworking, Resolve
from hface.cli._cookies import CookieJar, parse_netscape_line
from hface.cli._errors import CommandError
from hface.cli._http_auth import Credentials, digest_authorization, parse_challenges
from hface.cli._request_bodies import FormPart, data_piece, multipart
from hface.cli._retries import Outcome, Problem, RetryPolicy, retry_after, transient
from hface.cli._transfer import CurlRequest
from hface.cli._write_out import TransferInfo, WriteOutFormat
from hface.client import URL, BodyDecoder, Response, accept_encoding
from hface.client.errors import DecodingError
from hface.errors import TransportError
from tests.helpers.network import needs_ipv6
from tests.helpers.peers import free_port

# -- cookies (RFC 6265, curl's Netscape files) -------------------------------------------------


def test_cookies_are_sent_where_they_match() -> None:
    jar = CookieJar()
    jar.receive("host_only=1", host="example.com", path="/a/b")
    jar.receive("domain=2; Domain=example.com; Path=/", host="www.example.com", path="/")
    jar.receive("secure=3; Secure; Path=/", host="example.com", path="/")
    jar.receive("deep=4; Path=/a/b/c", host="example.com", path="/")
    # §5.1.4: the default path is the request's directory.
    assert jar.header("example.com", "/a/x", https=False) == "host_only=1; domain=2"
    assert jar.header("example.com", "/b", https=False) == "domain=2"
    assert jar.header("sub.example.com", "/a/x", https=False) == "domain=2"
    # Equal paths, domains and name lengths: the newest first (curl's order).
    assert jar.header("example.com", "/", https=True) == "secure=3; domain=2"
    # Longer paths first.
    assert jar.header("example.com", "/a/b/c/d", https=False) == "deep=4; host_only=1; domain=2"
    assert jar.header("other.com", "/", https=True) is None


def test_cookies_that_cannot_be_set_or_that_expire() -> None:
    jar = CookieJar()
    jar.receive("no_equals", host="example.com", path="/")
    jar.receive("x=1; Domain=other.com", host="example.com", path="/")  # §5.3 step 6
    assert len(jar) == 0
    jar.receive("gone=1; Path=/", host="example.com", path="/")
    jar.receive("gone=2; Path=/; Max-Age=0", host="example.com", path="/")
    jar.receive(
        "old=1; Path=/; Expires=Thu, 01 Jan 1970 00:00:01 GMT", host="example.com", path="/"
    )
    assert len(jar) == 0
    jar.receive("later=1; Path=/; Max-Age=100", host="example.com", path="/")
    (line,) = [line for line in jar.save().splitlines() if line and not line.startswith("#")]
    expires = int(line.split("\t")[4])
    assert time.time() + 90 < expires < time.time() + 110


def test_netscape_files_round_trip() -> None:
    jar = CookieJar()
    jar.receive("a=1; Path=/", host="localhost", path="/")
    jar.receive("b=2; Domain=example.com; Path=/p; Secure; HttpOnly", host="example.com", path="/")
    saved = jar.save()
    assert saved.startswith("# Netscape HTTP Cookie File\n")
    lines = [line for line in saved.splitlines() if line and not line.startswith("# ")]
    # The newest first, as curl writes them.
    assert lines == [
        "#HttpOnly_.example.com\tTRUE\t/p\tTRUE\t0\tb\t2",
        "localhost\tFALSE\t/\tFALSE\t0\ta\t1",
    ]
    cookie = parse_netscape_line(lines[0])
    assert cookie is not None
    assert (cookie.domain, cookie.subdomains, cookie.http_only, cookie.secure) == (
        "example.com",
        True,
        True,
        True,
    )
    assert parse_netscape_line("# a comment") is None
    assert parse_netscape_line("too\tfew\tfields") is None


def test_a_cookie_file_that_cannot_be_read_adds_nothing(tmp_path: pytest.TempPathFactory) -> None:
    jar = CookieJar()
    jar.load("/nonexistent/cookies.txt")
    assert len(jar) == 0


# -- -w ----------------------------------------------------------------------------------------


def _render(text: str, info: TransferInfo) -> tuple[str, str, list[str]]:
    warnings: list[str] = []
    out = {"stdout": "", "stderr": ""}
    for stream, piece in WriteOutFormat.parse(text, warn=warnings.append).render(info):
        out[stream] += piece
    return out["stdout"], out["stderr"], warnings


def test_write_out_format() -> None:
    info = TransferInfo(url="https://e/x", url_effective="https://e/y", http_code=200)
    info.http_version, info.size_download, info.time_total = "2", 17, 0.5
    info.headers = [(b"content-type", b"text/plain"), (b"x-many", b"1"), (b"x-many", b"2")]
    text = r"%{http_code} %{http_version} %{size_download} %{time_total} %{scheme}\n"
    assert _render(text, info) == ("200 2 17 0.500000 HTTPS\n", "", [])
    # curl's escapes: \n, \r, \t; others stay; %% is a percent sign.
    assert _render(r"a\tb\rc\\d\x %% 100%", info)[0] == "a\tb\rc\\\\d\\x % 100%"
    assert _render("%header{Content-Type}|%header{x-many}|%header{none}", info)[0] == (
        "text/plain|1, 2|"
    )
    assert _render("%{stderr}to err%{stdout}to out", info)[:2] == ("to out", "to err")
    assert _render("%{nope}x", info) == ("x", "", ["unknown --write-out variable: 'nope'"])
    # %{onerror}: the rest only for a failed transfer.
    assert _render("a%{onerror}b", info)[0] == "a"
    info.exitcode = 7
    assert _render("a%{onerror}b", info)[0] == "ab"


def test_write_out_before_any_response() -> None:
    info = TransferInfo(url="http://e/", exitcode=7, errormsg="refused")
    assert _render("%{http_code} %{http_version} %{errormsg}", info)[0] == "000 0 refused"
    values = json.loads(_render("%{json}", info)[0])
    assert values["http_code"] == 0
    assert values["exitcode"] == 7
    assert values["content_type"] is None
    assert set(values) >= {"time_total", "url_effective", "num_redirects", "size_download"}


# -- Digest (RFC 7616 §3.9.1) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("algorithm", "response"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_digest_as_rfc_7616_computes_it(algorithm: str, response: str) -> None:
    challenge = parse_challenges(
        'Digest realm="http-auth@example.org", qop="auth, auth-int", '
        f"algorithm={algorithm}, "
        'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
        'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS", Basic realm="other"'
    )
    assert set(challenge) == {"digest", "basic"}
    authorization = digest_authorization(
        Credentials(user="Mufasa", password="Circle of Life", digest=True),
        challenge["digest"],
        method="GET",
        uri="/dir/index.html",
        cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    )
    assert authorization is not None
    text = authorization.decode()
    assert text.startswith('Digest username="Mufasa", realm="http-auth@example.org", ')
    assert f'response="{response}"' in text
    assert "nc=00000001, qop=auth" in text
    assert 'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"' in text


def test_digest_it_cannot_answer() -> None:
    credentials = Credentials(user="u", password="p", digest=True)
    for challenge in (
        {"realm": "r", "nonce": "n", "algorithm": "SHA-512-256"},
        {"realm": "r", "nonce": "n", "qop": "auth-int"},
        {"realm": "r"},
    ):
        assert digest_authorization(credentials, challenge, method="GET", uri="/") is None


def test_basic() -> None:
    assert Credentials(user="alice", password="sécret").basic() == b"Basic YWxpY2U6c8OpY3JldA=="


# -- retries (curl's rules) ---------------------------------------------------------------


def test_what_is_retried() -> None:
    plain, every = RetryPolicy(retries=1), RetryPolicy(retries=1, connrefused=True, all_errors=True)
    refused = CommandError("x", 7)
    econnrefused = ConnectionRefusedError(111, "Connection refused")
    cases = [
        (Outcome(status=503), plain, False, Problem.HTTP_ERROR),
        (Outcome(status=404), plain, False, None),
        (Outcome(status=429, failure=CommandError("x", 22)), plain, True, Problem.HTTP_ERROR),
        (Outcome(failure=CommandError("x", 28)), plain, False, Problem.TIMEOUT),
        (Outcome(failure=CommandError("x", 6)), plain, False, Problem.TIMEOUT),
        (Outcome(failure=refused, error=econnrefused), plain, False, None),
        (Outcome(failure=refused, error=econnrefused), every, False, Problem.CONNECTION_REFUSED),
        (Outcome(failure=CommandError("x", 56)), plain, False, None),
        (Outcome(failure=CommandError("x", 56)), every, False, Problem.ANY_ERROR),
    ]
    for outcome, policy, fail, expected in cases:
        assert transient(policy, outcome, fail=fail) == expected, outcome


def test_retry_after() -> None:
    def with_header(value: bytes) -> Response:
        return Response(status=503, headers=[(b"retry-after", value)], http_version="2")

    assert retry_after(with_header(b"3")) == 3.0
    assert retry_after(with_header(b"0")) is None  # curl: the default backoff
    assert retry_after(with_header(b"soon")) is None
    later = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 60))
    assert 50 < (retry_after(with_header(later.encode())) or 0) <= 60
    assert retry_after(Response(status=503, headers=[], http_version="2")) is None


# -- bodies ------------------------------------------------------------------------------------


def test_data_urlencode_forms() -> None:
    assert data_piece("data-urlencode", "k=a b&c") == b"k=a+b%26c"
    assert data_piece("data-urlencode", "=x y") == b"x+y"
    assert data_piece("data-urlencode", "plain text") == b"plain+text"
    assert data_piece("data-raw", "@not-a-file") == b"@not-a-file"


def test_multipart_layout() -> None:
    body, content_type = multipart(
        [
            FormPart(name="a", data=b"1"),
            FormPart(name='q"uote', data=b"\r\nbinary\0", filename="f.bin", content_type="x/y"),
        ]
    )
    boundary = content_type.removeprefix(b"multipart/form-data; boundary=")
    assert len(boundary) == 40
    assert boundary.startswith(b"-" * 24)
    assert body == (
        b"--" + boundary + b"\r\n"
        b'Content-Disposition: form-data; name="a"\r\n\r\n'
        b"1\r\n"
        b"--" + boundary + b"\r\n"
        b'Content-Disposition: form-data; name="q%22uote"; filename="f.bin"\r\n'
        b"Content-Type: x/y\r\n\r\n"
        b"\r\nbinary\0\r\n"
        b"--" + boundary + b"--\r\n"
    )


# -- decoding ----------------------------------------------------------------------------------


def test_decoders() -> None:
    text = b"compress me " * 1000
    assert accept_encoding().startswith(b"deflate, gzip")
    cases = {
        "gzip": gzip.compress(text),
        "deflate": zlib.compress(text),
        "identity, gzip": gzip.compress(text),
    }
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    cases["deflate "] = raw.compress(text) + raw.flush()  # raw deflate, as some servers send
    cases["gzip, gzip"] = gzip.compress(gzip.compress(text))
    for coding, data in cases.items():
        decoder = BodyDecoder(coding)
        stream = io.BytesIO(data)
        decoded = b""
        while chunk := stream.read(7):  # small pieces: a header may be split
            decoded += decoder.decode(chunk)
        assert decoded == text, coding
    with pytest.raises(DecodingError, match="unrecognized content encoding 'compress'"):
        BodyDecoder("compress")
    with pytest.raises(DecodingError, match="does not decode"):
        BodyDecoder("gzip").decode(b"not gzip at all")


# -- the request's authority -------------------------------------------------------------------


def test_a_host_field_becomes_the_authority() -> None:
    url = URL.parse("https://example.com:8443/x")
    request = CurlRequest(
        "GET", url, headers=[(b"accept", b"*/*")], content=None, authority=b"other.test"
    )
    assert request.protocol_headers == [
        (b":method", b"GET"),
        (b":scheme", b"https"),
        (b":authority", b"other.test"),
        (b":path", b"/x"),
        (b"accept", b"*/*"),
    ]


# -- --resolve, --connect-to, Happy Eyeballs ---------------------------------------------------


def test_resolve_and_connect_to_parse() -> None:
    assert Resolve.parse("Example.com:443:127.0.0.1,[::1]") == Resolve(
        "example.com", 443, ("127.0.0.1", "::1")
    )
    assert Resolve.parse("[::1]:*:127.0.0.1").port is None
    for bad in ("example.com", "example.com:443", "example.com:x:127.0.0.1", "e:1:not-an-ip"):
        with pytest.raises(ValueError, match=re.escape(bad)):
            Resolve.parse(bad)
    rule = ConnectTo.parse("example.com:443:localhost:8443")
    assert rule.apply(("example.com", 443)) == ("localhost", 8443)
    assert rule.apply(("example.com", 80)) is None
    assert ConnectTo.parse("::other:").apply(("any", 80)) == ("other", 80)
    assert ConnectTo.parse(":80::8080").apply(("any", 80)) == ("any", 8080)
    with pytest.raises(ValueError, match="no-colons"):
        ConnectTo.parse("no-colons")


@pytest.mark.anyio
async def test_networking_resolves_as_told() -> None:
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        port = listener.extra(SocketAttribute.local_port)
        networking = CurlNetworking(
            resolve=[Resolve.parse(f"name.invalid:{port}:127.0.0.1")],
            connect_to=[ConnectTo.parse(f"elsewhere.invalid:1:name.invalid:{port}")],
        )
        for address in (("name.invalid", port), ("elsewhere.invalid", 1)):
            stream = await networking.connect_tcp(address)
            assert stream.extra(SocketAttribute.remote_address) == ("127.0.0.1", port)
            await stream.aclose()
            assert networking.addresses[address][0] == ("127.0.0.1", port)
        with pytest.raises(TransportError) as info:
            await CurlNetworking().connect_tcp(("name.invalid", port))
        assert isinstance(info.value.__cause__, OSError)  # socket.gaierror: exit 6


@needs_ipv6
@pytest.mark.anyio
async def test_networking_tries_every_address() -> None:
    """An address that refuses (::1, nothing there) gives way to the next one."""
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        port = listener.extra(SocketAttribute.local_port)
        resolve = [Resolve.parse(f"two.invalid:{port}:::1,127.0.0.1")]
        with anyio.fail_after(5):
            stream = await CurlNetworking(resolve=resolve).connect_tcp(("two.invalid", port))
        assert stream.extra(SocketAttribute.remote_address) == ("127.0.0.1", port)
        await stream.aclose()
    refused = [Resolve.parse(f"none.invalid:{free_port()}:::1,127.0.0.1")]
    with pytest.raises(TransportError):
        await CurlNetworking(resolve=refused).connect_tcp(("none.invalid", refused[0].port or 0))
