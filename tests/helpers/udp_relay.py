"""A UDP relay between one client and a server, whose outward port can change (NAT rebinding).

The client sends to :attr:`RebindingRelay.address`; the relay forwards
from a socket of its own, and :meth:`RebindingRelay.rebind` replaces that
socket, so the server sees the client's connection come from a new port,
as after a NAT rebinding. It also keeps what the client sent
(:attr:`RebindingRelay.sent`), for tests that read the connection IDs in it.
One thread; bounded by the block it is used in.
"""

from __future__ import annotations

import select
import socket
import threading
import time

from hface.common import AddressType


class RebindingRelay:
    """Relays the datagrams of one client to a server, from a port it can change (NAT rebinding)."""

    def __init__(self, server: AddressType) -> None:
        self._server = server
        self._front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._front.bind(("127.0.0.1", 0))
        self.address: AddressType = self._front.getsockname()
        self._back = self._new_back()
        #: The ports it relayed from, in order.
        self.outward_ports = [self._back.getsockname()[1]]
        #: Every datagram the client sent, in order.
        self.sent: list[bytes] = []
        self._client: AddressType | None = None
        self._rebind = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _new_back(self) -> socket.socket:
        back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        back.connect(self._server)
        return back

    def rebind(self) -> None:
        """From now on, relay to the server from a new port (the old one is closed)."""
        self._rebind.clear()
        self._rebind.set()
        deadline = time.monotonic() + 5
        while self._rebind.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._rebind.is_set():
                self._back.close()
                self._back = self._new_back()
                self.outward_ports.append(self._back.getsockname()[1])
                self._rebind.clear()
            readable, _, _ = select.select([self._front, self._back], [], [], 0.05)
            for sock in readable:
                if sock is self._front:
                    data, self._client = self._front.recvfrom(65535)
                    self.sent.append(data)
                    self._back.send(data)
                elif self._client is not None:
                    self._front.sendto(sock.recv(65535), self._client)

    def __enter__(self) -> RebindingRelay:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._front.close()
        self._back.close()
