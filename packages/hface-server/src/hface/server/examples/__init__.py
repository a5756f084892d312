"""Small ASGI applications to try a server with.

Each module exposes ``application``: :mod:`~hface.server.examples.hello`
(a plain-text greeting), :mod:`~hface.server.examples.alt_svc` (the same
plus an ``Alt-Svc`` header) and :mod:`~hface.server.examples.asgi_echo`
(echoes the request back).
"""

__all__ = ()
