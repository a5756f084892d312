"""HTTP Alternative Services (RFC 7838): where an origin says it also speaks HTTP/3.

Theory of operation. A response's ``Alt-Svc`` field lists alternatives
(``h3=":443"; ma=86400, h3-29=":443"``) or says ``clear``. An
:class:`AltSvcCache` keeps, per ``https`` origin, the ``h3`` alternatives
(other protocol IDs are not spoken) with the time each expires (``ma``
seconds from now, 24 hours by default, RFC 7838 §3.1). A new field
replaces what the origin said before (§3.1: the latest wins); ``clear``
empties it. :meth:`AltSvcCache.lookup` gives the alternative a new
connection should try first; an alternative that failed is removed
(:meth:`AltSvcCache.discard`, §2.4: "clients SHOULD remove ... on failure").

The cache can be saved to and loaded from a file in curl's format
(``--alt-svc FILE``, https://curl.se/docs/alt-svc.html), one
alternative a line::

    h2 example.com 443 h3 example.com 443 "20261204 12:00:00" 0 0

(source ALPN, host and port; alternative ALPN, host and port; expiry in
UTC; persist; priority), so hface and curl can share one.
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from ._models import Origin

#: RFC 7838 §3.1: an alternative lasts 24 hours unless ``ma`` says otherwise.
DEFAULT_MAX_AGE: Final = 86400
#: The protocol ID of HTTP/3 (RFC 9114 §3.1), the only one hface goes to.
H3: Final = "h3"
#: curl's ALPN names of the HTTP versions, as its files write them.
_CURL_ALPN: Final = {"1.1": "h1", "2": "h2", "3": "h3"}
#: ``protocol-id = token`` then ``= quoted alt-authority``, then ``; name=value`` parameters.
_ALTERNATIVE: Final = re.compile(r'\s*([^\s=;,]+)\s*=\s*"([^"]*)"\s*((?:;[^,;]*)*)')
_PARAMETER: Final = re.compile(r";\s*([^\s=;,]+)\s*=\s*\"?([^\";,]*)\"?")
#: ``date time`` of curl's files.
_CURL_TIME: Final = "%Y%m%d %H:%M:%S"


@dataclass(frozen=True, slots=True)
class AltService:
    """One alternative of an origin: HTTP/3 at ``host:port`` until ``expires``."""

    #: The host to connect to (the origin's own when the field said ``":port"``).
    host: str
    #: The UDP port.
    port: int
    #: When it expires, in seconds since the epoch.
    expires: float
    #: RFC 7838 §3.1's ``persist=1``: kept across network changes (only stored).
    persist: bool = False


def parse_alt_svc(values: Iterable[str], origin: Origin, now: float) -> list[AltService] | None:
    """The ``h3`` alternatives of ``Alt-Svc`` field values; None for ``clear``.

    Malformed entries are skipped (RFC 7838 §3: a client ignores what it
    does not understand).
    """
    text = ", ".join(values).strip()
    if text.lower() == "clear":
        return None
    services: list[AltService] = []
    for match in _ALTERNATIVE.finditer(text):
        protocol, authority, parameters = match.groups()
        if protocol != H3:
            continue
        host, _, port_text = authority.rpartition(":")
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            continue
        host = host.strip("[]") or origin.host
        max_age = DEFAULT_MAX_AGE
        persist = False
        for name, value in _PARAMETER.findall(parameters):
            if name == "ma" and value.isdigit():
                max_age = int(value)
            elif name == "persist":
                persist = value == "1"
        services.append(AltService(host, int(port_text), now + max_age, persist))
    return services


class AltSvcCache:
    """The HTTP/3 alternatives of ``https`` origins, as their ``Alt-Svc`` fields said.

    Give one to :attr:`Client.alt_svc <hface.client.Client.alt_svc>`
    (sessions of one client share it); :meth:`load` and :meth:`save` keep it
    in a file of curl's format.
    """

    def __init__(self) -> None:
        self._entries: dict[Origin, tuple[str, list[AltService]]] = {}

    def __len__(self) -> int:
        return sum(len(services) for _, services in self._entries.values())

    def update(
        self, origin: Origin, values: Iterable[str], *, http_version: str, now: float | None = None
    ) -> bool:
        """Take the ``Alt-Svc`` field values of a response from ``origin``.

        :param http_version: the version the response came over (saved as
            the source ALPN).
        :returns: True if ``origin`` has an alternative now that it had not before.
        """
        values = list(values)
        if not values or not origin.tls:
            return False
        now = time.time() if now is None else now
        services = parse_alt_svc(values, origin, now)
        had = self.lookup(origin, now=now) is not None
        if not services:
            self._entries.pop(origin, None)
            return False
        self._entries[origin] = (_CURL_ALPN.get(http_version, "h2"), services)
        return not had

    def take(
        self, origin: Origin, headers: Iterable[tuple[bytes, bytes]], http_version: str
    ) -> bool:
        """:meth:`update` with the ``Alt-Svc`` fields of a response's ``headers``.

        :returns: True if the response came over TCP and ``origin`` has a new
            alternative: its next requests should try it.
        """
        values = [value.decode("latin-1") for name, value in headers if name == b"alt-svc"]
        new = self.update(origin, values, http_version=http_version)
        return new and http_version != "3"

    def lookup(self, origin: Origin, *, now: float | None = None) -> AltService | None:
        """The alternative to try for ``origin`` (the first one not expired), if any."""
        entry = self._entries.get(origin)
        if entry is None:
            return None
        now = time.time() if now is None else now
        alive = [service for service in entry[1] if service.expires > now]
        if not alive:
            del self._entries[origin]
            return None
        return alive[0]

    def discard(self, origin: Origin, service: AltService) -> None:
        """Forget ``service`` of ``origin``: a connection to it failed (RFC 7838 §2.4)."""
        entry = self._entries.get(origin)
        if entry is None:
            return
        kept = [other for other in entry[1] if other != service]
        if kept:
            self._entries[origin] = (entry[0], kept)
        else:
            del self._entries[origin]

    def clear(self) -> None:
        """Forget every alternative."""
        self._entries.clear()

    # -- curl's file format ------------------------------------------------------------

    def dumps(self, *, now: float | None = None) -> str:
        """The alternatives not expired, in curl's format."""
        now = time.time() if now is None else now
        lines = [
            "# Your alt-svc cache. https://curl.se/docs/alt-svc.html",
            "# This file was generated by hface. Edit at your own risk.",
        ]
        for origin, (source, services) in self._entries.items():
            for service in services:
                if service.expires <= now:
                    continue
                expires = time.strftime(_CURL_TIME, time.gmtime(service.expires))
                lines.append(
                    f"{source} {origin.host} {origin.port} {H3} {service.host} {service.port}"
                    f' "{expires}" {int(service.persist)} 0'
                )
        return "\n".join(lines) + "\n"

    def loads(self, text: str, *, now: float | None = None) -> None:
        """Add the ``h3`` alternatives of curl-format ``text`` not expired (others skipped)."""
        now = time.time() if now is None else now
        for line in text.splitlines():
            fields = line.split()  # the quoted expiry is two: "DATE TIME"
            if len(fields) != 10 or line.lstrip().startswith("#"):
                continue
            source, host, port, alpn, alt_host, alt_port, day, clock, persist, _ = fields
            if alpn != H3 or not (port.isdigit() and alt_port.isdigit()):
                continue
            try:
                moment = time.strptime(f"{day} {clock}".strip('"'), _CURL_TIME)
            except ValueError:
                continue
            expires = float(calendar.timegm(moment))
            if expires <= now:
                continue
            origin = Origin("https", host, int(port))
            service = AltService(alt_host, int(alt_port), expires, persist == "1")
            entry = self._entries.setdefault(origin, (source, []))
            if service not in entry[1]:
                entry[1].append(service)

    @classmethod
    def load(cls, path: str) -> AltSvcCache:
        """A cache with the alternatives of the file at ``path`` (empty if there is none).

        :raises OSError: if the file exists but cannot be read.
        """
        cache = cls()
        try:
            with open(path, encoding="utf-8") as file:
                cache.loads(file.read())
        except FileNotFoundError:
            pass
        return cache

    def save(self, path: str) -> None:
        """Write the alternatives to ``path``, in curl's format.

        :raises OSError: if the file cannot be written.
        """
        with open(path, "w", encoding="utf-8") as file:
            file.write(self.dumps())
