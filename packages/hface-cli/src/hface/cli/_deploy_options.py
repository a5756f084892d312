"""The deployment options of ``hface server`` and ``hface proxy``: behind balancers, and logging.

- ``--proxy-protocol``: a PROXY protocol header (v1 or v2) first on every
  TCP and Unix connection (:attr:`hface.server.BaseServer.proxy_protocol`);
- ``--forwarded-allow-ips`` and ``--forwarded-headers`` (``hface server``):
  whose ``X-Forwarded-*`` or ``Forwarded`` headers are believed;
- ``--root-path`` and ``--access-log-format`` (``hface server``);
- ``--log-config FILE``: :func:`logging.config.dictConfig` from a JSON or
  TOML file, in place of the ``--log-level`` set-up (:func:`configure_logging`).

Logging set up here keeps aioquic's own loggers at WARNING unless the
level is DEBUG: they say "Connection ... created" at INFO for every QUIC
connection, which is noise in a server's log.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import CommandError
from ._options import seconds

if TYPE_CHECKING:
    from hface.server import BaseServer

#: What ``--proxy-protocol-timeout`` says when not given: the default of
#: ``ServerTimeouts.proxy_header`` (a test keeps them equal).
PROXY_HEADER_TIMEOUT_DEFAULT = "5"

#: The format of the log lines without ``--log-config``.
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def add_deployment_options(parser: argparse.ArgumentParser, *, asgi: bool) -> None:
    """Add the options of the module to ``parser``; ``asgi``: those of ``hface server`` too."""
    group = parser.add_argument_group("deployment")
    group.add_argument(
        "--proxy-protocol",
        action="store_true",
        help="behind a load balancer sending the PROXY protocol (v1 or v2; HAProxy "
        "send-proxy, nginx proxy_protocol, AWS NLB): every TCP and Unix connection must "
        "begin with its header, which names the client; others are closed",
    )
    group.add_argument(
        "--proxy-protocol-timeout",
        type=seconds,
        default=argparse.SUPPRESS,
        metavar="SECONDS",
        help="time a connection gets to send its PROXY header "
        f"(default: {PROXY_HEADER_TIMEOUT_DEFAULT})",
    )
    if asgi:
        group.add_argument(
            "--forwarded-allow-ips",
            default="",
            metavar="IPS",
            help="comma-separated addresses and networks (or '*') of the proxies whose "
            "X-Forwarded-For/-Proto/-Host headers are believed for the client's address, "
            "scheme and host (default: none)",
        )
        group.add_argument(
            "--forwarded-headers",
            choices=["x-forwarded", "forwarded"],
            default="x-forwarded",
            help="which headers trusted proxies set: X-Forwarded-* or Forwarded (RFC 7239) "
            "(default: %(default)s)",
        )
        group.add_argument(
            "--root-path",
            default="",
            metavar="PATH",
            help="the path the application is mounted at behind a proxy, e.g. /api: the "
            "scope's root_path, prefixed to path",
        )
        group.add_argument(
            "--access-log-format",
            metavar="FORMAT",
            help="the access log line, with %%(client)s %%(method)s %%(path)s %%(version)s "
            "%%(status)s %%(bytes)s %%(duration)s %%(duration_ms)s %%(user_agent)s "
            "%%(referer)s %%(scheme)s",
        )
    group.add_argument(
        "--log-config",
        metavar="FILE",
        help="logging configuration (logging.config.dictConfig) from a .json or .toml "
        "file; --log-level is then ignored",
    )


def apply_deployment_options(server: BaseServer, args: argparse.Namespace) -> None:
    """Set the options given on ``server`` (an ``ASGIServer`` or a ``ProxyServer``).

    :raises CommandError: if ``--forwarded-allow-ips`` or ``--access-log-format``
        does not parse, or ``--root-path`` is not a path like ``/api``.
    """
    server.proxy_protocol = args.proxy_protocol
    if hasattr(args, "proxy_protocol_timeout"):
        if not args.proxy_protocol_timeout > 0:
            raise CommandError("--proxy-protocol-timeout: must be positive")
        server.timeouts.proxy_header = args.proxy_protocol_timeout
    if not hasattr(args, "forwarded_allow_ips"):
        return
    from hface.server import ASGIServer, ForwardedStyle
    from hface.server._access_log import AccessLogFormat
    from hface.server._forwarded import TrustedProxies

    if not isinstance(server, ASGIServer):
        return
    try:
        TrustedProxies.parse(args.forwarded_allow_ips)
    except ValueError as error:
        raise CommandError(f"--{error}") from None
    if args.access_log_format is not None:
        try:
            AccessLogFormat.parse(args.access_log_format)
        except ValueError as error:
            raise CommandError(f"--{error}") from None
    root_path = args.root_path.rstrip("/")
    if root_path and not root_path.startswith("/"):
        raise CommandError(f"--root-path: {args.root_path!r} must start with '/'")
    server.forwarded_allow_ips = args.forwarded_allow_ips
    server.forwarded_style = ForwardedStyle(args.forwarded_headers)
    server.root_path = root_path
    server.access_log_format = args.access_log_format


def configure_logging(args: argparse.Namespace) -> None:
    """Set up logging from ``--log-config`` or ``--log-level``.

    :raises CommandError: if the file cannot be read or parsed, or
        :func:`logging.config.dictConfig` refuses it.
    """
    path = getattr(args, "log_config", None)
    if path is None:
        logging.basicConfig(level=args.log_level.upper(), format=LOG_FORMAT)
    else:
        # Imported here only: logging.config costs a server that never uses it memory.
        from logging.config import dictConfig

        config = _read_log_config(Path(path))
        try:
            dictConfig(config)
        except (ValueError, TypeError, AttributeError, ImportError) as error:
            raise CommandError(f"--log-config {path}: {error}") from None
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        # "Connection ... created" and the like, at INFO, for every QUIC connection.
        for name in ("quic", "http3"):  # aioquic's loggers
            logging.getLogger(name).setLevel(logging.WARNING)


def _read_log_config(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise CommandError(f"--log-config: cannot read {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise CommandError(f"--log-config: {path} is not UTF-8 text") from None
    if path.suffix.lower() == ".toml":
        try:
            tomllib: Any = importlib.import_module("tomllib")
        except ImportError:  # Python 3.10: tomli has the same API
            try:
                tomllib = importlib.import_module("tomli")
            except ImportError:
                raise CommandError(
                    "--log-config: a TOML file needs Python 3.11+, or tomli: pip install tomli"
                ) from None
        try:
            config: Any = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise CommandError(f"--log-config: {path} is not valid TOML: {error}") from None
    else:
        try:
            config = json.loads(text)
        except json.JSONDecodeError as error:
            raise CommandError(f"--log-config: {path} is not valid JSON: {error}") from None
    if not isinstance(config, dict):
        raise CommandError(f"--log-config: {path} must hold a table (a JSON object)")
    config.setdefault("version", 1)
    # hface's loggers exist by now: dictConfig's default would silence them.
    config.setdefault("disable_existing_loggers", False)
    return config
