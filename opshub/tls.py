"""TLS for the tools: a local certificate authority and a hub certificate for a test setup
(``opshub keys tls``, and the hubs the tools start with ``--tls``), and what a tool's agents
trust (``--tls-ca``). ECDSA P-256 keys, X.509 certificates made with ``cryptography``. Not
a PKI for production: there is no revocation, and the CA's key sits beside what it signed
(mode 0600). It opens no socket (the hub's TLS is hub/tls.py, the agents' client/tls.py).

A folder it writes::

    ca.pem     the CA certificate: what clients trust (``--tls-ca ca.pem``)
    ca.key     the CA's private key (0600): signs hub certificates, keep it private
    hub.pem    the hub's certificate, signed by the CA, valid for the given hosts (SAN)
    hub.key    the hub's private key (0600): ``opshub serve --tls-cert hub.pem --tls-key hub.key``
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from ssl import SSLContext

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from client.tls import client_context
from protocol.errors import UsageError

#: Hosts a test hub's certificate is valid for when none are given.
DEFAULT_HOSTS = ("127.0.0.1", "localhost")
#: The CA outlives the certificates it signs by this factor (a new hub certificate can be
#: signed later without handing out a new CA file).
CA_LIFETIME_FACTOR = 5
#: Certificates start this far in the past, for a peer whose clock is a little behind.
BACKDATE = dt.timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """The four files of a folder this module wrote."""

    ca: Path
    ca_key: Path
    cert: Path
    key: Path

    @classmethod
    def at(cls, folder: Path) -> TlsFiles:
        return cls(folder / "ca.pem", folder / "ca.key", folder / "hub.pem",
                   folder / "hub.key")


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "opshub test setup"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common)])


def subject_alt_name(hosts: Sequence[str]) -> x509.SubjectAlternativeName:
    """IP addresses as iPAddress entries (RFC 5280 4.2.1.6: a client checks an IP against
    those, never against a DNS name), anything else as dNSName. Raises ValueError for
    no host or a name that cannot be a DNS name."""
    if not hosts:
        raise ValueError("a hub certificate needs at least one host name or IP address")
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            if not host or any(c in host for c in " /:@") or not host.isascii():
                raise ValueError(f"{host!r} is neither an IP address nor a DNS name"
                                 ) from None
            names.append(x509.DNSName(host.lower()))
    return x509.SubjectAlternativeName(names)


def make_ca(*, now: dt.datetime, days: float
            ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed CA that may sign end-entity certificates only (path length 0)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("opshub test CA")
    public = key.public_key()
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def make_hub_certificate(ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate,
                         hosts: Sequence[str], *, now: dt.datetime, days: float
                         ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A server certificate for ``hosts`` signed by ``ca``. Raises ValueError for a bad
    host (see ``subject_alt_name``)."""
    san = subject_alt_name(hosts)
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (x509.CertificateBuilder()
            .subject_name(_name(hosts[0])).issuer_name(ca.subject).public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(san, critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                ca_ski), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return key, cert


def write_tls_folder(folder: Path, hosts: Sequence[str] = DEFAULT_HOSTS, *,
                     days: float = 365, now: dt.datetime | None = None) -> TlsFiles:
    """Make a CA and a hub certificate for ``hosts`` valid ``days`` days (the CA
    CA_LIFETIME_FACTOR times longer) and write the four files into ``folder`` (created if
    missing; existing files replaced), the keys with mode 0600. Raises ValueError for a bad
    host or ``days``, OSError if the folder cannot be written."""
    if days <= 0:
        raise ValueError(f"validity must be more than 0 days, got {days:g}")
    now = now or dt.datetime.now(dt.UTC)
    ca_key, ca = make_ca(now=now, days=days * CA_LIFETIME_FACTOR)
    key, cert = make_hub_certificate(ca_key, ca, hosts, now=now, days=days)
    files = TlsFiles.at(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _write(files.ca, ca.public_bytes(serialization.Encoding.PEM), private=False)
    _write(files.ca_key, _pem_key(ca_key), private=True)
    _write(files.cert, cert.public_bytes(serialization.Encoding.PEM), private=False)
    _write(files.key, _pem_key(key), private=True)
    return files


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path: Path, data: bytes, *, private: bool) -> None:
    """Write ``path``; a private one is created with mode 0600, so the key is never
    readable by others, not even for a moment (and an existing file is made 0600 too)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(path, flags, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as out:
        if private:
            os.fchmod(out.fileno(), 0o600)
        out.write(data)


def trust(urls: Sequence[str], ca: Path | None) -> SSLContext | None:
    """What a tool's agents check a wss:// hub's certificate with: the CA certificates in
    ``ca`` (``--tls-ca``), or the system's (None). Raises UsageError for ``ca`` without a
    wss:// URL (it would do nothing) or a CA file that cannot be read."""
    if ca is None:
        return None
    if not any(url.startswith("wss://") for url in urls):
        raise UsageError(f"--tls-ca goes with a wss:// hub URL (a hub serving TLS), not "
                         f"{', '.join(urls)}")
    return client_context(ca)


def fingerprint(pem: Path) -> str:
    """The SHA-256 fingerprint of the certificate in ``pem``, as ``openssl x509
    -fingerprint -sha256`` prints it (colon-separated upper-case hex), to compare out of
    band."""
    cert = x509.load_pem_x509_certificate(pem.read_bytes())
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()
