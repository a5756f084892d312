"""A flood of QUIC Initials that are never followed up: a handshake flood (issue 18).

Each Initial is genuine (aioquic's client wrote it: a ClientHello in a
padded 1,200-byte datagram, a fresh connection ID) and goes out from a UDP
socket of its own, so from a port of its own, as a spoofing attacker's
would seem to; nothing that comes back is read. Building an Initial costs
about a millisecond, so they are made before the flood starts
(:func:`make_initials`); :func:`flood` then sends them at a steady rate.
Used by the tests and by ``bench/soak.py``.
"""

from __future__ import annotations

import socket
import threading
import time

from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

from hface.common import AddressType


def make_initials(count: int) -> list[bytes]:
    """``count`` first Initials of as many aioquic clients (a server name of localhost)."""
    initials = []
    for _ in range(count):
        configuration = QuicConfiguration(
            is_client=True, alpn_protocols=["h3"], server_name="localhost"
        )
        client = QuicConnection(configuration=configuration)
        client.connect(("127.0.0.1", 443), now=0.0)
        initials.append(client.datagrams_to_send(now=0.0)[0][0])
    return initials


def flood(
    address: AddressType,
    initials: list[bytes],
    *,
    rate: float,
    stop: threading.Event | None = None,
) -> int:
    """Send ``initials`` to ``address`` at ``rate`` per second, each from a new socket.

    Blocking (run it in a thread). Returns how many went out: all of them,
    unless ``stop`` was set first.
    """
    started = time.monotonic()
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    for index, initial in enumerate(initials):
        if stop is not None and stop.is_set():
            return index
        with socket.socket(family, socket.SOCK_DGRAM) as sender:
            sender.sendto(initial, address)
        delay = started + (index + 1) / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    return len(initials)
