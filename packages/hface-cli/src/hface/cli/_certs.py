"""Development certificates: a local CA and a certificate for localhost.

Made with ``cryptography`` on first use, never shipped. The CA's key stays
in the per-user directory, so the certificates are only as trusted as the
user chooses to make the CA (``curl --cacert``).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: The names the development certificate covers.
DEV_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True, kw_only=True)
class DevCertificates:
    """Where :func:`write_certificates` put the files."""

    #: The CA certificate to trust (``curl --cacert``).
    cafile: Path
    #: The server certificate chain.
    certfile: Path
    #: The server certificate's key.
    keyfile: Path


def default_directory() -> Path:
    """The per-user directory of development certificates."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "hface" / "dev-certs"


def ensure_certificates(directory: Path) -> tuple[DevCertificates, bool]:
    """Return the certificates in ``directory``, making them if missing or expired.

    :return: the files, and True if they were made now.
    """
    files = _files(directory)
    present = all(path.is_file() for path in (files.cafile, files.certfile, files.keyfile))
    if present and not _expires_soon(files.certfile):
        return files, False
    return write_certificates(directory), True


def write_certificates(directory: Path) -> DevCertificates:
    """Make a CA and a localhost certificate and write ``cacert.pem``, ``cert.pem``, ``key.pem``.

    :raises OSError: if the directory cannot be written.
    """
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hface development CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in DEV_NAMES[1:]]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = _files(directory)
    pem = serialization.Encoding.PEM
    files.cafile.write_bytes(ca_cert.public_bytes(pem))
    files.certfile.write_bytes(cert.public_bytes(pem))
    key_bytes = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    files.keyfile.touch(mode=0o600)
    files.keyfile.write_bytes(key_bytes)
    return files


def _files(directory: Path) -> DevCertificates:
    return DevCertificates(
        cafile=directory / "cacert.pem",
        certfile=directory / "cert.pem",
        keyfile=directory / "key.pem",
    )


def _expires_soon(certfile: Path) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(certfile.read_bytes())
    except ValueError:
        return True
    remaining = cert.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc)
    return remaining < datetime.timedelta(days=7)
