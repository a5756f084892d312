"""The access log line, in a format the operator chooses (``--access-log-format``).

An :class:`AccessLogFormat` is a ``%``-style format string with named
fields, as :mod:`logging`'s own formats are written (``%(client)s``),
checked once when the server starts: a field that does not exist is an
error then, not a failure on every request. The fields are in
:data:`ACCESS_LOG_FIELDS`; each request's values are made only when its
line is logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

#: The fields an access log format may use, and what each is.
ACCESS_LOG_FIELDS: Final = {
    "client": "the client's host:port ('-' if unknown, e.g. on a Unix socket)",
    "method": "the request method ('WEBSOCKET' for a WebSocket session)",
    "path": "the request target as received, with the query string",
    "version": "the HTTP version: 1.1, 2 or 3",
    "status": "the response status ('-' if none was sent)",
    "bytes": "response body bytes sent",
    "duration": "seconds from the request's headers to its end, as a float",
    "duration_ms": "the same in milliseconds, as an integer",
    "user_agent": "the user-agent header ('-' if none)",
    "referer": "the referer header ('-' if none)",
    "scheme": "http or https (ws or wss for a WebSocket)",
}

#: What the default line says, as a format (the server writes it without one).
DEFAULT_ACCESS_LOG_FORMAT: Final = (
    '%(client)s - "%(method)s %(path)s HTTP/%(version)s" %(status)s %(bytes)s'
)


@dataclass(frozen=True, slots=True)
class AccessLogFormat:
    """A checked access log format; :meth:`format` makes a line.

    :raises ValueError: (from :meth:`parse`) for an unknown field or a bad format.
    """

    template: str

    @classmethod
    def parse(cls, template: str) -> AccessLogFormat:
        """Check ``template`` against :data:`ACCESS_LOG_FIELDS`.

        :raises ValueError: naming the unknown field, or what is wrong.
        """
        sample: dict[str, Any] = dict.fromkeys(ACCESS_LOG_FIELDS, "x")
        sample.update(bytes=0, duration=0.0, duration_ms=0)
        try:
            template % sample
        except KeyError as error:
            known = ", ".join(ACCESS_LOG_FIELDS)
            raise ValueError(
                f"access log format: unknown field {error.args[0]!r} (fields: {known})"
            ) from None
        except (TypeError, ValueError) as error:
            raise ValueError(f"access log format {template!r}: {error}") from None
        return cls(template)

    def format(self, fields: dict[str, Any]) -> str:
        """The line for one request's ``fields`` (every key of :data:`ACCESS_LOG_FIELDS`)."""
        return self.template % fields


def header_value(headers: Any, name: bytes) -> str:
    """The first ``name`` field of an ASGI scope's headers, as text; ``-`` if absent."""
    for key, value in headers:
        if key == name:
            return bytes(value).decode("latin-1")
    return "-"
