"""Certificates the tests make with `cryptography`: CAs, and the certificates they issue."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = datetime.datetime.now(datetime.UTC)
HOSTS = ("localhost", "127.0.0.1")  # where the tests' servers listen


@dataclass
class Issued:
    """A certificate and its key."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def write(self, directory: Path, name: str) -> tuple[Path, Path]:
        """NAME.pem and NAME.key in the directory."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{name}.pem").write_bytes(self.pem)
        (directory / f"{name}.key").write_bytes(self.key_pem)
        return directory / f"{name}.pem", directory / f"{name}.key"


@dataclass
class Pki:
    """The files of one test deployment: a CA, the server's and a client's certificates, and
    the ones a server must refuse (another CA's client, an expired client)."""

    authority: Authority
    ca: Path
    server: tuple[Path, Path]
    client: tuple[Path, Path]
    stranger: tuple[Path, Path]
    expired: tuple[Path, Path]
    other_ca: Path

    @classmethod
    def make(cls, directory: Path) -> Pki:
        authority, other = Authority("recognizer test CA"), Authority("another CA")
        return cls(
            authority=authority,
            ca=authority.write(directory / "ca.pem"),
            server=authority.issue("recognizer", hosts=HOSTS).write(directory, "server"),
            client=authority.issue("acme").write(directory, "client"),
            stranger=other.issue("acme").write(directory, "stranger"),
            expired=authority.issue("acme", expired=True).write(directory, "expired"),
            other_ca=other.write(directory / "other-ca.pem"),
        )

    def context(
        self, *, ca: Path | None = None, client: tuple[Path, Path] | None = None
    ) -> ssl.SSLContext:
        """A client's TLS context (httpx, websockets): trusting `ca` (this CA by default),
        presenting `client` (a certificate and its key) if given."""
        context = ssl.create_default_context(cafile=ca or self.ca)
        if client is not None:
            context.load_cert_chain(*client)
        return context


@dataclass
class Authority:
    """A self-signed CA that issues server and client certificates."""

    name: str
    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )

    def __post_init__(self) -> None:
        subject = _name(self.name)
        self.certificate = (
            _builder(subject, subject, self.key.public_key(), NOW, NOW + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
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
            .sign(self.key, hashes.SHA256())
        )

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.pem)
        return path

    def issue(
        self,
        common_name: str,
        *,
        hosts: tuple[str, ...] = (),
        expired: bool = False,
    ) -> Issued:
        """A server certificate for `hosts` (DNS names or IPs), or a client one without."""
        key = ec.generate_private_key(ec.SECP256R1())
        start, end = (
            (NOW - datetime.timedelta(days=3), NOW - datetime.timedelta(days=1))
            if expired
            else (NOW - datetime.timedelta(minutes=5), NOW + datetime.timedelta(days=1))
        )
        usage = ExtendedKeyUsageOID.SERVER_AUTH if hosts else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            _builder(_name(common_name), self.certificate.subject, key.public_key(), start, end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if hosts:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([_general_name(host) for host in hosts]),
                critical=False,
            )
        return Issued(builder.sign(self.key, hashes.SHA256()), key)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    start: datetime.datetime,
    end: datetime.datetime,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
    )


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)
