from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class ClientTLSConfig:
    """How a client verifies servers and, for mutual TLS, identifies itself.

    Mutable on purpose: the facades expose it as an attribute that callers
    adjust in place (``client.tls_config.cafile = ...``).
    """

    #: Skip verification of the server's certificate and name. For testing only.
    insecure: bool = False

    #: A PEM file of CA certificates to trust instead of the system's.
    cafile: str | None = None

    #: A directory of CA certificates (hashed names, as ``c_rehash`` makes).
    capath: str | None = None

    #: CA certificates as PEM text or DER bytes.
    cadata: bytes | str | None = None

    #: A client certificate (PEM) for mutual TLS.
    certfile: str | None = None

    #: The key of :attr:`certfile`; ``None`` if the key is inside ``certfile``.
    keyfile: str | None = None

    #: A file to which the TLS secrets of every connection (TCP and QUIC)
    #: are appended in the NSS key log format, so that Wireshark can decrypt
    #: a capture (what ``SSLKEYLOGFILE`` names; ``hface client`` sets it from
    #: there). For debugging only: whoever reads the file reads the traffic.
    #: Python's ``ssl`` module also honours ``SSLKEYLOGFILE`` by itself on TCP.
    keylog_filename: str | None = None

    def clone(self) -> ClientTLSConfig:
        """Return an independent copy of this configuration."""
        return dataclasses.replace(self)


@dataclasses.dataclass
class ServerTLSConfig:
    """The certificate a server presents and, optionally, how it verifies clients.

    Mutable on purpose, like :class:`ClientTLSConfig`.
    """

    #: The server's certificate chain (PEM).
    certfile: str | None = None

    #: The key of :attr:`certfile`; ``None`` if the key is inside ``certfile``.
    keyfile: str | None = None

    #: CA certificates (PEM file) that client certificates must chain to.
    #: Setting it asks clients for a certificate (mutual TLS).
    client_cafile: str | None = None

    #: Refuse clients that present no certificate (only with :attr:`client_cafile`).
    require_client_certificate: bool = False

    def clone(self) -> ServerTLSConfig:
        """Return an independent copy of this configuration."""
        return dataclasses.replace(self)
