"""Sphinx configuration: ``hatch run docs:build`` builds docs/_build/html.

The build is nitpicky and turns warnings into errors, so every cross
reference must resolve. There is no intersphinx (CI cannot download
inventories): the standard library is linked by ``_ext/hface_xref.py``, and
the other external names that signatures mention are listed in
``nitpick_ignore_regex`` below, by the library they come from.

Local extensions, in ``_ext/``: ``hface_cli_usage`` (the CLI help, from the
argparse parser), ``hface_xref`` (cross references to names re-exported from
private modules) and ``hface_autodoc`` (docstrings and bases of those names).
"""

from __future__ import annotations

import sys
from importlib.metadata import version as distribution_version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "_ext"))

project = "hface"
author = "hface contributors"
copyright = "hface contributors"
release = distribution_version("hface-core")
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "hface_cli_usage",
    "hface_xref",
    "hface_autodoc",
]

exclude_patterns = ["_build"]
default_role = "py:obj"
nitpicky = True

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_class_signature = "mixed"
autodoc_preserve_defaults = True
autodoc_default_options = {"show-inheritance": True}

html_theme = "alabaster"
html_title = f"hface {release}"
html_theme_options = {
    "description": "HTTP/1.1, HTTP/2 and HTTP/3 for Python",
    "fixed_sidebar": True,
}

# Names from outside hface that appear in signatures and base classes. Without
# intersphinx they cannot link; each line says which library they belong to.
nitpick_ignore_regex = [
    # anyio: ByteStream, Listener, UnreliableObjectStream, TaskStatus, TLSAttribute, ...
    ("py:.*", r"anyio(\..*)?"),
    # aioquic: QuicConfiguration, in the signatures of the HTTP/3 protocols.
    ("py:.*", r"aioquic(\..*)?"),
]
nitpick_ignore = [
    # hface.server's private alias for ASGI 3 applications, Callable[..., Awaitable[None]]:
    # the ASGIServer docstring says what it is.
    ("py:class", "ASGIApp"),
    # hface.client's private aliases for the argument types of ClientSession.request
    # (HeadersInput: a Headers, a mapping or pairs; ParamsInput: a mapping or pairs;
    # AuthInput: a BasicAuth, a DigestAuth or a pair; TimeoutInput: a number or a Timeout;
    # FilesInput: contents or (filename, content[, type]) by field name): the
    # docstrings say what each takes.
    ("py:class", "HeadersInput"),
    ("py:class", "ParamsInput"),
    ("py:class", "AuthInput"),
    ("py:class", "TimeoutInput"),
    ("py:class", "FilesInput"),
    # The standard library's contextlib, in ClientSession.stream's signature, and its
    # http.cookiejar, the type of Client.cookies and ClientSession.cookies.
    ("py:class", "AbstractAsyncContextManager"),
    ("py:class", "CookieJar"),
    ("py:class", "http.cookiejar.CookieJar"),
]
