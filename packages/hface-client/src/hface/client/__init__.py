"""The client facade: ``Client`` and ``ProxyClient`` (in progress)."""

__all__ = ()
