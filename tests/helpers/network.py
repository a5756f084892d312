"""Helpers for tests on real loopback sockets."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import TypeAlias

import pytest

from hface.networking import SystemNetworking


def has_ipv6_loopback() -> bool:
    """Whether this host can bind ``::1`` (some containers cannot)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


#: Skips a test where the host has no IPv6 loopback.
needs_ipv6 = pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback")

#: The loopback hosts of both families, for parametrizing; IPv6 skipped where missing.
LOOPBACK_HOSTS = ("127.0.0.1", pytest.param("::1", marks=needs_ipv6))

#: The ``networking`` fixture of tests/test_networking: makes a SystemNetworking
#: (taking its arguments) for the stream implementation under test.
NetworkingFactory: TypeAlias = Callable[..., SystemNetworking]
