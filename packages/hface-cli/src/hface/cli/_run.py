"""Running a server from the command line, with errors as one line."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import anyio

from hface.errors import TransportError
from hface.server import ASGIServer, Endpoint, ServerProtocol


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
) -> int:
    """Serve until SIGINT or SIGTERM; return the exit code.

    :raises CommandError: for failures to report in one line.
    """
    from ._main import CommandError

    server = ASGIServer(app)
    server.tls_config.certfile = certfile
    server.tls_config.keyfile = keyfile
    server.protocol = protocol
    server.access_log = access_log
    server.graceful_timeout = graceful_timeout
    try:
        anyio.run(server.run, endpoints, backend=backend)
    except (OSError, TransportError) as error:
        raise CommandError(str(error)) from None
    except (ValueError, RuntimeError) as error:
        raise CommandError(str(error)) from None
    return 0
