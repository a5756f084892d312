"""Serving with worker processes: :func:`run_workers`, and what each worker runs.

Theory of operation
===================

:func:`run_workers` turns endpoints into the sockets a
:class:`~hface.server._supervisor.Supervisor` binds
(:func:`listen_specs`): for each endpoint a TCP ``SO_REUSEPORT`` group,
one socket per worker, and for each ``https`` endpoint that serves
HTTP/3 a UDP group steered by connection ID
(:class:`~hface.networking._connection_ids.ConnectionIDLayout`, with the
``quic_server_id`` in it). The supervisor starts the workers, restarts
them, replaces them on SIGHUP and stops them on SIGTERM or SIGINT (see
its module).

A worker is a fresh process: it cannot be handed the server object, so
it makes its own. :func:`run_workers` takes the server as an importable
``package.module:function`` returning a configured :class:`BaseServer`
(and so importing the application there, as uvicorn's workers import
theirs); ``hface server --workers`` has the worker parse the same command
line instead (``hface.cli``). Either way :func:`serve_in_worker` runs the
server: on its inherited sockets, as ``fd://`` and ``fd+tls://``
endpoints; issuing the QUIC connection IDs of its slot, so that the
kernel steers every datagram of its connections to it whatever the
client's address; and telling the supervisor it is ready once it serves
(after the application's lifespan startup, which each worker runs, as
its shutdown). SIGTERM stops it gracefully (GOAWAY, requests in flight
finish within the server's grace period).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, cast

import anyio

from hface.common import AddressType
from hface.networking._connection_ids import ConnectionIDLayout

from ._base import BaseServer
from ._models import Endpoint, ServerProtocol

if TYPE_CHECKING:
    from ._worker_process import WorkerContext
    from ._worker_sockets import ListenSpec

# _supervisor, _worker_sockets and _worker_process are imported when used: a worker runs
# ``python -m hface.server._worker_process``, which must not be imported
# with hface.server before it runs.

#: The suffix of the name of an endpoint's UDP (QUIC) socket spec.
_QUIC_SUFFIX = " (QUIC)"


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerPlan:
    """What every worker is told, besides its sockets (the supervisor's argument, in JSON)."""

    tls: tuple[str, ...] = ()
    """The names of the socket specs served with TLS."""

    quic_server_id: bytes = b""
    """The server ID in the QUIC connection IDs issued."""

    backend: str = "asyncio"
    """anyio's backend."""

    backend_options: Mapping[str, Any] = field(default_factory=dict)
    """anyio's backend options (e.g. ``use_uvloop``)."""

    payload: str = ""
    """Whatever makes the worker's server: a target, or a command line in JSON."""

    def to_json(self) -> str:
        """This plan as the supervisor's argument."""
        return json.dumps(
            {
                "tls": list(self.tls),
                "quic_server_id": self.quic_server_id.hex(),
                "backend": self.backend,
                "backend_options": dict(self.backend_options),
                "payload": self.payload,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> WorkerPlan:
        """The plan :meth:`to_json` wrote."""
        data = json.loads(text)
        return cls(
            tls=tuple(data["tls"]),
            quic_server_id=bytes.fromhex(data["quic_server_id"]),
            backend=data["backend"],
            backend_options=data["backend_options"],
            payload=data["payload"],
        )


def listen_specs(
    endpoints: Sequence[Endpoint], *, protocol: ServerProtocol, quic_server_id: bytes = b""
) -> tuple[ListenSpec, ...]:
    """The sockets a supervisor binds for ``endpoints``: TCP, and UDP for HTTP/3.

    :raises ValueError: for an ``fd`` endpoint that is no socket, or a
        server ID that does not fit a connection ID.
    """
    from ._worker_sockets import ListenSpec, SocketSharing, Transport

    layout = ConnectionIDLayout.for_server_id(quic_server_id)
    specs: list[ListenSpec] = []
    for endpoint in endpoints:
        if endpoint.fd is not None:
            specs.append(_inherited_spec(endpoint, endpoint.fd))
            continue
        name = str(endpoint)
        if protocol is not ServerProtocol.HTTP3:
            tcp = ListenSpec(
                name=name, transport=Transport.TCP, host=endpoint.host, port=endpoint.port
            )
            specs.append(tcp)
        if endpoint.tls and protocol in (ServerProtocol.ALL, ServerProtocol.HTTP3):
            specs.append(
                ListenSpec(
                    name=name + _QUIC_SUFFIX,
                    transport=Transport.UDP,
                    host=endpoint.host,
                    port=endpoint.port,
                    sharing=SocketSharing.REUSEPORT,
                    quic=layout,
                )
            )
    return tuple(specs)


def _inherited_spec(endpoint: Endpoint, fd: int) -> ListenSpec:
    """The spec of an ``fd`` endpoint: its socket, shared as it is (TCP, or UDP for QUIC)."""
    from ._worker_sockets import ListenSpec, SocketSharing, Transport

    try:
        with socket.socket(fileno=os.dup(fd)) as probe:
            udp = probe.type == socket.SOCK_DGRAM
    except OSError as exc:
        raise ValueError(f"{endpoint}: no socket there ({exc.strerror})") from None
    if udp and not endpoint.tls:
        raise ValueError(f"{endpoint} is a UDP socket: HTTP/3 needs fd+tls://")
    return ListenSpec(
        name=str(endpoint) + (_QUIC_SUFFIX if udp else ""),
        transport=Transport.UDP if udp else Transport.TCP,
        host="",
        port=0,
        sharing=SocketSharing.INHERITED,
        fd=fd,
    )


def bound_endpoints(
    endpoints: Sequence[Endpoint], addresses: Mapping[str, AddressType]
) -> list[Endpoint]:
    """``endpoints`` with the ports the supervisor bound (port 0 resolved)."""
    bound = []
    for endpoint in endpoints:
        if endpoint.fd is not None:
            bound.append(endpoint)
            continue
        name = str(endpoint)
        address = addresses.get(name) or addresses.get(name + _QUIC_SUFFIX)
        port = endpoint.port if address is None else address[1]
        bound.append(Endpoint(endpoint.scheme, endpoint.host, port))
    return bound


def supervise(
    endpoints: Sequence[Endpoint],
    *,
    target: str,
    plan: WorkerPlan,
    workers: int,
    protocol: ServerProtocol,
    graceful_timeout: float,
    on_ready: Callable[[Sequence[Endpoint]], None] | None = None,
) -> int:
    """Run a supervisor of ``workers`` processes running ``target``; its exit status.

    :raises OSError: if a socket cannot be bound.
    :raises ValueError: see :func:`listen_specs`.
    """
    from ._supervisor import Supervisor, SupervisorConfig

    specs = listen_specs(endpoints, protocol=protocol, quic_server_id=plan.quic_server_id)
    if not specs:
        raise ValueError("no endpoint to listen on for the chosen protocol")
    tls = tuple(name for e in endpoints if e.tls for name in (str(e), str(e) + _QUIC_SUFFIX))
    plan = replace(plan, tls=tls)
    config = SupervisorConfig(
        target=target,
        workers=workers,
        sockets=specs,
        argument=plan.to_json(),
        # The workers' own grace period, and a little to exit in.
        graceful_timeout=graceful_timeout + 5.0,
    )

    def ready(addresses: Mapping[str, AddressType]) -> None:
        if on_ready is not None:
            on_ready(bound_endpoints(endpoints, addresses))

    return Supervisor(config, on_ready=ready).run()


def run_workers(
    server: str,
    endpoints: Sequence[Endpoint],
    *,
    workers: int,
    protocol: ServerProtocol = ServerProtocol.ALL,
    quic_server_id: bytes = b"",
    backend: str = "asyncio",
    graceful_timeout: float = 30.0,
    on_ready: Callable[[Sequence[Endpoint]], None] | None = None,
) -> int:
    """Serve ``endpoints`` with ``workers`` processes until SIGTERM or SIGINT; the exit status.

    ::

        # myproject/serving.py
        def make_server() -> ASGIServer:
            server = ASGIServer(app)
            server.tls_config.certfile = "cert.pem"
            return server

        run_workers("myproject.serving:make_server", [Endpoint.parse("https://0.0.0.0:443")],
                    workers=4)

    Each worker imports and calls ``server``, then serves what it made on
    sockets the calling process (the supervisor) binds and shares: TCP in
    ``SO_REUSEPORT`` groups, QUIC datagrams steered to the worker whose
    connection they belong to (or, where the kernel cannot, HTTP/3 served
    by worker 0 only, with a warning). Lifespan startup and shutdown run
    in each worker. A worker that dies is restarted; SIGHUP replaces them
    one by one without refusing a connection; SIGTERM and SIGINT stop
    them gracefully. Call it from the main thread, on Linux for more than
    one worker to balance.

    :param server: ``package.module:function``: makes a configured
        :class:`ASGIServer` or :class:`ProxyServer`, in each worker.
    :param protocol: which versions to bind sockets for (as the server's
        :attr:`~BaseServer.protocol`).
    :param quic_server_id: a server ID (up to 5 bytes) in every QUIC
        connection ID, for an ID-aware load balancer (QUIC-LB).
    :param graceful_timeout: how long the supervisor lets a stopping worker
        finish (plus 5 s) before it kills it.
    :param on_ready: called once every worker serves, with ``endpoints``
        as bound (a port 0 resolved).
    :raises TypeError: if ``server`` is not a string: an object cannot be
        sent to another process.
    :raises OSError: if an address cannot be bound.
    :raises ValueError: if ``workers`` is not 1 to 128, or an endpoint
        cannot be served (``fd`` endpoints are shared as they are: a UDP
        one by worker 0 alone).
    """
    if not isinstance(server, str):
        raise TypeError(
            "workers make their own server: pass 'package.module:function' returning it, "
            f"not {type(server).__name__} object"
        )
    if server.count(":") != 1:
        raise ValueError(f"a server is given as 'package.module:function', not {server!r}")
    return supervise(
        endpoints,
        target="hface.server._workers:serve_made_server",
        plan=WorkerPlan(quic_server_id=quic_server_id, backend=backend, payload=server),
        workers=workers,
        protocol=protocol,
        graceful_timeout=graceful_timeout,
        on_ready=on_ready,
    )


def serve_made_server(context: WorkerContext) -> None:
    """The worker target of :func:`run_workers`: make the server, serve it."""
    from ._worker_process import load_target

    plan = WorkerPlan.from_json(context.argument)
    make_server = cast("Callable[[], object]", load_target(plan.payload))
    server = make_server()
    if not isinstance(server, BaseServer):
        raise TypeError(f"{plan.payload} returned {type(server).__name__}, not a server")
    serve_in_worker(server, context, plan)


def serve_in_worker(server: BaseServer, context: WorkerContext, plan: WorkerPlan) -> None:
    """Serve ``server`` on the worker's sockets until SIGTERM; say ready once it serves."""
    endpoints = []
    for item in context.sockets:
        scheme = "fd+tls" if item.name in plan.tls else "fd"
        endpoints.append(Endpoint(scheme, "", item.socket.fileno()))
        generator = item.connection_id_generator()
        if generator is None and item.name.endswith(_QUIC_SUFFIX):
            # Not steered (worker 0 serves HTTP/3 alone): still the server's ID.
            generator = ConnectionIDLayout.for_server_id(plan.quic_server_id).generator(0)
        if generator is not None:
            server.quic_connection_id_generator = generator

    async def serve() -> None:
        async with anyio.create_task_group() as task_group:
            await task_group.start(server.run, endpoints)
            context.ready()

    anyio.run(serve, backend=plan.backend, backend_options=dict(plan.backend_options) or None)
