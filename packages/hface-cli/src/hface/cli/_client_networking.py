"""Where ``hface client`` connects, and when: ``--resolve``, ``--connect-to``, and ``-w``'s times.

:class:`CurlNetworking` is the client's :attr:`~hface.client.Client.networking`:
:class:`~hface.networking.SystemNetworking` with curl's two ways of
choosing the address, and the moments of each connect written down:

- ``--connect-to HOST1:PORT1:HOST2:PORT2``: a connection to HOST1:PORT1 (an
  empty HOST1 or PORT1 is any) goes to HOST2:PORT2 instead (an empty one
  keeps the original). The first match wins.
- ``--resolve HOST:PORT:ADDR[,ADDR...]``: the name HOST, for PORT (``*``:
  any), resolves to those addresses, with no lookup.

The name is resolved here (``getaddrinfo``), and the addresses tried as
Happy Eyeballs tries them (the next one 0.25 s after the last began, or
once it failed), so that the lookup and the connect have times of their
own. TLS
verification and SNI keep the URL's host: :meth:`SystemNetworking.connect_tcp_tls`
opens its TCP connection with :meth:`connect_tcp`.

The transfer a connect belongs to is the one in :data:`TRANSFER` in the
task that connects (its context reaches the connection's own tasks, which
complete a QUIC handshake: :class:`HandshakeTimes` sees that end through
the protocol, see :mod:`hface.cli._instruments`).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Final

import anyio
from anyio.abc import SocketAttribute

from hface.common import AddressType, ClientTLSConfig
from hface.errors import TransportError, TransportErrorKind
from hface.networking import ByteStream, DatagramStream, SystemNetworking

from ._instruments import ConnectionObserver, ProtocolObserver
from ._write_out import TransferInfo

#: Seconds before the next address is tried while one is still connecting (RFC 8305 §5).
HAPPY_EYEBALLS_DELAY: Final = 0.25

#: The transfer the current task works for, if ``-w`` records its times.
TRANSFER: ContextVar[TransferInfo | None] = ContextVar("hface_cli_transfer", default=None)


def _split_host(text: str) -> tuple[str, str]:
    """``host:rest`` or ``[v6]:rest`` → ``(host, rest)``; raises ValueError without a colon."""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise ValueError(text)
        return host, rest[1:]
    host, colon, rest = text.partition(":")
    if not colon:
        raise ValueError(text)
    return host, rest


def _port(text: str, *, allow_any: bool) -> int | None:
    if allow_any and text in ("", "*"):
        return None
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(text)
    return int(text)


@dataclass(frozen=True)
class Resolve:
    """``--resolve HOST:PORT:ADDR[,ADDR...]``."""

    host: str
    port: int | None
    addresses: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Resolve:
        """:raises ValueError: (with ``text``) if it is not ``HOST:PORT:ADDR[,ADDR...]``."""
        try:
            host, rest = _split_host(text)
            port, colon, addresses = rest.partition(":")
            if not host or not colon or not addresses:
                raise ValueError(text)
            parsed = tuple(address.strip().strip("[]") for address in addresses.split(","))
            for address in parsed:
                ipaddress.ip_address(address)  # raises ValueError
            return cls(host.lower(), _port(port, allow_any=True), parsed)
        except ValueError:
            raise ValueError(text) from None


@dataclass(frozen=True)
class ConnectTo:
    """``--connect-to HOST1:PORT1:HOST2:PORT2``."""

    host: str | None
    port: int | None
    to_host: str | None
    to_port: int | None

    @classmethod
    def parse(cls, text: str) -> ConnectTo:
        """:raises ValueError: (with ``text``) if it is not ``HOST1:PORT1:HOST2:PORT2``.

        Any part may be empty.
        """
        try:
            host, rest = _split_host(text)
            port, colon, target = rest.partition(":")
            if not colon:
                raise ValueError(text)
            to_host, to_port = _split_host(target) if target != "" else ("", "")
            return cls(
                host.lower() or None,
                _port(port, allow_any=True),
                to_host or None,
                _port(to_port, allow_any=True),
            )
        except ValueError:
            raise ValueError(text) from None

    def apply(self, address: AddressType) -> AddressType | None:
        """The address to connect to instead of ``address``, if this rule matches it."""
        host, port = address
        if (self.host is not None and self.host != host.lower()) or (
            self.port is not None and self.port != port
        ):
            return None
        return self.to_host or host, self.to_port or port


class CurlNetworking(SystemNetworking):
    """System networking with ``--resolve`` and ``--connect-to`` (see the module docstring)."""

    def __init__(self, *, resolve: Sequence[Resolve] = (), connect_to: Sequence[ConnectTo] = ()):
        super().__init__()
        self._resolve = tuple(resolve)
        self._connect_to = tuple(connect_to)
        #: The ``(remote, local)`` addresses of the last connection to each address asked for.
        self.addresses: dict[AddressType, tuple[AddressType, AddressType]] = {}

    def _target(self, address: AddressType) -> AddressType:
        for rule in self._connect_to:
            target = rule.apply(address)
            if target is not None:
                return target
        return address

    async def _lookup(self, address: AddressType, kind: socket.SocketKind) -> list[str]:
        """The addresses to try for ``address``, the lookup's end marked.

        :raises TransportError: (``CONNECT``) if the name does not resolve.
        """
        host, port = address
        info = TRANSFER.get()
        for rule in self._resolve:
            if rule.host == host.lower() and rule.port in (None, port):
                addresses = list(rule.addresses)
                break
        else:
            try:
                ipaddress.ip_address(host.split("%", 1)[0])
                addresses = [host]
            except ValueError:
                try:
                    results = await anyio.getaddrinfo(host, port, type=kind)
                except OSError as error:  # socket.gaierror
                    reason = error.strerror or str(error)
                    raise TransportError(
                        f"cannot connect to {host}:{port}: {reason}",
                        kind=TransportErrorKind.CONNECT,
                        address=address,
                        reason=reason,
                    ) from error
                addresses = list(dict.fromkeys(str(result[4][0]) for result in results))
        if info is not None:
            info.mark("namelookup")
        return addresses

    def _connected(self, asked: AddressType, stream: ByteStream | DatagramStream) -> None:
        remote = stream.extra(SocketAttribute.remote_address, ("", 0))
        local = stream.extra(SocketAttribute.local_address, ("", 0))
        self.addresses[asked] = (str(remote[0]), int(remote[1])), (str(local[0]), int(local[1]))
        info = TRANSFER.get()
        if info is not None:
            info.mark("connect")
            info.num_connects += 1

    async def connect_tcp(self, remote_address: AddressType) -> ByteStream:
        host, port = self._target(remote_address)
        addresses = await self._lookup((host, port), socket.SOCK_STREAM)
        stream = await _first_connected(
            [(address, port) for address in addresses], super().connect_tcp
        )
        self._connected(remote_address, stream)
        return stream

    async def connect_tcp_tls(
        self,
        remote_address: AddressType,
        *,
        server_name: str | None = None,
        tls_config: ClientTLSConfig,
        alpn_protocols: Sequence[str],
    ) -> ByteStream:
        stream = await super().connect_tcp_tls(
            remote_address,
            server_name=server_name,
            tls_config=tls_config,
            alpn_protocols=alpn_protocols,
        )
        info = TRANSFER.get()
        if info is not None:
            info.mark("appconnect")
        return stream

    async def connect_udp(self, remote_address: AddressType) -> DatagramStream:
        host, port = self._target(remote_address)
        addresses = await self._lookup((host, port), socket.SOCK_DGRAM)
        # A UDP "connect" only picks the address: the first one goes.
        stream = await super().connect_udp((addresses[0], port))
        self._connected(remote_address, stream)
        return stream


async def _first_connected(
    addresses: Sequence[AddressType],
    connect: Callable[[AddressType], Awaitable[ByteStream]],
) -> ByteStream:
    """The first of ``addresses`` to connect (Happy Eyeballs, RFC 8305 §5, as curl and anyio).

    Each attempt starts when the one before has failed, or
    :data:`HAPPY_EYEBALLS_DELAY` seconds after it started; the first to
    connect wins, the others are cancelled (or closed).

    :raises TransportError: the last attempt's error if none connects.
    """
    winner: ByteStream | None = None
    errors: list[TransportError] = []

    async def attempt(
        address: AddressType, before: anyio.Event | None, failed: anyio.Event
    ) -> None:
        nonlocal winner
        if before is not None:
            with anyio.move_on_after(HAPPY_EYEBALLS_DELAY):
                await before.wait()
        try:
            stream = await connect(address)
        except TransportError as error:
            errors.append(error)
            failed.set()
            return
        if winner is None:
            winner = stream
            task_group.cancel_scope.cancel()
        else:
            await anyio.aclose_forcefully(stream)

    async with anyio.create_task_group() as task_group:
        before: anyio.Event | None = None
        for address in addresses:
            failed = anyio.Event()
            task_group.start_soon(attempt, address, before, failed)
            before = failed
    if winner is None:
        raise errors[-1]
    return winner


class HandshakeTimes(ConnectionObserver):
    """Marks ``time_appconnect`` when a QUIC handshake completes (TLS ones: see above)."""

    def quic_connection(
        self, *, remote_address: AddressType, server_name: str
    ) -> ProtocolObserver | None:
        info = TRANSFER.get()
        return None if info is None else _QUICHandshake(info)


class _QUICHandshake(ProtocolObserver):
    def __init__(self, info: TransferInfo) -> None:
        self._info = info

    def handshake_completed(self, http_version: str) -> None:
        self._info.mark("appconnect")
