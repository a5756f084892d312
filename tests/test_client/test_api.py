"""The conveniences of ``ClientSession.request``: params, JSON and forms, text, redirects, auth.

Against hface's own ASGI server (:mod:`.api_app`) on HTTP/1.1, HTTP/2 and
HTTP/3, on asyncio and Trio.
"""

from __future__ import annotations

import email.parser
import email.policy
import importlib.util
from collections.abc import AsyncIterator
from typing import Any

import pytest

from hface.client import BasicAuth, Client, ClientProtocol, DigestAuth, Headers, Request, Timeout
from hface.client.errors import DecodingError, HTTPStatusError, TooManyRedirects
from hface.common import ClientTLSConfig, ServerTLSConfig
from hface.server import ASGIServer
from tests.test_server.conftest import running

from .api_app import app
from .asgi_app import pattern

pytestmark = pytest.mark.anyio

PROTOCOLS = {"1.1": ClientProtocol.HTTP1, "2": ClientProtocol.HTTP2, "3": ClientProtocol.HTTP3}


@pytest.fixture
async def base_url(server_tls_config: ServerTLSConfig) -> AsyncIterator[str]:
    """``https://localhost:PORT`` of hface's ASGI server running :mod:`.api_app`."""
    server = ASGIServer(app)
    server.tls_config = server_tls_config
    async with running(server) as (_host, port):
        yield f"https://localhost:{port}"


@pytest.fixture(params=list(PROTOCOLS), ids=lambda v: f"http{v}")
def client(request: pytest.FixtureRequest, client_tls_config: ClientTLSConfig) -> Client:
    """A client of each HTTP version in turn."""
    return Client(tls_config=client_tls_config, protocol=PROTOCOLS[request.param])


@pytest.fixture
def http1_client(client_tls_config: ClientTLSConfig) -> Client:
    """An HTTP/1.1 client, for what does not depend on the version."""
    return Client(tls_config=client_tls_config, protocol=ClientProtocol.HTTP1)


async def test_get_with_params_and_headers(client: Client, base_url: str) -> None:
    async with client.session() as session:
        response = await session.get(
            base_url + "/get?a=1",
            params={"q": "a b&c", "n": [1, 2], "é": "ü"},
            headers={"X-Test": "yes", "Accept": "application/json"},
        )
    assert response.status == 200
    assert response.header_map["Content-Type"] == "application/json"
    seen = response.json()
    assert seen["query"] == {"a": ["1"], "q": ["a b&c"], "n": ["1", "2"], "é": ["ü"]}
    assert seen["headers"]["x-test"] == ["yes"]
    assert seen["headers"]["accept"] == ["application/json"]
    assert seen["http_version"] == response.http_version
    assert response.url is not None
    assert response.url.path.startswith("/get?a=1&q=a+b%26c")


@pytest.mark.parametrize("method", ["post", "put", "patch"])
async def test_json_body(client: Client, base_url: str, method: str) -> None:
    async with client.session() as session:
        response = await getattr(session, method)(base_url + "/echo", json={"name": "café", "n": 1})
    seen = response.json()
    assert seen["method"] == method.upper()
    assert seen["headers"]["content-type"] == ["application/json"]
    assert seen["body"] == '{"name":"café","n":1}'


async def test_form_body(client: Client, base_url: str) -> None:
    async with client.session() as session:
        response = await session.post(base_url + "/post", data={"a": "1 2", "b": ["x", "y"]})
    seen = response.json()
    assert seen["headers"]["content-type"] == ["application/x-www-form-urlencoded"]
    assert seen["body"] == "a=1+2&b=x&b=y"


async def test_multipart_body(client: Client, base_url: str) -> None:
    files: dict[str, bytes | tuple[str, bytes, str]] = {
        "upload": ('a "b".txt', b"line 1\r\nline 2", "text/plain"),
        "raw": b"\x00\x01",
    }
    async with client.session() as session:
        response = await session.post(base_url + "/post", data={"field": "é"}, files=files)
    seen = response.json()
    (content_type,) = seen["headers"]["content-type"]
    assert content_type.startswith("multipart/form-data; boundary=")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + seen["body"].encode()
    )
    parts = [
        (
            part.get_param("name", header="content-disposition"),
            part.get_filename(),
            part.get_content_type(),
            part.get_payload(decode=True),
        )
        for part in message.iter_parts()
    ]
    assert parts == [
        ("field", None, "text/plain", "é".encode()),
        ("upload", "a %22b%22.txt", "text/plain", b"line 1\r\nline 2"),
        ("raw", "raw", "application/octet-stream", b"\x00\x01"),
    ]


