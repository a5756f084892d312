"""The listening sockets a supervisor makes once and hands down to its workers.

Theory of operation
===================

The supervisor binds every socket itself, before it starts any worker, so
that a port in use is one clear error at start-up, and so that sockets
outlive the workers that serve them: a worker that dies or is replaced
never takes a socket (and the connections waiting in it) away. Workers
inherit the sockets they serve (:class:`~hface.server._worker_process.InheritedSocket`).
A :class:`ListenSpec` says how a socket is shared (:class:`SocketSharing`):

- ``INHERITED``: one socket, which every worker serves. The kernel hands
  each new TCP connection to whichever worker accepts first. Works
  everywhere; the only choice where ``SO_REUSEPORT`` does not balance
  (outside Linux: asked for there, this is used instead).
- ``REUSEPORT`` (Linux): a ``SO_REUSEPORT`` group with one socket per
  worker *position*, which the kernel balances by a hash of the
  connection's addresses. A worker and its replacement (SIGHUP) serve the
  same socket while one takes over from the other, so nothing waiting in
  its queue is lost, and closing no socket means the group never changes.
- ``REUSEPORT`` with ``quic`` set (UDP for QUIC): a group of *two*
  sockets per position, or slots, ``2 * position + lane``: a replacement
  takes the other lane, since two processes reading one UDP socket would
  take each other's datagrams. The steering program
  (``hface.networking._quic_steering``) routes each datagram by its
  connection ID; :meth:`WorkerSockets.steer` attaches a new one whenever
  the supervisor's workers change (which slots are live, which accept new
  connections). Where the program cannot be attached (the supervisor
  asks :func:`~hface.networking._quic_steering.steering_unavailable_reason`
  once), the spec falls back to one plain socket served by the worker at
  position 0 only, and says so: HTTP/3 stays correct, on one core.

A spec with ``fd`` binds nothing: it shares a socket the supervisor
inherited (systemd's socket activation), ``INHERITED``; a UDP one is
served by the worker at position 0 only, since an inherited socket is no
group to steer.

Sockets of a group are bound in order to the same address (the first to
the port asked for, the others to the port it got), which gives them
their index in the kernel's group. IPv6 sockets are IPv6 only, so that
``::`` and ``0.0.0.0`` can both be bound.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from enum import Enum

from hface.common import AddressType
from hface.networking._connection_ids import ConnectionIDLayout
from hface.networking._quic_steering import (
    QUICSteeringUnavailable,
    attach_steering_program,
    build_steering_program,
)

from ._worker_process import InheritedSocket

logger = logging.getLogger("hface.server.supervisor")

#: How many slots a position has in a steered group: the worker and its replacement.
LANES = 2


class Transport(Enum):
    """The kind of socket."""

    TCP = "tcp"
    """A listening TCP socket."""

    UDP = "udp"
    """A bound UDP socket."""


class SocketSharing(Enum):
    """How the workers share a :class:`ListenSpec`'s socket(s)."""

    INHERITED = "inherited"
    """One socket, served by every worker."""

    REUSEPORT = "reuseport"
    """A ``SO_REUSEPORT`` group, one socket per worker (Linux)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenSpec:
    """One address the workers serve, and how they share it."""

    name: str
    """How workers find the socket (:meth:`~hface.server._worker_process.WorkerContext.socket`)."""

    transport: Transport
    """TCP or UDP."""

    host: str
    """The IP address to bind (a literal, or a name that resolves to one address)."""

    port: int
    """The port; 0 for any free one (the same for the whole group)."""

    sharing: SocketSharing = SocketSharing.REUSEPORT
    """One inherited socket, or a ``SO_REUSEPORT`` group."""

    quic: ConnectionIDLayout | None = None
    """For UDP in a ``SO_REUSEPORT`` group: steer QUIC datagrams by IDs of this layout."""

    backlog: int = 1024
    """The TCP listen backlog."""

    fd: int | None = None
    """A socket this process inherited, shared as it is instead of binding one (``INHERITED``)."""

    def __post_init__(self) -> None:
        if self.quic is not None and self.transport is not Transport.UDP:
            raise ValueError("QUIC steering is for UDP sockets")
        if self.fd is not None and (self.sharing, self.quic) != (SocketSharing.INHERITED, None):
            raise ValueError("an inherited socket is shared as it is: INHERITED, not steered")


@dataclass(slots=True)
class _Group:
    """The socket(s) of one spec."""

    spec: ListenSpec
    sockets: list[socket.socket]
    steered: bool = False
    only_first_position: bool = False
    address: AddressType = ("", 0)
    program: bytes = field(default=b"", repr=False)


class WorkerSockets:
    """The sockets of a supervisor's specs, for ``workers`` worker positions.

    :param steering_unavailable: why QUIC datagrams cannot be steered here
        (None if they can), as the supervisor found out once.
    """

    def __init__(
        self,
        specs: Sequence[ListenSpec],
        *,
        workers: int,
        steering_unavailable: str | None,
    ) -> None:
        names = [spec.name for spec in specs]
        if len(set(names)) != len(names):
            raise ValueError("listen specs need names of their own")
        self._specs = tuple(specs)
        self._workers = workers
        self._steering_unavailable = steering_unavailable
        self._groups: list[_Group] = []

    def open(self) -> None:
        """Bind every socket.

        :raises OSError: if one cannot be bound, saying which (none stays open).
        """
        groups: list[_Group] = []
        with ExitStack() as stack:
            for spec in self._specs:
                group = self._open_group(spec)
                stack.callback(_close_all, group.sockets)
                groups.append(group)
            stack.pop_all()
        self._groups = groups

    def close(self) -> None:
        """Close every socket."""
        for group in self._groups:
            _close_all(group.sockets)
        self._groups.clear()

    @property
    def addresses(self) -> Mapping[str, AddressType]:
        """The bound address of each spec, by name."""
        return {group.spec.name: group.address for group in self._groups}

    def for_worker(self, position: int, lane: int) -> list[tuple[socket.socket, InheritedSocket]]:
        """The sockets a worker serves, with how to describe them to it (fd numbers kept)."""
        handed: list[tuple[socket.socket, InheritedSocket]] = []
        for group in self._groups:
            if group.only_first_position and position != 0:
                continue
            slot: int | None = None
            if group.steered:
                slot = LANES * position + lane
                sock = group.sockets[slot]
            elif group.spec.sharing is SocketSharing.REUSEPORT and len(group.sockets) > 1:
                sock = group.sockets[position]
            else:
                sock = group.sockets[0]
            described = InheritedSocket(
                name=group.spec.name,
                fd=sock.fileno(),
                slot=slot,
                connection_ids=group.spec.quic if group.steered else None,
            )
            handed.append((sock, described))
        return handed

    def steer(self, *, live: set[int], accepting: Sequence[int]) -> None:
        """Steer QUIC: issued IDs to their ``live`` slots, new connections to ``accepting`` ones."""
        for group in self._groups:
            if not group.steered or group.spec.quic is None:
                continue
            program = build_steering_program(group.spec.quic, live=live, accepting=accepting)
            if program == group.program:
                continue
            group.program = program  # tried once, whatever happens
            try:
                attach_steering_program(group.sockets[0], program)
            except QUICSteeringUnavailable as exc:  # it worked at start: should not happen
                logger.error("cannot steer QUIC datagrams on %s any more: %s", group.spec.name, exc)

    def _open_group(self, spec: ListenSpec) -> _Group:
        if spec.fd is not None:
            return self._inherited_group(spec, spec.fd)
        sharing = spec.sharing
        if sharing is SocketSharing.REUSEPORT and not sys.platform.startswith("linux"):
            logger.info("%s: SO_REUSEPORT does not balance here; one inherited socket", spec.name)
            sharing = SocketSharing.INHERITED
        steered = spec.quic is not None and sharing is SocketSharing.REUSEPORT
        only_first = False
        if steered and self._steering_unavailable is not None:
            logger.warning(
                "%s: QUIC datagrams cannot be steered to their worker (%s); "
                "HTTP/3 is served by worker 0 only",
                spec.name,
                self._steering_unavailable,
            )
            steered, only_first, sharing = False, True, SocketSharing.INHERITED
        if steered:
            count = LANES * self._workers
        elif sharing is SocketSharing.REUSEPORT:
            count = self._workers
        else:
            count = 1
        group = _Group(spec=spec, sockets=[], steered=steered, only_first_position=only_first)
        try:
            port = spec.port
            for _ in range(count):
                sock = _bind(spec, port, reuse_port=sharing is SocketSharing.REUSEPORT)
                group.sockets.append(sock)
                host, port = sock.getsockname()[:2]
                group.address = (host, port)
        except OSError:
            _close_all(group.sockets)
            raise
        return group

    def _inherited_group(self, spec: ListenSpec, fd: int) -> _Group:
        kind = socket.SOCK_STREAM if spec.transport is Transport.TCP else socket.SOCK_DGRAM
        try:
            sock = socket.socket(fileno=os.dup(fd))
        except OSError as exc:
            raise OSError(exc.errno, f"{spec.name}: no socket there ({exc.strerror})") from exc
        if sock.type != kind:
            sock.close()
            raise OSError(f"{spec.name}: not a {spec.transport.value} socket")
        only_first = spec.transport is Transport.UDP and self._workers > 1
        if only_first:
            logger.warning(
                "%s: an inherited UDP socket cannot be steered; HTTP/3 is served by worker 0 only",
                spec.name,
            )
        group = _Group(spec=spec, sockets=[sock], steered=False, only_first_position=only_first)
        host, port = sock.getsockname()[:2]
        group.address = (host, port)
        return group


def _bind(spec: ListenSpec, port: int, *, reuse_port: bool) -> socket.socket:
    kind = socket.SOCK_STREAM if spec.transport is Transport.TCP else socket.SOCK_DGRAM
    try:
        infos = socket.getaddrinfo(spec.host, port, type=kind, flags=socket.AI_PASSIVE)
        family, _, _, _, address = infos[0]
        sock = socket.socket(family, kind)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot listen on {spec.name}: {exc.strerror or exc}") from exc
    try:
        if spec.transport is Transport.TCP:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        if spec.transport is Transport.TCP:
            sock.listen(spec.backlog)
    except OSError as exc:
        sock.close()
        where = f"{spec.transport.value} {spec.host} port {port}"
        raise OSError(exc.errno, f"cannot listen on {spec.name} ({where}): {exc.strerror}") from exc
    return sock


def _close_all(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        sock.close()
