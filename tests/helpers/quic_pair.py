"""An HTTP/3 client and server joined in memory, on a clock the test controls.

Datagrams move between the two protocols with no sockets; time is a float
the pair advances, firing each side's timer when it falls due.
Certificates are made at test time with ``trustme`` (once per process).
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hface.common import ClientTLSConfig, DatagramType, ServerTLSConfig
from hface.protocols import HTTPOverQUICProtocol
from tests.helpers.certs import make_tls_files
from tests.helpers.pairs import ProtocolPair

CLIENT_ADDRESS = ("127.0.0.1", 50000)
SERVER_ADDRESS = ("127.0.0.1", 4433)
#: Timers this close are run by :meth:`QUICProtocolPair.transfer` itself.
SETTLE_TIME = 0.03


@functools.cache
def certificates() -> tuple[str, str, str]:
    """Return ``(cafile, certfile, keyfile)`` for ``localhost``, made once per process."""
    files = make_tls_files(Path(tempfile.mkdtemp(prefix="hface-quic-pair-")))
    return files.ca_file, files.server_cert_file, files.server_key_file


class QUICProtocolPair(ProtocolPair):
    """Two ``HTTPOverQUICProtocol`` objects exchanging datagrams on a shared clock."""

    client: HTTPOverQUICProtocol
    server: HTTPOverQUICProtocol

    def __init__(
        self,
        client: HTTPOverQUICProtocol,
        server: HTTPOverQUICProtocol,
        *,
        now: float = 1000.0,
    ) -> None:
        self.client = client
        self.server = server
        self.now = now
        client.clock(now)
        server.clock(now)

    def transfer(self) -> int:
        moved = 0
        for _ in range(10_000):
            step = self._pipe(self.client, self.server, CLIENT_ADDRESS)
            step += self._pipe(self.server, self.client, SERVER_ADDRESS)
            if not step:
                if self._fire_due_timers():
                    continue
                return moved
            moved += step
        raise AssertionError("the pair never became quiescent")

    def advance(self, seconds: float) -> int:
        """Move the clock forward, firing the timers that fall due, then transfer.

        :return: the bytes moved meanwhile.
        """
        deadline = self.now + seconds
        moved = self.transfer()
        while True:
            timers = [t for t in (self.client.get_timer(), self.server.get_timer()) if t]
            due = [t for t in timers if t <= deadline]
            if not due:
                break
            self.now = max(self.now, min(due))
            self.client.clock(self.now)
            self.server.clock(self.now)
            moved += self.transfer()
        self.now = deadline
        self.client.clock(self.now)
        self.server.clock(self.now)
        return moved + self.transfer()

    def _fire_due_timers(self) -> bool:
        # Pacing and delayed acknowledgements hold datagrams back for a few
        # milliseconds: let such short timers run, never the idle timeout.
        timers = [t for t in (self.client.get_timer(), self.server.get_timer()) if t is not None]
        if not timers or min(timers) > self.now + SETTLE_TIME:
            return False
        self.now = max(self.now, min(timers))
        self.client.clock(self.now)
        self.server.clock(self.now)
        return True

    def _pipe(
        self,
        source: HTTPOverQUICProtocol,
        target: HTTPOverQUICProtocol,
        source_address: tuple[str, int],
    ) -> int:
        datagrams: Sequence[DatagramType] = source.datagrams_to_send()
        moved = 0
        for data, _address in datagrams:
            target.clock(self.now)
            target.datagram_received((data, source_address))
            moved += len(data)
        return moved


def make_quic_pair(**factory_options: Any) -> QUICProtocolPair:
    """Return a connected HTTP/3 pair, handshake done and its events drained.

    :param factory_options: passed to both factories (windows, limits...).
    """
    from hface.protocols.http3 import HTTP3ClientFactory, HTTP3ServerFactory

    cafile, certfile, keyfile = certificates()
    client = HTTP3ClientFactory(**factory_options)(
        remote_address=SERVER_ADDRESS,
        server_name="localhost",
        tls_config=ClientTLSConfig(cafile=cafile),
    )
    server = HTTP3ServerFactory(**factory_options)(
        tls_config=ServerTLSConfig(certfile=certfile, keyfile=keyfile)
    )
    pair = QUICProtocolPair(client, server)
    pair.transfer()
    if not (client.handshake_completed and server.handshake_completed):
        # Acknowledgements and HANDSHAKE_DONE can wait on the ack delay.
        pair.advance(0.1)
    assert client.handshake_completed
    assert server.handshake_completed
    pair.client_events()
    pair.server_events()
    return pair


__all__ = ("CLIENT_ADDRESS", "SERVER_ADDRESS", "QUICProtocolPair", "certificates", "make_quic_pair")
