"""Running a server from the command line, with errors as one line."""

from __future__ import annotations

import json
import ssl
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import anyio

from hface.errors import TransportError
from hface.networking._connection_ids import ConnectionIDLayout
from hface.server import ASGIServer, BaseServer, Endpoint, ServerProtocol
from hface.server._workers import WorkerPlan, serve_in_worker, supervise

from ._errors import TRIO_MISSING, CommandError, require_module
from ._worker import WorkerOptions, worker_context


@dataclass(frozen=True, kw_only=True)
class ServerCertificate:
    """The certificate a command serves with, once checked."""

    #: The certificate chain (PEM), or None when no endpoint needs TLS.
    certfile: str | None
    #: Its key (PEM), or None when the key is inside :attr:`certfile`.
    keyfile: str | None
    #: The development CA that issued it, when the command made it; else None.
    cafile: Path | None
    #: True if the development CA and certificate were made just now.
    made: bool = False


def server_certificate(
    certfile: str | None, keyfile: str | None, endpoints: Sequence[Endpoint]
) -> ServerCertificate:
    """Check the user's certificate, or make (or reuse) the development one.

    Without ``certfile``, ``https`` endpoints get the development certificate
    of :func:`~hface.cli._certs.default_directory`, as ``hface server`` and ``hface proxy`` print.

    :raises CommandError: if a file cannot be read, holds no certificate or
        key, or the key does not belong to the certificate.
    """
    if certfile:
        check_certificate(certfile, keyfile)
        return ServerCertificate(certfile=certfile, keyfile=keyfile, cafile=None)
    if not any(endpoint.tls for endpoint in endpoints):
        return ServerCertificate(certfile=None, keyfile=None, cafile=None)
    from ._certs import default_directory, ensure_certificates  # with cryptography

    directory = default_directory()
    try:
        files, made = ensure_certificates(directory)
    except OSError as error:
        raise CommandError(f"cannot write certificates to {directory}: {error}") from None
    return ServerCertificate(
        certfile=str(files.certfile), keyfile=str(files.keyfile), cafile=files.cafile, made=made
    )


class _EncryptedKey(Exception):
    """Raised by :func:`check_certificate`'s password callback: the key needs a password."""


def _no_password() -> str:
    raise _EncryptedKey


def check_certificate(certfile: str, keyfile: str | None) -> None:
    """Check that ``certfile`` holds a PEM certificate and ``keyfile`` (or ``certfile``) its key.

    Done before listening, because the TLS libraries only say "PEM lib".
    Checked with :mod:`ssl` (OpenSSL, as the server will load them), not
    with the cryptography package: a server that HTTP/3 never reaches
    does not import it (several megabytes resident).

    :raises CommandError: saying which file is wrong, and how.
    """
    keyfile = keyfile or certfile
    cert_data = _read(certfile)
    _read(keyfile)  # readable, or a clear error before OpenSSL's
    try:
        # Parses every certificate block of the file (other blocks are skipped).
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_verify_locations(
            cadata=cert_data.decode("ascii", errors="replace")
        )
    except (ssl.SSLError, ValueError):  # ValueError: not ASCII, so not PEM
        raise CommandError(f"cannot use {certfile}: no PEM certificate in it") from None
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(
            certfile, keyfile, password=_no_password
        )
    except _EncryptedKey:
        raise CommandError(f"cannot use {keyfile}: the key is encrypted") from None
    except ssl.SSLError as error:
        if error.reason == "KEY_VALUES_MISMATCH":  # OpenSSL's reason code
            raise CommandError(f"cannot use {keyfile}: it is not the key of {certfile}") from None
        raise CommandError(f"cannot use {keyfile}: no PEM private key in it") from None


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise CommandError(f"cannot read {path}: {error.strerror or error}") from None


