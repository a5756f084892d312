"""``hface client`` beside curl 7.88 itself: the same command lines, nginx, the same results.

One table (issue 16's acceptance): each row is a command line that both
curl (Debian's ``/usr/bin/curl``) and ``hface client`` get as it is, over
``--http1.1`` and ``--http2``, against one nginx (see
:mod:`tests.helpers.curl_site` for its routes). Both must exit with the
same code and write the same bytes (stdout, and the files a row names);
``-w`` variables that are times are compared as present and plausible.

What is compared is normalized only where the two differ by design, as
``docs/cli.rst`` says: the ``User-Agent`` (every row sends ``-A``); in
heads (``-i``, ``-I``, ``-D``) the case of field names, nginx's
``Connection`` field (hface's HTTP/1.1 layer keeps it to itself), the
reason phrase and curl's space after an HTTP/2 status, and the ``Date``;
the random multipart boundary (``-F``). Each tool runs in a directory of
its own (``-O``, ``-o``, ``-D``, ``-c`` write there), both at once.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers.certs import TLSFiles
from tests.helpers.curl_site import PASSWORD, USER, Site, curl_site
from tests.helpers.peers import free_port

CURL = shutil.which("curl")

pytestmark = [
    pytest.mark.peer("curl"),
    pytest.mark.peer("nginx"),
    pytest.mark.skipif(CURL is None, reason="curl is not installed (Debian package curl)"),
]

#: Seconds either tool may take for one row.
TIME_LIMIT = 60

#: A file both tools send (``-T``, ``-F``, ``--data-binary``).
UPLOAD = b"file content\nsecond line\r\n"
#: A Netscape cookie file both tools read (``-b FILE``).
COOKIE_FILE = (
    "# Netscape HTTP Cookie File\n\n"
    "localhost\tFALSE\t/\tFALSE\t0\tfrom_file\tyes\n"
    ".localhost\tTRUE\t/cookies\tFALSE\t0\tdeeper\t1\n"
    "localhost\tFALSE\t/elsewhere\tFALSE\t0\tnot_sent\t1\n"
)
#: A ``-w`` format in a file (``-w @FILE``).
FORMAT_FILE = "code=%{http_code} version=%{http_version}\\n"

#: The ``-w`` variables that are seconds, in the order curl's moments come.
TIMES = (
    "time_namelookup",
    "time_connect",
    "time_appconnect",
    "time_pretransfer",
    "time_starttransfer",
    "time_total",
)


@dataclass(frozen=True)
class Row:
    """One command line of the table.

    :param args: the arguments, with ``{base}`` (``https://localhost:PORT``),
        ``{port}``, ``{closed}`` (a port where nothing listens) and
        ``{key}`` (unique per run) filled in.
    :param files: files the command writes, compared too.
    :param heads: stdout (and ``files``) hold heads to normalize.
    :param times: stdout is ``-w`` output with :data:`TIMES`, checked for plausibility.
    :param versions: the HTTP versions the row runs over.
    """

    id: str
    args: tuple[str, ...]
    files: tuple[str, ...] = ()
    heads: bool = False
    times: bool = False
    versions: tuple[str, ...] = ("--http1.1", "--http2")
    normalize: Callable[[bytes], bytes] | None = field(default=None, compare=False)


def _boundary(output: bytes) -> bytes:
    return re.sub(rb"-{24}[0-9a-f]{16}", b"BOUNDARY", output)


def _cookie_lines(output: bytes) -> bytes:
    lines = [line for line in output.splitlines() if line and not line.startswith(b"# ")]
    return b"\n".join(sorted(lines))


ROWS = [
    # Fetching, and the heads.
    Row("get", ("{base}/static/hello.txt",)),
    Row("get-binary", ("{base}/static/data.bin",)),
    Row("status-404", ("{base}/status/404",)),
    Row("nginx-503", ("{base}/nginx-503",)),
    Row("include", ("-i", "{base}/static/hello.txt"), heads=True),
    Row("head", ("-I", "{base}/static/hello.txt"), heads=True),
    Row("head-follow", ("-I", "-L", "{base}/redirect/2"), heads=True),
    Row(
        "dump-header",
        ("-D", "heads.txt", "-L", "{base}/redirect/1"),
        files=("heads.txt",),
        heads=True,
    ),
    Row("dump-header-stdout", ("-D", "-", "{base}/echo/d"), heads=True),
    Row("method", ("-X", "DELETE", "{base}/echo/x")),
    # Header fields.
    Row("headers", ("-H", "X-One: 1", "-H", "Accept:", "-H", "X-Empty;", "{base}/echo")),
    Row("header-host", ("-H", "Host: example.test", "{base}/echo")),
    Row("header-file", ("-H", "@headers.txt", "{base}/echo")),
    Row("user-agent", ("-A", "agent/9", "{base}/echo")),
    Row("referer", ("-e", "http://ref.example/", "{base}/echo")),
    Row("bearer", ("--oauth2-bearer", "token123", "{base}/echo")),
    # Bodies.
    Row("data", ("-d", "a=1", "-d", "b=2", "{base}/echo")),
    Row("data-binary", ("--data-binary", "@upload.txt", "{base}/echo")),
    Row("data-raw", ("--data-raw", "@not-a-file", "{base}/echo")),
    Row(
        "data-urlencode", ("--data-urlencode", "k=a b&c", "--data-urlencode", "=x y", "{base}/echo")
    ),
    Row("data-urlencode-file", ("--data-urlencode", "f@upload.txt", "{base}/echo")),
    Row("data-stdin", ("--data-binary", "@-", "{base}/echo")),
    Row("get-query", ("-G", "-d", "a=1", "-d", "b=2", "{base}/echo?q=0")),
    Row("json", ("--json", '{"a": 1}', "--json", "[2]", "{base}/json")),
    Row("json-accept", ("--json", "{}", "-H", "Accept: text/plain", "{base}/json")),
    Row(
        "form",
        (
            "-F",
            "a=1",
            "-F",
            "f=@upload.txt",
            "-F",
            "g=@upload.txt;type=text/x-foo;filename=o.dat",
            "-F",
            "h=<upload.txt",
            "--form-string",
            "s=@literal",
            "{base}/echo",
        ),
        normalize=_boundary,
    ),
    Row("upload", ("-T", "upload.txt", "{base}/echo/")),
    Row("upload-named", ("-T", "upload.txt", "{base}/echo/put-here")),
    Row("upload-stdin", ("-T", "-", "{base}/echo/from-stdin")),
    # Redirects.
    Row(
        "follow",
        (
            "-L",
            "{base}/redirect/3",
        ),
    ),
    Row("follow-absolute", ("-L", "{base}/nginx-redirect")),
    Row(
        "no-follow", ("-w", "%{http_code} %{redirect_url} %{num_redirects}\\n", "{base}/redirect/1")
    ),
    Row(
        "max-redirs",
        ("-L", "--max-redirs", "1", "-w", "%{http_code} %{num_redirects}", "{base}/redirect/3"),
    ),
    Row("post-302", ("-L", "-d", "a=1", "{base}/redirect-to?status=302&url=/echo/after")),
    Row("post-303", ("-L", "-d", "a=1", "{base}/redirect-to?status=303&url=/echo/after")),
    Row("post-307", ("-L", "-d", "a=1", "{base}/redirect-to?status=307&url=/echo/after")),
    Row("post-308", ("-L", "-d", "a=1", "{base}/redirect-to?status=308&url=/echo/after")),
    Row(
        "keep-post-302",
        ("-L", "--post302", "-d", "a=1", "{base}/redirect-to?status=302&url=/echo/after"),
    ),
    Row("include-follow", ("-i", "-L", "{base}/redirect/2"), heads=True),
    Row("bad-location", ("-L", "{base}/redirect-to?url=http://%5Bbad/")),
    # Authentication.
    Row("basic", ("-u", f"{USER}:{PASSWORD}", "{base}/basic/secret.txt")),
    Row("basic-wrong", ("-u", f"{USER}:nope", "-w", "%{http_code}", "{base}/basic/secret.txt")),
    Row("basic-in-url", (f"https://{USER}:{PASSWORD}@localhost:{{port}}/basic/secret.txt",)),
    Row(
        "digest",
        (
            "--digest",
            "-u",
            f"{USER}:{PASSWORD}",
            "-w",
            "%{http_code} %{num_redirects}",
            "{base}/digest",
        ),
    ),
    Row("digest-wrong", ("--digest", "-u", f"{USER}:nope", "-w", " %{http_code}", "{base}/digest")),
    # Cookies.
    Row("cookie-text", ("-b", "x=1; y=2", "{base}/cookies/show")),
    Row("cookie-file", ("-b", "cookies.txt", "{base}/cookies/show")),
    Row(
        "cookie-jar",
        ("-c", "jar.txt", "{base}/cookies/set?a=1&b=two%20words"),
        files=("jar.txt",),
        normalize=_cookie_lines,
    ),
    Row("cookie-engine-follow", ("-L", "-b", "", "{base}/cookies/set-and-redirect?k=v")),
    Row("cookie-no-engine-follow", ("-L", "{base}/cookies/set-and-redirect?k=v")),
    Row(
        "cookie-text-and-engine",
        ("-L", "-b", "pre=1", "-c", "-", "{base}/cookies/set-and-redirect?k=v"),
        normalize=_cookie_lines,
    ),
    # Compression.
    Row("compressed", ("--compressed", "{base}/gzip/text.txt")),
    Row(
        "compressed-sizes",
        (
            "--compressed",
            "-o",
            "/dev/null",
            "-w",
            "%{size_download} %{content_type}",
            "{base}/gzip/text.txt",
        ),
    ),
    Row("not-compressed", ("-w", "%{size_download}", "-o", "/dev/null", "{base}/gzip/text.txt")),
    # Output.
    Row("output", ("-o", "out.bin", "{base}/static/data.bin"), files=("out.bin",)),
    Row("remote-name", ("-O", "{base}/static/hello.txt"), files=("hello.txt",)),
    Row(
        "remote-name-all",
        ("--remote-name-all", "{base}/static/hello.txt", "{base}/static/data.bin"),
        files=("hello.txt", "data.bin"),
    ),
    Row(
        "output-dir",
        ("--create-dirs", "--output-dir", "sub/dir", "-o", "x.txt", "{base}/static/hello.txt"),
        files=("sub/dir/x.txt",),
    ),
    Row("empty-body-file", ("-o", "empty.txt", "{base}/status/204"), files=("empty.txt",)),
    Row(
        "write-out",
        (
            "-w",
            "%{http_code} %{http_version} %{size_download} %{url_effective} %{num_redirects} "
            "%{content_type} %{exitcode} %{method} %{response_code} %{scheme} "
            "%header{content-type} %{urlnum} %{url}\\n",
            "-L",
            "{base}/redirect/1",
        ),
    ),
    Row("write-out-file", ("-w", "@format.txt", "{base}/static/hello.txt")),
    Row(
        "write-out-stderr",
        (
            "-o",
            "/dev/null",
            "-w",
            "%{stderr}%{http_code}%{stdout}%%done\\t\\n",
            "{base}/static/hello.txt",
        ),
    ),
    Row(
        "write-out-onerror",
        ("-w", "always%{onerror}only on error %{exitcode}", "http://127.0.0.1:{closed}/"),
        versions=("--http2",),
    ),
    Row(
        "times",
        (
            "-o",
            "/dev/null",
            "-w",
            " ".join(f"%{{{name}}}" for name in TIMES),
            "{base}/static/hello.txt",
        ),
        times=True,
    ),
    Row(
        "times-cleartext",
        (
            "-o",
            "/dev/null",
            "-w",
            " ".join(f"%{{{name}}}" for name in TIMES),
            "{cleartext}/static/hello.txt",
        ),
        times=True,
        versions=("--http1.1",),
    ),
    Row(
        "times-failed",
        (
            "-o",
            "/dev/null",
            "-w",
            " ".join(f"%{{{name}}}" for name in TIMES),
            "http://127.0.0.1:{closed}/",
        ),
        times=True,
        versions=("--http1.1",),
    ),
    Row("cleartext", ("-i", "{cleartext}/echo/plain"), heads=True, versions=("--http1.1",)),
    # Failures.
    Row("fail", ("-f", "{base}/status/404")),
    Row("fail-with-body", ("--fail-with-body", "{base}/status/500")),
    Row("silent", ("-s", "http://127.0.0.1:{closed}/"), versions=("--http2",)),
    Row(
        "show-error",
        ("-s", "-S", "-w", "%{http_code}", "http://127.0.0.1:{closed}/"),
        versions=("--http2",),
    ),
    Row("max-time", ("-m", "1", "{base}/slow")),
    Row(
        "unknown-option",
        ("--no-such-option", "value", "{base}/static/hello.txt"),
        versions=("--http2",),
    ),
    Row(
        "cacert-missing",
        ("--cacert", "missing.pem", "{base}/static/hello.txt"),
        versions=("--http2",),
    ),
    # Addresses.
    Row(
        "resolve",
        (
            "--resolve",
            "localhost:{port}:127.0.0.1",
            "-w",
            " %{remote_ip} %{remote_port}",
            "{base}/static/hello.txt",
        ),
    ),
    Row(
        "resolve-other-name",
        ("-k", "--resolve", "example.test:{port}:127.0.0.1", "https://example.test:{port}/echo"),
    ),
    Row(
        "connect-to",
        ("-k", "--connect-to", "example.test:443:localhost:{port}", "https://example.test/echo"),
    ),
    # Retries.
    Row("retry", ("--retry", "1", "{base}/flaky/{key}?fail=1")),
    Row("retry-fail", ("-f", "--retry", "1", "{base}/flaky/{key}?fail=1&status=500")),
    Row("retry-not-404", ("--retry", "1", "{base}/flaky/{key}?fail=1&status=404")),
    Row(
        "retry-file",
        ("--retry", "1", "-o", "retried.txt", "{base}/flaky/{key}?fail=1&status=429"),
        files=("retried.txt",),
    ),
    Row(
        "retry-max-time",
        ("--retry", "3", "--retry-max-time", "1", "{base}/flaky/{key}?fail=5"),
        versions=("--http2",),
    ),
    Row(
        "retry-all-errors",
        ("-f", "--retry", "1", "--retry-all-errors", "{base}/status/404"),
        versions=("--http2",),
    ),
    Row(
        "retry-connrefused",
        ("-sS", "--retry", "1", "--retry-connrefused", "http://127.0.0.1:{closed}/"),
        versions=("--http1.1",),
    ),
    # Many URLs.
    Row("many", ("{base}/static/hello.txt", "{base}/echo/two")),
    Row("many-last-fails", ("-s", "{base}/static/hello.txt", "http://127.0.0.1:{closed}/")),
    Row(
        "many-first-fails",
        ("-s", "http://127.0.0.1:{closed}/", "{base}/static/hello.txt"),
        versions=("--http2",),
    ),
    Row(
        "parallel",
        ("-Z", "-o", "a.txt", "-o", "b.txt", "{base}/static/hello.txt", "{base}/echo/two"),
        files=("a.txt", "b.txt"),
    ),
    Row(
        "parallel-max",
        ("-Z", "--parallel-max", "1", "{base}/static/hello.txt", "{base}/echo/two"),
    ),
    Row(
        "parallel-fails",
        ("-Z", "-s", "-o", "a.txt", "{base}/static/hello.txt", "http://127.0.0.1:{closed}/"),
        files=("a.txt",),
    ),
]


@pytest.fixture(scope="module")
def site(tls_files: TLSFiles, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """nginx in front of the test app (:mod:`tests.helpers.curl_site`)."""
    with curl_site(tmp_path_factory.mktemp("curl-site"), tls_files) as running:
        yield running


@dataclass(frozen=True)
class Run:
    """What one tool did with one row."""

    code: int
    stdout: bytes
    stderr: bytes
    directory: Path


def _prepare(directory: Path) -> None:
    directory.mkdir()
    (directory / "upload.txt").write_bytes(UPLOAD)
    (directory / "cookies.txt").write_text(COOKIE_FILE)
    (directory / "headers.txt").write_text("X-From-File: 1\nX-Second: two\n")
    (directory / "format.txt").write_text(FORMAT_FILE)


def _run_both(row: Row, version: str, site: Site, tmp_path: Path) -> tuple[Run, Run]:
    closed = free_port()
    processes = {}
    for tool, command in (
        ("curl", [CURL or "curl"]),
        ("hface", [sys.executable, "-m", "hface", "client"]),
    ):
        directory = tmp_path / tool
        _prepare(directory)
        values = {
            "{base}": site.base,
            "{cleartext}": site.cleartext_base,
            "{port}": str(site.port),
            "{closed}": str(closed),
            "{key}": f"{tool}-{uuid.uuid4().hex}",
        }
        args = []
        for arg in row.args:
            for placeholder, value in values.items():
                arg = arg.replace(placeholder, value)
            args.append(arg)
        argv = [*command, "--cacert", site.cafile, "-A", "test-agent/1", version, *args]
        processes[tool] = (
            subprocess.Popen(
                argv,
                cwd=directory,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            ),
            directory,
        )
    runs = {}
    for tool, (process, directory) in processes.items():
        stdout, stderr = process.communicate(input=b"from stdin\n", timeout=TIME_LIMIT)
        runs[tool] = Run(process.returncode, stdout, stderr, directory)
    return runs["curl"], runs["hface"]


_DATE = re.compile(rb"^(date|last-modified): .*$", re.MULTILINE | re.IGNORECASE)


def _heads(output: bytes) -> bytes:
    """Heads as comparable: names lower case, no Connection, status code only, no dates."""
    lines = []
    for line in output.split(b"\r\n"):
        if line.startswith(b"HTTP/"):
            line = b" ".join(line.split(b" ")[:2])
        elif b":" in line and not line.startswith(b" "):
            name, _, value = line.partition(b":")
            if name.lower() == b"connection":
                continue
            line = name.lower() + b":" + value
        lines.append(line)
    return _DATE.sub(rb"\1: DATE", b"\r\n".join(lines))


def _comparable(row: Row, output: bytes) -> bytes:
    if row.heads:
        output = _heads(output)
    if row.normalize is not None:
        output = row.normalize(output)
    return output


def _check_times(text: str) -> list[float]:
    values = [float(value) for value in text.split()]
    assert len(values) == len(TIMES), text
    assert all(0 <= value < TIME_LIMIT for value in values), text
    # Each moment comes after the ones before it (0 where it did not happen: no TLS).
    moments = [value for value in values if value > 0]
    assert moments == sorted(moments), text
    return values


#: Each row over each of its versions.
CASES = [
    pytest.param(row, version, id=f"{row.id}-{version.lstrip('-')}")
    for row in ROWS
    for version in row.versions
]


@pytest.mark.parametrize(("row", "version"), CASES)
def test_like_curl(row: Row, version: str, site: Site, tmp_path: Path) -> None:
    curl, hface = _run_both(row, version, site, tmp_path)
    context = (
        f"curl: exit {curl.code}, stderr {curl.stderr!r}\n"
        f"hface: exit {hface.code}, stderr {hface.stderr!r}"
    )
    assert hface.code == curl.code, context
    assert b"Traceback" not in hface.stderr, context
    if row.times:
        curl_times = _check_times(curl.stdout.decode())
        hface_times = _check_times(hface.stdout.decode())
        # The same moments happened (TLS or not; a connection or not).
        assert [value > 0 for value in hface_times] == [value > 0 for value in curl_times]
    else:
        assert _comparable(row, hface.stdout) == _comparable(row, curl.stdout), context
    for name in row.files:
        curl_file, hface_file = curl.directory / name, hface.directory / name
        assert hface_file.exists() == curl_file.exists(), name
        if curl_file.exists():
            expected = _comparable(row, curl_file.read_bytes())
            assert _comparable(row, hface_file.read_bytes()) == expected, name
    # Both have something to say on stderr, or neither has (-s).
    assert bool(_messages(hface.stderr)) == bool(_messages(curl.stderr)), context


def _messages(stderr: bytes) -> list[bytes]:
    """The errors and warnings on stderr, without curl's progress meter."""
    lines = re.split(rb"[\r\n]+", stderr)
    return [line for line in lines if re.match(rb"(curl|hface)\b|Warning", line)]


# -- where hface differs from curl on purpose ---------------------------------------------


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        argv,
        cwd=cwd,
        capture_output=True,
        timeout=TIME_LIMIT,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_http2_to_a_server_without_http2_is_named(site: Site, tmp_path: Path) -> None:
    """nginx without HTTP/2 ends the handshake (no_application_protocol): hface says what it means.

    curl's ``--http2`` falls back to HTTP/1.1; hface's speaks HTTP/2 only.
    """
    url = f"{site.http1_base}/static/hello.txt"
    hface = _run(
        [sys.executable, "-m", "hface", "client", "--cacert", site.cafile, "--http2", url], tmp_path
    )
    assert hface.returncode == 35, hface.stderr
    assert hface.stderr.decode() == (
        f"hface: error: cannot connect to {site.http1_base}: the TLS handshake failed: "
        "the server speaks none of the protocols offered by ALPN (h2), only HTTP/1.1\n"
    )
    curl = _run(
        [CURL or "curl", "-sS", "--cacert", site.cafile, "--http2", "-w", " %{http_version}", url],
        tmp_path,
    )
    assert curl.stdout == b"hello from nginx\n 1.1"
    # Without --http2 hface speaks HTTP/1.1 there, as curl.
    hface = _run(
        [
            sys.executable,
            "-m",
            "hface",
            "client",
            "--cacert",
            site.cafile,
            "-w",
            " %{http_version}",
            url,
        ],
        tmp_path,
    )
    assert hface.stdout == b"hello from nginx\n 1.1"


def test_http2_with_prior_knowledge_to_an_http1_server(site: Site, tmp_path: Path) -> None:
    """nginx answers the HTTP/2 preface in HTTP/1.1: the error says so (curl: "empty reply", 52)."""
    url = f"{site.cleartext_base}/static/hello.txt"
    hface = _run(
        [sys.executable, "-m", "hface", "client", "--http2-prior-knowledge", url], tmp_path
    )
    assert hface.returncode == 8, hface.stderr
    assert hface.stderr.decode().endswith(
        "the server does not speak HTTP/2: it answered in HTTP/1\n"
    )
    curl = _run([CURL or "curl", "-sS", "--http2-prior-knowledge", url], tmp_path)
    assert curl.returncode != 0
