"""Fixtures of the protocol tests: the HTTP/1.1 server implementations."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hface.protocols import HTTPOverTCPFactory
from hface.protocols.http1 import HTTP1ServerFactory

#: The HTTP/1.1 server implementations, by the name the registry knows.
HTTP1_SERVER_NAMES = ("h11", "httptools")

HTTP1ServerFactoryType = Callable[..., HTTPOverTCPFactory]


@pytest.fixture(params=HTTP1_SERVER_NAMES)
def http1_server_factory(request: pytest.FixtureRequest) -> HTTP1ServerFactoryType:
    """Each HTTP/1.1 server factory class in turn (h11's, then httptools')."""
    if request.param == "h11":
        return HTTP1ServerFactory
    from hface.protocols.http1._httptools import HTTPToolsServerFactory

    return HTTPToolsServerFactory
