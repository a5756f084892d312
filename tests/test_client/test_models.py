"""URL, Origin and Request parsing."""

from __future__ import annotations

import pytest

from hface.client import URL, Origin, Request


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://example.com", URL("https", "example.com", 443, "/")),
        ("http://example.com/", URL("http", "example.com", 80, "/")),
        ("example.com:8080/a/b", URL("http", "example.com", 8080, "/a/b")),
        ("HTTPS://Example.COM/Path", URL("https", "example.com", 443, "/Path")),
        ("https://[::1]:8443/x?y=1", URL("https", "::1", 8443, "/x?y=1")),
        ("https://[::1]/", URL("https", "::1", 443, "/")),
        ("https://h/a%20b?q=%2F&r", URL("https", "h", 443, "/a%20b?q=%2F&r")),
        ("https://h/p#fragment", URL("https", "h", 443, "/p")),
        ("http://127.0.0.1:5443", URL("http", "127.0.0.1", 5443, "/")),
        ("https://h/a b?q=x y", URL("https", "h", 443, "/a%20b?q=x%20y")),
        ("https://h/é/%7e?ü=%", URL("https", "h", 443, "/%C3%A9/%7e?%C3%BC=%25")),
        ('https://h/a<b>"', URL("https", "h", 443, "/a%3Cb%3E%22")),
        ("https://Bücher.example/", URL("https", "xn--bcher-kva.example", 443, "/")),
        ("https://straße.de/", URL("https", "xn--strae-oqa.de", 443, "/")),
    ],
)
def test_url_parse(text: str, expected: URL) -> None:
    assert URL.parse(text) == expected


def test_url_properties() -> None:
    url = URL.parse("https://[::1]:8443/x?y=1")
    assert url.origin == Origin("https", "::1", 8443)
    assert url.authority == "[::1]:8443"
    assert str(url) == "https://[::1]:8443/x?y=1"
    assert URL.parse("https://h:443/").authority == "h"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty URL"),
        ("ftp://example.com/", "unsupported scheme 'ftp'"),
        ("mailto:someone", "unsupported scheme"),
        ("https:///path", "no host"),
        ("https://exa mple.com/", "bad host"),
        ("https://example.com:99999/", "out of range"),
        ("https://example.com:abc/", "invalid URL"),
        ("https://[::zz]/", "invalid URL"),
        ("https://user:pw@example.com/", "credentials"),
        ("https://example.com/a\nb", "control characters"),
        ("https://bad_idn_ü.example/", "bad host"),
        ("https://example.com:0/", "port 0"),
    ],
)
def test_url_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        URL.parse(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://localhost:6443", Origin("https", "localhost", 6443)),
        ("https://localhost:6443/", Origin("https", "localhost", 6443)),
        ("localhost", Origin("http", "localhost", 80)),
        ("https://[2001:db8::1]", Origin("https", "2001:db8::1", 443)),
    ],
)
def test_origin_parse(text: str, expected: Origin) -> None:
    origin = Origin.parse(text)
    assert origin == expected
    assert origin.address == (expected.host, expected.port)
    assert origin.tls is (expected.scheme == "https")


@pytest.mark.parametrize("text", ["https://h/path", "https://h/?q", "gopher://h", "https://"])
def test_origin_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="origin"):
        Origin.parse(text)


def test_origin_str() -> None:
    assert str(Origin("https", "::1", 443)) == "https://[::1]:443"


def test_request() -> None:
    request = Request("GET", "https://h:8443/a?b", headers=[(b"X-A", b"1"), (b"X-B", b"2")])
    assert request.url == URL("https", "h", 8443, "/a?b")
    assert request.headers == [(b"x-a", b"1"), (b"x-b", b"2")]
    assert request.protocol_headers[:4] == [
        (b":method", b"GET"),
        (b":scheme", b"https"),
        (b":authority", b"h:8443"),
        (b":path", b"/a?b"),
    ]
    with pytest.raises(ValueError, match="method"):
        Request("GE T", "https://h/")
    with pytest.raises(ValueError, match="pseudo-header"):
        Request("GET", "https://h/", headers=[(b":path", b"/x")])


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ([("x\n", "1")], "invalid header field name"),
        ([("x y", "1")], "invalid header field name"),
        ([("é", "1")], "invalid header field 'é'"),
        ([("x", "a\r\nInjected: 1")], "CR, LF or NUL"),
        ([(b"x", b"a\x00")], "CR, LF or NUL"),
    ],
)
def test_request_rejects_bad_headers(headers: list[tuple[str, str]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Request("GET", "https://h/", headers=headers)


def test_request_content() -> None:
    assert Request("POST", "https://h/", content=b"ab").content == b"ab"
    assert Request("GET", "https://h/").content == b""
    with pytest.raises(ValueError, match="method"):
        Request("GET\n", "https://h/")
    with pytest.raises(TypeError, match="bytes or an async iterable of bytes, not str"):
        Request("POST", "https://h/", content="text")  # type: ignore[arg-type]
