"""The instance's own certificate chain for Content Credentials: a local CA and a signing certificate.

Created on first use under `<home>/credentials/` and kept there:

    ca.crt.pem       the instance CA: the trust anchor a verifier configures to trust our manifests
    ca.key.pem       its private key (0600): needed only to issue the next signing certificate
    signer.crt.pem   the end-entity certificate that signs manifests (issued by the CA)
    signer.key.pem   its private key (0600)

Why a CA and not one self-signed certificate: the C2PA SDK refuses a self-signed signing certificate.
The signing certificate has what the C2PA trust model asks of one: ECDSA P-256 (ES256), key usage
digitalSignature only, extended key usage emailProtection, not a CA. It is renewed from the CA when it
has under 30 days left; the CA (the anchor) lasts ten years.

The directory is created in a temporary place and renamed into position, so two processes starting at
the same time end up with one chain, and a crash never leaves half of one. Private keys are never
logged or returned in anything but `InstanceCredentials.key_pem`.
"""

from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mimicsafe.errors import MimicSafeError

DIRECTORY = "credentials"
CA_CERT, CA_KEY = "ca.crt.pem", "ca.key.pem"
SIGNER_CERT, SIGNER_KEY = "signer.crt.pem", "signer.key.pem"

CA_LIFETIME = timedelta(days=3650)
SIGNER_LIFETIME = timedelta(days=730)
RENEW_BEFORE = timedelta(days=30)
BACKDATE = timedelta(minutes=5)  # tolerate a verifier whose clock is a little behind
ORGANIZATION = "MimicSafe"


class CredentialsError(MimicSafeError):
    """The instance's certificate files are missing, unreadable or do not belong together."""


@dataclass(frozen=True)
class InstanceCredentials:
    directory: Path
    ca_pem: bytes
    """The trust anchor (PEM). Give it to any C2PA validator that should trust this instance."""
    chain_pem: bytes
    """Signing certificate followed by the CA certificate (PEM): what a manifest carries."""
    key_pem: bytes
    """The signing key (PKCS#8 PEM). Secret: never log it."""
    signer_subject: str
    signer_not_after: datetime

    @property
    def trust_anchor_pem(self) -> str:
        return self.ca_pem.decode()

    def __repr__(self) -> str:  # keep the key out of tracebacks and logs
        return f"InstanceCredentials(directory={self.directory!s}, signer={self.signer_subject!r})"


def ensure_credentials(home: Path, *, now: datetime | None = None) -> InstanceCredentials:
    """The instance's chain, created on first use and its signing certificate renewed when due."""
    now = now or datetime.now(UTC)
    directory = home / DIRECTORY
    if not (directory / CA_CERT).is_file():
        _create(home, directory, now)
    credentials = _load(directory)
    if credentials.signer_not_after - now < RENEW_BEFORE:
        _renew_signer(directory, now)
        credentials = _load(directory)
    return credentials


def load_credentials(home: Path) -> InstanceCredentials | None:
    """The instance's chain if it was ever created, else None (creates nothing: for verifying)."""
    directory = home / DIRECTORY
    return _load(directory) if (directory / CA_CERT).is_file() else None


# creation ------------------------------------------------------------------------------------------


def _create(home: Path, directory: Path, now: datetime) -> None:
    home.mkdir(parents=True, exist_ok=True)
    staging = home / f".{DIRECTORY}-{secrets.token_hex(6)}"
    staging.mkdir(mode=0o700)
    try:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = _ca_certificate(ca_key, now)
        _write(staging / CA_KEY, _private_pem(ca_key), secret=True)
        _write(staging / CA_CERT, ca_cert.public_bytes(serialization.Encoding.PEM))
        _issue_signer(staging, ca_key, ca_cert, now)
        try:
            os.rename(staging, directory)  # atomic; fails if another process got there first
        except OSError:
            if not (directory / CA_CERT).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _renew_signer(directory: Path, now: datetime) -> None:
    ca_key = serialization.load_pem_private_key((directory / CA_KEY).read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise CredentialsError(f"{directory / CA_KEY} is not an EC private key")
    ca_cert = x509.load_pem_x509_certificate((directory / CA_CERT).read_bytes())
    _issue_signer(directory, ca_key, ca_cert, now)


def _issue_signer(directory: Path, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate,
                  now: datetime) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _signer_certificate(key, ca_key, ca_cert, now)
    # Key first, certificate second: a reader that sees the new certificate also sees its key.
    _write(directory / SIGNER_KEY, _private_pem(key), secret=True)
    _write(directory / SIGNER_CERT, cert.public_bytes(serialization.Encoding.PEM))


def _ca_certificate(key: ec.EllipticCurvePrivateKey, now: datetime) -> x509.Certificate:
    tag = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)[-4:].hex()
    name = _name(f"MimicSafe instance CA {tag}")
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _signer_certificate(key: ec.EllipticCurvePrivateKey, ca_key: ec.EllipticCurvePrivateKey,
                        ca_cert: x509.Certificate, now: datetime) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(_name("MimicSafe content signer"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + SIGNER_LIFETIME, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=not cert_sign, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign,
                         crl_sign=cert_sign, encipher_only=False, decipher_only=False)


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path: Path, data: bytes, *, secret: bool = False) -> None:
    """Write via a temporary file and rename; a secret is 0600 from its first byte."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if secret else 0o644)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# loading -------------------------------------------------------------------------------------------


def _load(directory: Path) -> InstanceCredentials:
    try:
        ca_pem = (directory / CA_CERT).read_bytes()
        signer_pem = (directory / SIGNER_CERT).read_bytes()
        key_pem = (directory / SIGNER_KEY).read_bytes()
    except OSError as exc:
        raise CredentialsError(f"the instance's signing credentials in {directory} cannot be read "
                               f"({exc.strerror or exc}); restore them from a backup, or move the folder "
                               "away to create a new chain (older images then verify only with the old anchor)"
                               ) from None
    ca = x509.load_pem_x509_certificate(ca_pem)
    signer = x509.load_pem_x509_certificate(signer_pem)
    key = serialization.load_pem_private_key(key_pem, password=None)
    if signer.issuer != ca.subject:
        raise CredentialsError(f"{directory / SIGNER_CERT} was not issued by {directory / CA_CERT}")
    if key.public_key().public_numbers() != signer.public_key().public_numbers():  # type: ignore[union-attr]
        raise CredentialsError(f"{directory / SIGNER_KEY} does not belong to {directory / SIGNER_CERT}")
    return InstanceCredentials(
        directory=directory,
        ca_pem=ca_pem,
        chain_pem=signer_pem + ca_pem,
        key_pem=key_pem,
        signer_subject=signer.subject.rfc4514_string(),
        signer_not_after=signer.not_valid_after_utc,
    )
