"""The server facade: ``ASGIServer`` and ``ProxyServer`` (in progress)."""

__all__ = ()
