"""A throw-away PKI made in-process: an EC P-256 CA, server (serverAuth) and client (clientAuth)
certificates, and an OpenVPN tls-crypt key.

`Authority` works on PEM text only (the kind suite ships it in Secrets); `PkiDir` writes the same things
as files into a directory a lab owns, which is what OpenVPN and the exporter's TLS settings read.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def common_name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def tls_crypt_key(raw: bytes | None = None) -> str:
    """An OpenVPN static key (the format `openvpn --genkey tls-crypt` writes): 256 bytes, hex, 16 per line."""
    data = raw if raw is not None else secrets.token_bytes(256)
    if len(data) != 256:
        raise ValueError("an OpenVPN static key is 256 bytes")
    lines = [data[i : i + 16].hex() for i in range(0, 256, 16)]
    return "\n".join(["-----BEGIN OpenVPN Static key V1-----", *lines, "-----END OpenVPN Static key V1-----", ""])


def write_private(path: Path, data: str | bytes) -> None:
    """Write a secret mode 0600: OpenVPN warns about world-readable keys and real deployments never have them."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data.encode() if isinstance(data, str) else data)


@dataclass(frozen=True)
class Credential:
    """A PEM certificate and its PEM private key."""

    cert_pem: str
    key_pem: str

    @property
    def cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem.encode())

    def write(self, cert: Path, key: Path, *, private: bool = True) -> CertPair:
        cert.write_text(self.cert_pem)
        if private:
            write_private(key, self.key_pem)
        else:
            key.write_text(self.key_pem)
        return CertPair(cert, key)


@dataclass(frozen=True)
class CertPair:
    """Where a certificate and its key were written."""

    cert: Path
    key: Path


class Authority:
    """An EC P-256 CA. Validity starts an hour in the past, so clock skew (a kind node, a container) is
    harmless, and ends `days` days after `now`; the leaves it issues share that validity."""

    def __init__(self, name: str = "openvpn-exporter test CA", *, days: int = 2, now: dt.datetime | None = None):
        start = now or dt.datetime.now(dt.UTC)
        self.not_before = start - dt.timedelta(hours=1)
        self.not_after = start + dt.timedelta(days=days)
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.cert = (
            self._builder(common_name(name), self.key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(self._key_usage(ca=True), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.credential = Credential(cert_pem(self.cert), key_pem(self.key))

    def _builder(self, subject: x509.Name, public_key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject if public_key == self.key.public_key() else self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.not_before)
            .not_valid_after(self.not_after)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        )
        if public_key != self.key.public_key():
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
        return builder

    @staticmethod
    def _key_usage(*, ca: bool) -> x509.KeyUsage:
        # remote-cert-tls checks the key usage as well as the EKU: a leaf needs what ECDHE-ECDSA uses.
        return x509.KeyUsage(
            digital_signature=True,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=not ca,
            key_cert_sign=ca,
            crl_sign=ca,
            encipher_only=False,
            decipher_only=False,
        )

    def issue(
        self, cn: str, *, server: bool, dns_names: Sequence[str] = (), ip_addresses: Sequence[str] = ()
    ) -> Credential:
        """A leaf certificate: serverAuth for a server, clientAuth for a client; SANs when given."""
        key = ec.generate_private_key(ec.SECP256R1())
        eku = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            self._builder(common_name(cn), key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(self._key_usage(ca=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        )
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return Credential(cert_pem(builder.sign(self.key, hashes.SHA256())), key_pem(key))


class PkiDir:
    """An Authority and a tls-crypt key written into `directory` (`ca.crt`, `tls-crypt.key`); `issue`
    writes each leaf there too. File names never derive from the CN, which may hold any character."""

    def __init__(self, directory: Path, name: str = "openvpn-exporter test CA") -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.authority = Authority(name)
        self.ca = self.dir / "ca.crt"
        self.ca.write_text(self.authority.credential.cert_pem)
        self.tls_crypt = self.dir / "tls-crypt.key"
        write_private(self.tls_crypt, tls_crypt_key())
        self._count = 0

    def issue(
        self,
        cn: str,
        *,
        server: bool,
        stem: str | None = None,
        dns_names: Sequence[str] = (),
        ip_addresses: Sequence[str] = (),
    ) -> CertPair:
        """Issue and write `<stem>.crt`/`<stem>.key` (default stem: server-N or client-N)."""
        self._count += 1
        stem = stem or f"{'server' if server else 'client'}-{self._count}"
        credential = self.authority.issue(cn, server=server, dns_names=dns_names, ip_addresses=ip_addresses)
        return credential.write(self.dir / f"{stem}.crt", self.dir / f"{stem}.key")
