"""Run hface's CONNECT proxy (``hface.server.ProxyServer``) for the proxy benchmark.

The ``hface`` command has no ``proxy`` subcommand yet, so bench/run.py
starts this instead::

    python bench/_proxy_server.py https://127.0.0.1:PORT --cert CERT --key KEY

It serves HTTP/1.1, HTTP/2 and HTTP/3 on the endpoint until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import sys

import anyio

from hface.server import Endpoint, ProxyServer


def main() -> int:
    """Serve until a signal; return the exit code."""
    parser = argparse.ArgumentParser(prog="_proxy_server", description="hface CONNECT proxy")
    parser.add_argument("endpoint", help="https://HOST:PORT")
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args()
    try:
        endpoint = Endpoint.parse(args.endpoint)
    except ValueError as error:
        parser.error(str(error))
    server = ProxyServer()
    server.tls_config.certfile = args.cert
    server.tls_config.keyfile = args.key
    server.graceful_timeout = 1.0
    try:
        anyio.run(server.run, [endpoint])
    except (OSError, ValueError) as error:
        print(f"_proxy_server: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