def run_server(
    app: Callable[..., Any],
    endpoints: Sequence[Endpoint],
    *,
    certfile: str | None,
    keyfile: str | None,
    protocol: ServerProtocol,
    backend: str,
    access_log: bool,
    graceful_timeout: float,
    configure: Callable[[BaseServer], None] | None = None,
    on_ready: Callable[[], None] | None = None,
    workers: WorkerOptions | None = None,
) -> int:
    """Serve until SIGINT or SIGTERM; return the exit code.

    :param configure: called with the server before it runs, to set more options.
    :param on_ready: called once every endpoint is bound (to print the banner).
    :raises CommandError: for failures to report in one line.
    """
    server = ASGIServer(app)
    server.tls_config.certfile = certfile
    server.tls_config.keyfile = keyfile
    server.protocol = protocol
    server.access_log = access_log
    server.graceful_timeout = graceful_timeout
    if configure is not None:
        configure(server)
    return run(server, endpoints, backend=backend, on_ready=on_ready, workers=workers)


def run(
    server: BaseServer,
    endpoints: Sequence[Endpoint],
    *,
    backend: str,
    on_ready: Callable[[], None] | None = None,
    workers: WorkerOptions | None = None,
) -> int:
    """Run a configured server until SIGINT or SIGTERM; return the exit code.

    With ``workers.count``, run a supervisor of that many worker processes
    instead, which run the same command (see :mod:`._worker`); in one of
    them, serve the worker's sockets.

    :param on_ready: called once every endpoint is bound (every worker
        ready): a banner printed then is never followed by "address in use".
    :raises CommandError: for failures to report in one line (an address
        in use, a name that does not resolve, no endpoint for the protocol).
    """
    backend, backend_options = _event_loop(backend)
    context = worker_context()
    if context is not None:  # a worker of --workers: the supervisor bound the sockets
        serve_in_worker(server, context, WorkerPlan.from_json(context.argument))
        return 0
    if workers is not None and workers.quic_server_id:
        layout = ConnectionIDLayout.for_server_id(workers.quic_server_id)
        server.quic_connection_id_generator = layout.generator(0)
    if workers is not None and workers.count is not None:
        return _supervise(server, endpoints, workers, backend, backend_options, on_ready)
    # Told directly, not through a task group: its errors would come in a group.
    serve = partial(server.run, endpoints, task_status=_Ready(on_ready))
    try:
        anyio.run(serve, backend=backend, backend_options=backend_options)
    except (OSError, TransportError) as error:
        raise CommandError(str(error)) from None
    except (ValueError, RuntimeError) as error:
        raise CommandError(str(error)) from None
    return 0


class _Ready:
    """The ``task_status`` of a server run from here: calls ``on_ready`` once it is bound."""

    def __init__(self, on_ready: Callable[[], None] | None) -> None:
        self._on_ready = on_ready

    def started(self, value: object = None) -> None:
        if self._on_ready is not None:
            self._on_ready()


def _supervise(
    server: BaseServer,
    endpoints: Sequence[Endpoint],
    workers: WorkerOptions,
    backend: str,
    backend_options: dict[str, Any] | None,
    on_ready: Callable[[], None] | None,
) -> int:
    count = workers.count
    assert count is not None

    def ready(bound: Sequence[Endpoint]) -> None:
        if on_ready is not None:
            on_ready()
        print(f"{count} worker(s) serving on {', '.join(str(endpoint) for endpoint in bound)}")
        sys.stdout.flush()

    plan = WorkerPlan(
        quic_server_id=workers.quic_server_id,
        backend=backend,
        backend_options=backend_options or {},
        payload=json.dumps(list(workers.argv)),
    )
    try:
        return supervise(
            endpoints,
            target="hface.cli._worker_target:serve",
            plan=plan,
            workers=count,
            protocol=server.protocol,
            graceful_timeout=server.graceful_timeout,
            on_ready=ready,
        )
    except (OSError, ValueError) as error:
        raise CommandError(str(error)) from None


def _event_loop(backend: str) -> tuple[str, dict[str, Any] | None]:
    """anyio's backend and its options for ``--backend`` (``uvloop``: asyncio on uvloop).

    :raises CommandError: for ``trio`` or ``uvloop`` when it is not installed.
    """
    if backend == "trio":
        require_module("trio", TRIO_MISSING)
    if backend != "uvloop":
        return backend, None
    require_module("uvloop", "--backend uvloop needs uvloop: pip install 'hface-cli[uvloop]'")
    return "asyncio", {"use_uvloop": True}