@pytest.mark.parametrize("method", ["delete", "head", "options"])
async def test_other_methods(http1_client: Client, base_url: str, method: str) -> None:
    async with http1_client.session() as session:
        response = await getattr(session, method)(base_url + "/anything")
    assert response.status == 200
    if method == "head":
        assert response.content == b""
    else:
        assert response.json()["method"] == method.upper()


async def test_one_body_only(http1_client: Client, base_url: str) -> None:
    async with http1_client.session() as session:
        with pytest.raises(TypeError, match="give one body, not data and json"):
            await session.post(base_url + "/post", data={"a": "1"}, json={"a": 1})


async def test_unknown_or_misplaced_keywords_are_type_errors(
    http1_client: Client, base_url: str
) -> None:
    """The shortcuts hand their keywords on: what a call does not take still fails, at once."""
    options: dict[str, Any] = {"json": {"a": 1}}
    unknown: dict[str, Any] = {"colour": "blue"}
    async with http1_client.session() as session:
        with pytest.raises(TypeError, match="get\\(\\) got an unexpected keyword argument 'json'"):
            await session.get(base_url + "/anything", **options)  # a GET takes no body here
        with pytest.raises(TypeError, match=r"request\(\) got an unexpected .* 'colour'"):
            await session.request("GET", base_url + "/anything", **unknown)
        with pytest.raises(TypeError, match=r"stream\(\) got an unexpected .* 'json'"):
            session.stream(Request("POST", base_url + "/post"), **options)
        response = await session.put(base_url + "/anything", **options)  # a PUT does
        assert response.json()["method"] == "PUT"


async def test_text_uses_the_charset(http1_client: Client, base_url: str) -> None:
    async with http1_client.session() as session:
        response = await session.get(base_url + "/latin1")
        assert (response.encoding, response.text) == ("iso8859-1", "café")
        response = await session.get(base_url + "/get")
        assert response.encoding == "utf-8"


async def test_raise_for_status(http1_client: Client, base_url: str) -> None:
    async with http1_client.session() as session:
        ok = await session.get(base_url + "/status/204")
        assert ok.raise_for_status() is ok
        assert ok.is_success
        response = await session.get(base_url + "/status/404")
        with pytest.raises(HTTPStatusError, match=r"404 \(client error\) for GET") as caught:
            response.raise_for_status()
        assert caught.value.status == 404
        assert caught.value.response is response
        assert caught.value.origin == str(response.url.origin if response.url else "")
        response = await session.get(base_url + "/status/503")
        with pytest.raises(HTTPStatusError, match="server error"):
            response.raise_for_status()


async def test_url_is_percent_encoded(client: Client, base_url: str) -> None:
    async with client.session() as session:
        response = await session.get(base_url + "/anything/a b/é%2F?q=ü x&r=50%")
    seen = response.json()
    assert seen["raw_path"] == "/anything/a%20b/%C3%A9%2F"
    assert seen["query"] == {"q": ["ü x"], "r": ["50%"]}


@pytest.mark.parametrize(
    ("status", "method", "expected"),
    [
        (301, "POST", "GET"),
        (302, "POST", "GET"),
        (303, "POST", "GET"),
        (303, "PUT", "GET"),
        (307, "POST", "POST"),
        (308, "PUT", "PUT"),
        (302, "PUT", "PUT"),
    ],
)
async def test_redirect_methods(
    client: Client, base_url: str, status: int, method: str, expected: str
) -> None:
    """RFC 9110 §15.4: 303 → GET, 301/302 POST → GET, 307/308 keep method and body."""
    async with client.session() as session:
        response = await session.request(
            method,
            base_url + f"/redirect/{status}",
            params={"to": "/echo?x=1"},
            json={"k": "v"},
            follow_redirects=True,
        )
    seen = response.json()
    assert (response.status, seen["method"], seen["path"]) == (200, expected, "/echo")
    assert [r.status for r in response.history] == [status]
    if expected == method:
        assert seen["body"] == '{"k":"v"}'
        assert seen["headers"]["content-type"] == ["application/json"]
    else:
        assert seen["body"] == ""
        assert "content-type" not in seen["headers"]
        assert "content-length" not in seen["headers"] or seen["headers"]["content-length"] == ["0"]


