"""The protocol registry: built-in implementations and entry points."""

from __future__ import annotations

from pathlib import Path

import pytest

from hface.protocols import (
    PREFERRED_IMPLEMENTATIONS,
    PROTOCOL_KINDS,
    HTTPOverQUICClientFactory,
    HTTPOverQUICServerFactory,
    HTTPOverTCPFactory,
    ProtocolRegistry,
    protocol_registry,
)


@pytest.mark.parametrize("kind", list(PROTOCOL_KINDS))
def test_builtin_factories(kind: str) -> None:
    factory = protocol_registry.create(kind)
    expected: type[object]
    if kind.startswith("http3_client"):
        expected = HTTPOverQUICClientFactory
    elif kind.startswith("http3_server"):
        expected = HTTPOverQUICServerFactory
    else:
        expected = HTTPOverTCPFactory
    assert isinstance(factory, expected)
    assert protocol_registry.names(kind)[0] == PROTOCOL_KINDS[kind][0]


def test_register_a_third_party_implementation() -> None:
    registry = ProtocolRegistry(load_entry_points=False)
    registry.register("http1_server", "mine", "hface.protocols.http1:HTTP1ServerFactory")
    assert registry.names("http1_server") == ["h11", "mine"]
    assert registry.get_factory_class("http1_server", "mine") is registry.get_factory_class(
        "http1_server"
    )


def test_unknown_names_are_clear_errors() -> None:
    registry = ProtocolRegistry(load_entry_points=False)
    with pytest.raises(ValueError, match="no http2_server implementation named 'nope'"):
        registry.get_factory_class("http2_server", "nope")
    with pytest.raises(ValueError, match="unknown protocol kind 'http4_server'"):
        registry.names("http4_server")


def test_entry_points_are_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A distribution declaring ``hface.protocols`` entry points is found."""
    site = tmp_path
    dist_info = site / "hface_fake-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: hface-fake\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(
        "[hface.protocols]\n"
        "http2_server.fake = hface.protocols.http2:HTTP2ServerFactory\n"
        "not-a-kind.x = hface.protocols.http2:HTTP2ServerFactory\n"
    )
    monkeypatch.syspath_prepend(str(site))
    registry = ProtocolRegistry()
    assert registry.names("http2_server") == ["h2", "fake"]
    assert registry.get_factory_class("http2_server", "fake").__name__ == "HTTP2ServerFactory"


def test_httptools_is_registered_by_an_entry_point_of_hface_core() -> None:
    """``hface-core[httptools]`` declares ``http1_server.httptools``; it is preferred."""
    from hface.protocols.http1._httptools import HTTPToolsServerFactory

    assert protocol_registry.names("http1_server") == ["h11", "httptools"]
    assert protocol_registry.get_factory_class("http1_server", "httptools") is (
        HTTPToolsServerFactory
    )
    assert protocol_registry.preferred_name("http1_server") == "httptools"
    assert isinstance(protocol_registry.create("http1_server", "httptools"), HTTPOverTCPFactory)
    assert PREFERRED_IMPLEMENTATIONS["http1_server"] == ("httptools",)


@pytest.mark.parametrize("kind", list(PROTOCOL_KINDS))
def test_the_builtin_implementation_is_preferred_when_nothing_else_is_known(kind: str) -> None:
    registry = ProtocolRegistry(load_entry_points=False)
    assert registry.preferred_name(kind) == PROTOCOL_KINDS[kind][0]


def test_a_preferred_implementation_that_does_not_import_is_passed_over() -> None:
    """Without its extra (here: a module that does not exist) the built-in one is used."""
    registry = ProtocolRegistry(load_entry_points=False)
    registry.register("http1_server", "httptools", "hface_no_such_module:Factory")
    assert registry.preferred_name("http1_server") == "h11"
    with pytest.raises(ValueError, match="unknown protocol kind"):
        registry.preferred_name("http4_server")
