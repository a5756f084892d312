"""TLS certificates made at test time: a CA, a server certificate and a client certificate.

Nothing is committed: :func:`make_tls_files` issues fresh certificates with
trustme and writes them to a directory the caller provides (a pytest
``tmp_path``). The server certificate is valid for ``localhost``,
``127.0.0.1`` and ``::1``; the client certificate, for mutual TLS, chains
to the same CA.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme

from hface.common import ClientTLSConfig, ServerTLSConfig

#: The names and addresses the server certificate is valid for.
SERVER_IDENTITIES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True, kw_only=True)
class TLSFiles:
    """Paths of PEM files written by :func:`make_tls_files`."""

    #: The CA certificate that both leaf certificates chain to.
    ca_file: str
    #: The server certificate chain.
    server_cert_file: str
    #: The key of the server certificate.
    server_key_file: str
    #: A client certificate, for mutual TLS.
    client_cert_file: str
    #: The key of the client certificate.
    client_key_file: str

    def server_config(self, *, client_auth: bool = False, require: bool = False) -> ServerTLSConfig:
        """A server config; ``client_auth`` asks for a client cert, ``require`` demands one."""
        return ServerTLSConfig(
            certfile=self.server_cert_file,
            keyfile=self.server_key_file,
            client_cafile=self.ca_file if client_auth else None,
            require_client_certificate=require,
        )

    def client_config(self, *, client_cert: bool = False) -> ClientTLSConfig:
        """A client config trusting the test CA; ``client_cert`` adds the client certificate."""
        return ClientTLSConfig(
            cafile=self.ca_file,
            certfile=self.client_cert_file if client_cert else None,
            keyfile=self.client_key_file if client_cert else None,
        )


def make_tls_files(directory: Path) -> TLSFiles:
    """Issue a CA, a server and a client certificate and write them under ``directory``."""
    ca = trustme.CA()
    server = ca.issue_cert(*SERVER_IDENTITIES)
    client = ca.issue_cert("client.example", common_name="hface test client")
    files = TLSFiles(
        ca_file=str(directory / "ca.pem"),
        server_cert_file=str(directory / "server.pem"),
        server_key_file=str(directory / "server.key"),
        client_cert_file=str(directory / "client.pem"),
        client_key_file=str(directory / "client.key"),
    )
    ca.cert_pem.write_to_path(files.ca_file)
    for index, blob in enumerate(server.cert_chain_pems):
        blob.write_to_path(files.server_cert_file, append=index > 0)
    server.private_key_pem.write_to_path(files.server_key_file)
    for index, blob in enumerate(client.cert_chain_pems):
        blob.write_to_path(files.client_cert_file, append=index > 0)
    client.private_key_pem.write_to_path(files.client_key_file)
    return files
