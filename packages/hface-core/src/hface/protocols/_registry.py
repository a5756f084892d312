"""The registry of protocol implementations.

hface ships one implementation of each kind (h11, h2 and aioquic). Other
distributions add theirs by declaring an entry point in the group
``hface.protocols``, named ``KIND.NAME`` and pointing at a factory class
that can be called without arguments, for example in ``pyproject.toml``::

    [project.entry-points."hface.protocols"]
    "http1_server.httptools" = "hface_httptools:HTTPToolsServerFactory"

``KIND`` is one of :data:`PROTOCOL_KINDS`. Entry points are read once, the
first time the registry is asked about a name it does not know.

Some kinds have a faster implementation that is used when it is installed:
:data:`PREFERRED_IMPLEMENTATIONS` names them, and
:meth:`ProtocolRegistry.preferred_name` picks the first that imports. The
HTTP/1.1 server on httptools (the ``hface-core[httptools]`` extra) is one:
the server facades use it by default when httptools is installed.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any, Final

#: The entry point group third-party implementations are declared in.
ENTRY_POINT_GROUP: Final = "hface.protocols"

#: Every kind of implementation, and the built-in one of each ("NAME", "module:Class").
PROTOCOL_KINDS: Final[Mapping[str, tuple[str, str]]] = {
    "http1_client": ("h11", "hface.protocols.http1:HTTP1ClientFactory"),
    "http1_server": ("h11", "hface.protocols.http1:HTTP1ServerFactory"),
    "http2_client": ("h2", "hface.protocols.http2:HTTP2ClientFactory"),
    "http2_server": ("h2", "hface.protocols.http2:HTTP2ServerFactory"),
    "http3_client": ("aioquic", "hface.protocols.http3:HTTP3ClientFactory"),
    "http3_server": ("aioquic", "hface.protocols.http3:HTTP3ServerFactory"),
}


#: Implementations preferred to the built-in one when they are installed, by kind.
PREFERRED_IMPLEMENTATIONS: Final[Mapping[str, tuple[str, ...]]] = {
    "http1_server": ("httptools",),
}


def _resolve(target: str) -> Callable[[], Any]:
    module_name, _, attribute = target.partition(":")
    factory: Callable[[], Any] = getattr(importlib.import_module(module_name), attribute)
    return factory


class ProtocolRegistry:
    """Known protocol factories, by kind (``"http2_server"``) and name (``"h2"``).

    Factories are stored as ``"module:Class"`` references and imported on
    first use, so that asking for HTTP/1.1 never imports aioquic.
    """

    def __init__(self, *, load_entry_points: bool = True) -> None:
        self._targets: dict[str, dict[str, str | Callable[[], Any]]] = {
            kind: {name: target} for kind, (name, target) in PROTOCOL_KINDS.items()
        }
        self._entry_points_loaded = not load_entry_points

    def register(self, kind: str, name: str, factory: str | Callable[[], Any]) -> None:
        """Add an implementation: a factory class, or a ``"module:Class"`` reference.

        :raises ValueError: for an unknown kind.
        """
        self._check_kind(kind)
        self._targets[kind][name] = factory

    def names(self, kind: str) -> list[str]:
        """Return the names of the implementations of ``kind``, the default first."""
        self._check_kind(kind)
        self._load_entry_points()
        return list(self._targets[kind])

    def get_factory_class(self, kind: str, name: str | None = None) -> Callable[[], Any]:
        """Return the factory class of an implementation (the built-in one if no name).

        :raises ValueError: for an unknown kind or name.
        """
        self._check_kind(kind)
        if name is None:
            name = PROTOCOL_KINDS[kind][0]
        if name not in self._targets[kind]:
            self._load_entry_points()
        target = self._targets[kind].get(name)
        if target is None:
            known = ", ".join(self.names(kind))
            raise ValueError(f"no {kind} implementation named {name!r} (known: {known})")
        if isinstance(target, str):
            target = _resolve(target)
            self._targets[kind][name] = target
        return target

    def preferred_name(self, kind: str) -> str:
        """Return the name of the implementation of ``kind`` to use by default.

        The first of :data:`PREFERRED_IMPLEMENTATIONS` that is registered
        and imports (its extra is installed), else the built-in one.

        :raises ValueError: for an unknown kind.
        """
        self._check_kind(kind)
        for name in PREFERRED_IMPLEMENTATIONS.get(kind, ()):
            try:
                self.get_factory_class(kind, name)
            except (ValueError, ImportError):
                continue
            return name
        return PROTOCOL_KINDS[kind][0]

    def create(self, kind: str, name: str | None = None) -> Any:
        """Return a new factory of an implementation, with its default options."""
        return self.get_factory_class(kind, name)()

    def _check_kind(self, kind: str) -> None:
        if kind not in PROTOCOL_KINDS:
            raise ValueError(f"unknown protocol kind {kind!r}; one of {', '.join(PROTOCOL_KINDS)}")

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        # Imported here: importlib.metadata costs a server memory for nothing
        # when no name beyond the built-in ones is asked for.
        from importlib.metadata import entry_points

        for entry_point in entry_points(group=ENTRY_POINT_GROUP):
            kind, _, name = entry_point.name.partition(".")
            if kind in PROTOCOL_KINDS and name and name not in self._targets[kind]:
                self._targets[kind][name] = entry_point.value


#: The registry the facades and the CLI consult.
protocol_registry = ProtocolRegistry()
