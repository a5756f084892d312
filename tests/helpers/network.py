"""Helpers for tests on real loopback sockets."""

from __future__ import annotations

import socket
import time
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


def port_is_free(port: int, *, udp: bool = True) -> bool:
    """Whether a server could bind ``127.0.0.1:port`` now (TCP, and UDP unless not asked).

    As the servers bind: connections in TIME-WAIT do not hold the TCP port.
    The examples listen on fixed ports, which another run on the same host
    may hold.
    """
    kinds = (socket.SOCK_STREAM, socket.SOCK_DGRAM) if udp else (socket.SOCK_STREAM,)
    for kind in kinds:
        with socket.socket(socket.AF_INET, kind) as sock:
            if kind == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def wait_until_port_is_free(port: int, *, udp: bool = True, timeout: float = 10.0) -> None:
    """Wait (blocking) until :func:`port_is_free`; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not port_is_free(port, udp=udp):  # a previous run may still be closing its sockets
        if time.monotonic() > deadline:
            pytest.fail(f"port {port}, which the example uses, is taken by another process")
        time.sleep(0.1)


#: Skips a test where the host has no IPv6 loopback.
needs_ipv6 = pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback")

#: The loopback hosts of both families, for parametrizing; IPv6 skipped where missing.
LOOPBACK_HOSTS = ("127.0.0.1", pytest.param("::1", marks=needs_ipv6))

#: The ``networking`` fixture of tests/test_networking: makes a SystemNetworking
#: (taking its arguments) for the stream implementation under test.
NetworkingFactory: TypeAlias = Callable[..., SystemNetworking]
