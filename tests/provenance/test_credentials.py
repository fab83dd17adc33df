"""The instance's certificate chain: made once, keys private, a proper CA and signing certificate."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from mimicsafe.provenance import credentials as creds


def test_created_on_first_use_with_private_keys(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert creds.load_credentials(home) is None
    made = creds.ensure_credentials(home)
    directory = home / creds.DIRECTORY
    for name in (creds.CA_KEY, creds.SIGNER_KEY):
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600
    assert sorted(p.name for p in directory.iterdir()) == sorted(
        [creds.CA_CERT, creds.CA_KEY, creds.SIGNER_CERT, creds.SIGNER_KEY])
    assert [p.name for p in home.iterdir()] == [creds.DIRECTORY]  # no staging folder left behind
    again = creds.ensure_credentials(home)
    assert again.ca_pem == made.ca_pem and again.key_pem == made.key_pem
    assert "PRIVATE" not in repr(made) and made.key_pem.decode() not in repr(made)


def test_the_chain_is_what_c2pa_asks_for(tmp_path: Path) -> None:
    made = creds.ensure_credentials(tmp_path)
    ca = x509.load_pem_x509_certificate(made.ca_pem)
    signer, issuer = x509.load_pem_x509_certificates(made.chain_pem)
    assert issuer == ca and signer.issuer == ca.subject and signer.subject != ca.subject  # not self-signed
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert signer.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    usage = signer.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign
    eku = signer.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.EMAIL_PROTECTION]
    signer.verify_directly_issued_by(ca)  # raises if the CA's key did not sign it


def test_signing_certificate_is_renewed_under_the_same_anchor(tmp_path: Path) -> None:
    made = creds.ensure_credentials(tmp_path)
    later = datetime.now(UTC) + creds.SIGNER_LIFETIME - timedelta(days=10)
    renewed = creds.ensure_credentials(tmp_path, now=later)
    assert renewed.ca_pem == made.ca_pem
    assert renewed.key_pem != made.key_pem and renewed.signer_not_after > made.signer_not_after


def test_mismatched_files_are_refused(tmp_path: Path) -> None:
    creds.ensure_credentials(tmp_path / "a")
    creds.ensure_credentials(tmp_path / "b")
    directory = tmp_path / "a" / creds.DIRECTORY
    (directory / creds.SIGNER_KEY).write_bytes((tmp_path / "b" / creds.DIRECTORY / creds.SIGNER_KEY).read_bytes())
    with pytest.raises(creds.CredentialsError, match="does not belong"):
        creds.ensure_credentials(tmp_path / "a")