async def test_redirects_not_followed_by_default(client: Client, base_url: str) -> None:
    async with client.session() as session:
        response = await session.get(base_url + "/redirect/302")
        assert (response.status, response.history, response.is_redirect) == (302, (), True)
        client_follows = await session.get(base_url + "/redirect/302", follow_redirects=True)
        assert client_follows.status == 200


async def test_redirect_limit(client: Client, base_url: str) -> None:
    client.max_redirects = 3
    client.follow_redirects = True
    async with client.session() as session:
        with pytest.raises(TooManyRedirects, match="more than 3 redirects") as caught:
            await session.get(base_url + "/redirect-loop")
        assert caught.value.response.status == 302
        # The session goes on.
        assert (await session.get(base_url + "/get")).status == 200


async def test_credentials_stay_with_their_origin(http1_client: Client, base_url: str) -> None:
    """Authorization and Cookie are dropped when a redirect leads to another origin."""
    other = base_url.replace("localhost", "127.0.0.1")
    headers = {"Authorization": "Bearer secret", "Cookie": "a=1", "X-Kept": "yes"}
    async with http1_client.session() as session:
        same = await session.get(
            base_url + "/redirect/302?to=/get", headers=headers, follow_redirects=True
        )
        away = await session.get(
            base_url + f"/redirect/302?to={other}/get",
            headers=headers,
            auth=("user", "pw"),
            follow_redirects=True,
        )
    assert same.json()["headers"]["authorization"] == ["Bearer secret"]
    assert same.json()["headers"]["cookie"] == ["a=1"]
    seen = away.json()["headers"]
    assert "authorization" not in seen
    assert "cookie" not in seen
    assert seen["x-kept"] == ["yes"]


async def test_basic_auth(client: Client, base_url: str) -> None:
    async with client.session() as session:
        refused = await session.get(base_url + "/basic-auth/ann/s3cret")
        response = await session.get(base_url + "/basic-auth/ann/s3cret", auth=("ann", "s3cret"))
    assert refused.status == 401
    assert response.status == 200, response
    assert response.json() == {"user": "ann"}, response.content


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
async def test_digest_auth(client: Client, base_url: str, algorithm: str) -> None:
    url = base_url + f"/digest-auth/{algorithm}/ann/s3cret?x=1"
    async with client.session() as session:
        refused = await session.get(url, auth=DigestAuth("ann", "wrong"))
        response = await session.post(url, auth=DigestAuth("ann", "s3cret"), json={"a": 1})
        redirected = await session.get(
            base_url + f"/redirect/302?to=/digest-auth/{algorithm}/ann/s3cret",
            auth=DigestAuth("ann", "s3cret"),
            follow_redirects=True,
        )
    assert refused.status == 401  # answered once, then given up
    assert (response.status, response.json()) == (200, {"user": "ann"})
    assert redirected.status == 200


async def test_basic_auth_of_the_client_follows_redirects(
    http1_client: Client, base_url: str
) -> None:
    http1_client.auth = BasicAuth("ann", "pw")
    http1_client.follow_redirects = True
    async with http1_client.session() as session:
        response = await session.get(base_url + "/redirect/307?to=/basic-auth/ann/pw")
    assert response.status == 200


async def test_stream(client: Client, base_url: str) -> None:
    async with client.session() as session:
        async with session.stream("GET", base_url + "/bytes/300000") as response:
            assert response.status == 200
            received = b"".join([chunk async for chunk in response.aiter_bytes()])
        async with session.stream(
            "GET", base_url + "/redirect/302?to=/bytes/10", follow_redirects=True
        ) as response:
            assert (await response.aread(), len(response.history)) == (pattern(10), 1)
        async with session.stream(Request("GET", base_url + "/bytes/5")) as response:
            assert await response.aread() == pattern(5)
    assert received == pattern(300000)


async def test_timeouts(http1_client: Client, base_url: str) -> None:
    async with http1_client.session() as session:
        with pytest.raises(TimeoutError, match=r"timed out after 0.2 s waiting for GET"):
            await session.get(base_url + "/delay/3000", timeout=0.2)
        with pytest.raises(TimeoutError, match=r"timed out after 0\.2 s"):
            await session.get(base_url + "/delay/3000", timeout=Timeout(read=0.2))
        response = await session.get(base_url + "/delay/10", timeout=Timeout(total=5, read=5))
        assert response.status == 200
        with pytest.raises(ValueError, match="positive number"):
            await session.get(base_url + "/get", timeout=-1)


def test_headers_mapping() -> None:
    headers = Headers({"Accept": "text/html", "X-One": "1"})
    headers.add("ACCEPT", "application/json")
    assert headers["accept"] == "text/html, application/json"
    assert headers.get_list("Accept") == ["text/html", "application/json"]
    assert list(headers) == ["accept", "x-one"]
    assert len(headers) == 2
    assert "X-ONE" in headers
    assert "x-two" not in headers
    headers["x-one"] = "2"
    del headers["accept"]
    assert headers.multi_items() == [("x-one", "2")]
    assert headers == {"X-One": "2"}
    assert headers.raw == [(b"x-one", b"2")]
    with pytest.raises(KeyError):
        headers["accept"]
    pairs = Headers([("a", "1"), (b"A", b"2")])
    assert pairs.get_list("a") == ["1", "2"]
    request = Request("GET", "https://h/", headers=pairs)
    assert request.headers == [(b"a", b"1"), (b"a", b"2")]
    assert Request("GET", "https://h/", headers={"X-A": "b"}).headers == [(b"x-a", b"b")]


def _installed(*modules: str) -> bool:
    return any(importlib.util.find_spec(module) is not None for module in modules)


@pytest.mark.parametrize(
    "codings",
    [
        "gzip",
        "deflate",
        "gzip,deflate",
        pytest.param(
            "br",
            marks=pytest.mark.skipif(not _installed("brotli"), reason="brotli is not installed"),
        ),
        pytest.param(
            "zstd",
            marks=pytest.mark.skipif(
                not _installed("zstandard"), reason="zstandard is not installed"
            ),
        ),
    ],
)
async def test_decompression(client: Client, base_url: str, codings: str) -> None:
    async with client.session() as session:
        asked = (await session.get(base_url + "/get")).json()["headers"]["accept-encoding"]
        response = await session.get(base_url + f"/compressed/{codings}")
        async with session.stream("GET", base_url + f"/compressed/{codings}") as streamed:
            chunks = [chunk async for chunk in streamed.aiter_bytes()]
        async with session.stream(Request("GET", base_url + f"/compressed/{codings}")) as raw:
            encoded = await raw.aread()
    assert asked[0].startswith("deflate, gzip")
    assert response.content == pattern(100000)
    assert b"".join(chunks) == pattern(100000)
    assert encoded != pattern(100000)  # a Request alone goes as it is: nothing decoded


async def test_decompression_off(http1_client: Client, base_url: str) -> None:
    http1_client.decompress = False
    async with http1_client.session() as session:
        seen = (await session.get(base_url + "/get")).json()["headers"]
        response = await session.get(base_url + "/compressed/gzip")
    assert "accept-encoding" not in seen
    assert response.content[:2] == b"\x1f\x8b"


async def test_decompression_bomb_refused(client: Client, base_url: str) -> None:
    async with client.session() as session:
        with pytest.raises(DecodingError, match="refused as a bomb"):
            await session.get(base_url + "/bomb")
        with pytest.raises(DecodingError, match="does not decode"):
            await session.get(base_url + "/corrupt")
        # The session goes on.
        assert (await session.get(base_url + "/get")).status == 200
    client.max_decompression_ratio = None
    async with client.session() as session:
        assert len((await session.get(base_url + "/bomb")).content) == 64 * 1024 * 1024


async def test_cookies(client: Client, base_url: str) -> None:
    other = base_url.replace("localhost", "127.0.0.1")
    async with client.session() as session:
        await session.get(base_url + "/cookies/set?a=1&b=2")
        seen = (await session.get(base_url + "/get")).json()["headers"]
        redirected = await session.get(base_url + "/cookies/redirect?c=3", follow_redirects=True)
        elsewhere = (await session.get(other + "/get")).json()["headers"]
        own = (await session.get(base_url + "/get", headers={"Cookie": "mine=1"})).json()
        assert sorted(cookie.name for cookie in session.cookies) == ["a", "b", "c"]
    assert seen["cookie"] == ["a=1; b=2"]
    assert redirected.json()["headers"]["cookie"] == ["a=1; b=2; c=3"]
    assert "cookie" not in elsewhere
    assert own["headers"]["cookie"] == ["mine=1"]
    async with client.session() as session:  # a new session, a new jar
        assert "cookie" not in (await session.get(base_url + "/get")).json()["headers"]
