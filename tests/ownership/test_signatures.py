"""Keys, signed manifests and OpenSSH signatures, checked against the real ssh-keygen where it matters."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ownership.errors import SignatureError
from ownership.reasons import BAD_SIGNATURE, KEY_REVOKED
from ownership.signatures import (
    PRIVATE_KEY_NAME,
    PUBLIC_KEY_NAME,
    PublicKeyInfo,
    RegisteredKey,
    SignatureCheck,
    canonical_json,
    check_signature,
    generate_keypair,
    load_private_key,
    load_public_key,
    parse_manifest,
    sign_manifest,
    verify_manifest,
    write_keypair,
)
from ownership.sshsig import armor, dearmor, parse_sshsig, sign_sshsig

# OpenSSH's ssh-keygen is a test dependency (Debian: openssh-client). Missing, these tests fail loudly
# rather than skip: compatibility with it is the point of the key and SSHSIG formats.
SSH_KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"

ART = b"\x89PNG\r\n\x1a\n pretend this is alice's drawing"
OTHER_ART = b"\x89PNG\r\n\x1a\n bob's drawing"
NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
FUZZ = settings(
    max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


def keygen(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([SSH_KEYGEN, *args], input=stdin, capture_output=True, check=True, timeout=60)


def ssh_sign(key: Path, file: Path, namespace: str = "mimicsafe-upload") -> bytes:
    sig = file.with_name(file.name + ".sig")
    sig.unlink(missing_ok=True)  # ssh-keygen asks before overwriting, and exits 0 when it may not
    keygen("-Y", "sign", "-n", namespace, "-f", str(key), str(file), stdin=b"")
    return sig.read_bytes()


def registered(pub: Path, *, revoked: bool = False) -> RegisteredKey:
    return RegisteredKey.from_info(load_public_key(pub.read_bytes()), revoked=revoked)


@dataclass(frozen=True)
class Keys:
    alice_priv: Path  # made by write_keypair
    alice_pub: Path
    ssh_priv: Path  # an ed25519 key made by ssh-keygen, as an SSH user already has
    ssh_pub: Path
    rsa_priv: Path
    rsa_pub: Path
    ecdsa_pub: Path


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    root = tmp_path_factory.mktemp("keys")
    alice_priv, alice_pub = write_keypair(root / "alice")
    keygen("-q", "-t", "ed25519", "-N", "", "-C", "carol@laptop", "-f", str(root / "id_ed25519"))
    keygen("-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", str(root / "id_rsa"))
    keygen("-q", "-t", "ecdsa", "-N", "", "-f", str(root / "id_ecdsa"))
    return Keys(
        alice_priv,
        alice_pub,
        root / "id_ed25519",
        root / "id_ed25519.pub",
        root / "id_rsa",
        root / "id_rsa.pub",
        root / "id_ecdsa.pub",
    )


def check(
    signature: bytes | None,
    keys: list[RegisteredKey],
    *,
    data: bytes = ART,
    artist: str = "alice",
    name: str = "art.png",
) -> SignatureCheck | None:
    return check_signature(
        file_bytes=data, file_name=name, artist=artist, signature=signature, registered_keys=keys
    )


# --- keys ----------------------------------------------------------------------------------------


def test_write_keypair_creates_private_key_0600_from_the_start(tmp_path, monkeypatch):
    created: dict[str, tuple[int, int]] = {}
    real_open = os.open

    def spy(path, flags, mode=0o777, *args, **kwargs):
        created[os.fspath(path)] = (flags, mode)
        return real_open(path, flags, mode, *args, **kwargs)

    monkeypatch.setattr(os, "open", spy)
    old_umask = os.umask(0)  # the most permissive umask: the mode must not rely on it
    try:
        priv, pub = write_keypair(tmp_path / "keys")
    finally:
        os.umask(old_umask)

    assert (priv.name, pub.name) == (PRIVATE_KEY_NAME, PUBLIC_KEY_NAME)
    flags, mode = created[str(priv)]
    assert mode == 0o600 and flags & os.O_EXCL and flags & os.O_CREAT
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    assert stat.S_IMODE(pub.stat().st_mode) == 0o644


def test_key_formats_are_openssh_and_agree_with_ssh_keygen(tmp_path):
    priv, pub = write_keypair(tmp_path)
    assert priv.read_bytes().startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----\n")
    line = pub.read_text()
    assert line.endswith(" mimicsafe\n") and line.count("\n") == 1
    key_type, blob, comment = line.split()
    assert (key_type, comment) == ("ssh-ed25519", "mimicsafe")
    # ssh-keygen reads our private key and derives the same public key from it.
    derived = keygen("-y", "-f", str(priv)).stdout.decode().split()
    assert derived[:2] == [key_type, blob]
    assert load_private_key(priv).public_key().public_bytes_raw() == load_public_key(line).raw


def test_generate_keypair_gives_fresh_keys():
    (priv_a, pub_a), (priv_b, pub_b) = generate_keypair(), generate_keypair()
    assert priv_a != priv_b and pub_a != pub_b
    assert load_public_key(pub_a).raw == load_private_key(priv_a).public_key().public_bytes_raw()


def test_write_keypair_refuses_to_overwrite(tmp_path):
    priv, _ = write_keypair(tmp_path)
    before = priv.read_bytes()
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        write_keypair(tmp_path)
    assert priv.read_bytes() == before


def test_fingerprint_equals_ssh_keygen_lf(keys):
    for pub in (keys.alice_pub, keys.ssh_pub):
        printed = keygen("-lf", str(pub)).stdout.decode().split()
        info = load_public_key(pub.read_bytes())
        assert printed[0] == "256" and printed[-1] == "(ED25519)"
        assert info.fingerprint == printed[1]
        assert len(info.raw) == 32
    assert load_public_key(keys.ssh_pub.read_text()).comment == "carol@laptop"


def test_pem_public_key_has_the_same_fingerprint(keys):
    private_key = load_private_key(keys.ssh_priv)
    pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert load_public_key(pem).fingerprint == load_public_key(keys.ssh_pub.read_bytes()).fingerprint
    info = load_public_key(pem)
    assert isinstance(info, PublicKeyInfo)
    assert load_public_key(info.openssh_line()).raw == info.raw


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda k: k.rsa_pub.read_bytes(), "RSA key"),
        (lambda k: k.ecdsa_pub.read_bytes(), "ECDSA key"),
        (
            lambda k: (
                rsa.generate_private_key(public_exponent=65537, key_size=1024)
                .public_key()
                .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            ),
            "RSA key",
        ),
        (
            lambda k: (
                ec.generate_private_key(ec.SECP256R1())
                .public_key()
                .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            ),
            "ECDSA key",
        ),
        (lambda k: k.alice_priv.read_bytes(), "PRIVATE key"),
        (lambda k: b"", "empty"),
        (lambda k: b"hello world", "not an OpenSSH public key"),
        (lambda k: b"ssh-ed25519 !!!notbase64", "not valid base64"),
        (
            lambda k: b"ssh-ed25519 " + base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x05short"),
            "32 bytes",
        ),
        (lambda k: k.alice_pub.read_bytes() * 2, "found 2 lines"),
    ],
)
def test_load_public_key_refuses_everything_else_clearly(keys, make, expected):
    with pytest.raises(SignatureError, match=expected) as info:
        load_public_key(make(keys))
    assert info.value.code == BAD_SIGNATURE


def test_load_private_key_refuses_other_types_and_locked_keys(keys, tmp_path):
    with pytest.raises(SignatureError, match="RSA key"):
        load_private_key(keys.rsa_priv)
    locked = tmp_path / "locked"
    keygen("-q", "-t", "ed25519", "-N", "secret phrase", "-f", str(locked))
    with pytest.raises(SignatureError, match="passphrase"):
        load_private_key(locked)
    try:  # opening it needs the optional bcrypt package; without it the refusal says so
        assert isinstance(load_private_key(locked, password=b"secret phrase"), Ed25519PrivateKey)
    except SignatureError as exc:
        assert "bcrypt" in exc.detail and "ssh-keygen -Y sign" in exc.detail
    with pytest.raises(SignatureError, match="not a private key"):
        load_private_key(keys.alice_pub)


def test_registered_key_rejects_a_fingerprint_of_another_key(keys):
    info = load_public_key(keys.alice_pub.read_bytes())
    other = load_public_key(keys.ssh_pub.read_bytes())
    with pytest.raises(ValueError, match="does not belong"):
        RegisteredKey(fingerprint=other.fingerprint, public_key=info.raw, revoked=False)
    with pytest.raises(ValueError, match="32-byte"):
        RegisteredKey(fingerprint=info.fingerprint, public_key=info.raw[:31], revoked=False)


# --- manifests -----------------------------------------------------------------------------------


def test_manifest_sign_then_verify(keys, tmp_path):
    path = tmp_path / "sub" / "art.png"
    path.parent.mkdir()
    path.write_bytes(ART)
    data = sign_manifest(
        private_key_path_or_bytes=keys.alice_priv,
        artist="alice",
        files=[path, ("C:\\Users\\a\\other.png", OTHER_ART)],
        now=NOW,
    )
    manifest = parse_manifest(data)
    assert manifest.artist == "alice" and manifest.created_at == NOW
    assert [(f.name, f.sha256) for f in manifest.files] == [
        ("art.png", hashlib.sha256(ART).hexdigest()),
        ("other.png", hashlib.sha256(OTHER_ART).hexdigest()),
    ]
    assert len(manifest.nonce) == 32 and int(manifest.nonce, 16) >= 0
    alice = registered(keys.alice_pub)
    assert manifest.key_fingerprint == alice.fingerprint
    assert verify_manifest(manifest, public_keys=[registered(keys.ssh_pub), alice]) is alice

    document = json.loads(data)
    assert set(document) == {"payload", "signature", "key_fingerprint"}
    assert document["payload"]["created_at"] == "2025-01-02T03:04:05Z"
    assert manifest.payload == canonical_json(document["payload"])
    assert manifest.payload.startswith(
        b'{"artist":"alice","created_at":"2025-01-02T03:04:05Z","files":[{"name"'
    )

    result = check(data, [alice])
    assert result is not None and result.ok and result.code is None
    assert result.kind == "manifest" and result.manifest_nonce == manifest.nonce
    assert result.key_fingerprint == alice.fingerprint
    renamed = check(data, [alice], name="IMG_0001.png")  # browsers rename files; the hash is what counts
    assert renamed is not None and renamed.ok and "'art.png'" in renamed.detail


def test_manifests_get_fresh_nonces(keys):
    first, second = (
        parse_manifest(
            sign_manifest(
                private_key_path_or_bytes=keys.alice_priv, artist="alice", files=[("a.png", ART)], now=NOW
            )
        )
        for _ in range(2)
    )
    assert first.nonce != second.nonce


def test_canonical_json_form():
    assert canonical_json({"b": [1, {"é": '\n\x01"\\'}], "a": "ü"}) == (
        '{"a":"ü","b":[1,{"é":"\\n\\u0001\\"\\\\"}]}'.encode()
    )


def _signed(keys: Keys, *, key: Path | None = None, artist: str = "alice") -> bytes:
    return sign_manifest(
        private_key_path_or_bytes=key or keys.alice_priv, artist=artist, files=[("art.png", ART)], now=NOW
    )


def _tamper_payload(data: bytes) -> bytes:
    document = json.loads(data)
    document["payload"]["files"].append(
        {"name": "stolen.png", "sha256": hashlib.sha256(OTHER_ART).hexdigest()}
    )
    return json.dumps(document).encode()


def test_manifest_failures_each_have_their_own_code_and_detail(keys):
    alice = registered(keys.alice_pub)
    good = _signed(keys)
    cases = {
        "tampered file": (check(good, [alice], data=ART + b"!"), BAD_SIGNATURE, "not listed in the manifest"),
        "tampered manifest": (
            check(_tamper_payload(good), [alice], data=OTHER_ART),
            BAD_SIGNATURE,
            "altered after signing",
        ),
        "wrong key": (check(_signed(keys, key=keys.ssh_priv), [alice]), BAD_SIGNATURE, "not registered to"),
        "wrong artist": (check(_signed(keys, artist="bob"), [alice]), BAD_SIGNATURE, "for artist 'bob'"),
        "revoked key": (check(good, [registered(keys.alice_pub, revoked=True)]), KEY_REVOKED, "revoked"),
        "no keys": (check(good, []), BAD_SIGNATURE, "no registered signing key"),
    }
    for label, (result, code, phrase) in cases.items():
        assert result is not None and not result.ok, label
        assert result.code == code, label
        assert phrase in result.detail, (label, result.detail)
    assert len({result.detail for result, _, _ in cases.values()}) == len(cases)


def test_revoked_key_does_not_win_over_a_current_one(keys):
    # The same key stored twice (once revoked) must still be refused only if no current copy verifies.
    fresh, revoked = registered(keys.alice_pub), registered(keys.alice_pub, revoked=True)
    result = check(_signed(keys), [revoked, fresh])
    assert result is not None and result.ok


def test_manifest_edits_outside_the_signature_are_refused(keys):
    document = json.loads(_signed(keys))
    document["key_fingerprint"] = registered(keys.ssh_pub).fingerprint
    with pytest.raises(SignatureError, match="outer key_fingerprint"):
        parse_manifest(json.dumps(document).encode())
    document = json.loads(_signed(keys))
    document["payload"]["extra"] = 1
    with pytest.raises(SignatureError, match="unexpected"):
        parse_manifest(json.dumps(document).encode())
    raw = _signed(keys).replace(b'"version": 1', b'"version": 1, "version": 1')
    with pytest.raises(SignatureError, match="duplicate key"):
        parse_manifest(raw)


def test_hostile_manifests_are_refused_not_crashed(keys):
    hostile = {
        b'{"payload":' + b"[" * 100_000: "not valid JSON",  # nesting deep enough to exhaust the stack
        b'{"payload": 1e999}': "not valid JSON",
        b'{"payload": NaN}': "not valid JSON",
        b'{"payload": ' + b"9" * 5000 + b"}": "not valid JSON",  # past Python's int-digit limit
        b"{" + b" " * (9 * 1024 * 1024): "bytes; at most",
        _signed(keys).replace(b'"alice"', rb'"\ud800"'): "not valid Unicode",  # a lone surrogate
    }
    for data, phrase in hostile.items():
        with pytest.raises(SignatureError, match=phrase):
            parse_manifest(data)
        result = check(data, [registered(keys.alice_pub)])
        assert result is not None and result.code == BAD_SIGNATURE and phrase in result.detail


def test_no_signature_and_unknown_signature(keys):
    alice = registered(keys.alice_pub)
    assert check(None, [alice]) is None
    for junk, phrase in (
        (b"", "empty"),
        (b"GIF89a", "neither"),
        (b"-----BEGIN PGP SIGNATURE-----", "neither"),
    ):
        result = check(junk, [alice])
        assert result is not None and result.code == BAD_SIGNATURE and phrase in result.detail


# --- OpenSSH signatures --------------------------------------------------------------------------


@pytest.fixture()
def art_file(tmp_path: Path) -> Path:
    path = tmp_path / "art.png"
    path.write_bytes(ART)
    return path


def test_sshsig_from_real_ssh_keygen_verifies(keys, art_file):
    carol = registered(keys.ssh_pub)
    result = check(ssh_sign(keys.ssh_priv, art_file), [registered(keys.alice_pub), carol])
    assert result == SignatureCheck(
        True, None, f"OpenSSH signature by alice's key {carol.fingerprint}", carol.fingerprint, "sshsig", None
    )


def test_our_key_works_with_ssh_keygen_sign(keys, art_file):
    alice = registered(keys.alice_pub)
    result = check(ssh_sign(keys.alice_priv, art_file), [alice])
    assert result is not None and result.ok and result.key_fingerprint == alice.fingerprint


def test_sshsig_wrong_namespace_tampered_file_unregistered_and_revoked(keys, art_file):
    carol = registered(keys.ssh_pub)
    good = ssh_sign(keys.ssh_priv, art_file)
    other_namespace = ssh_sign(keys.ssh_priv, art_file, namespace="file")
    cases = {
        "namespace": (check(other_namespace, [carol]), BAD_SIGNATURE, "namespace 'file'"),
        "tampered file": (check(good, [carol], data=ART + b"!"), BAD_SIGNATURE, "the file was changed"),
        "unregistered": (check(good, [registered(keys.alice_pub)]), BAD_SIGNATURE, "not registered to"),
        "revoked": (check(good, [registered(keys.ssh_pub, revoked=True)]), KEY_REVOKED, "revoked"),
    }
    for label, (result, code, phrase) in cases.items():
        assert result is not None and not result.ok and result.kind == "sshsig", label
        assert result.code == code, label
        assert phrase in result.detail, (label, result.detail)


def test_rsa_ssh_signature_is_refused_clearly(keys, art_file):
    result = check(ssh_sign(keys.rsa_priv, art_file), [registered(keys.alice_pub)])
    assert result is not None and result.code == BAD_SIGNATURE
    assert "RSA key" in result.detail and "ssh-ed25519" in result.detail


def test_our_sshsig_matches_and_passes_ssh_keygen(keys, art_file, tmp_path):
    ours = sign_sshsig(load_private_key(keys.ssh_priv), ART)
    assert ours == ssh_sign(keys.ssh_priv, art_file)  # Ed25519 is deterministic: byte-identical
    sha256_sig = sign_sshsig(load_private_key(keys.alice_priv), ART, hash_algorithm="sha256")
    allowed = tmp_path / "allowed_signers"
    allowed.write_text("alice " + keys.alice_pub.read_text())
    keygen(
        "-Y",
        "verify",
        "-f",
        str(allowed),
        "-I",
        "alice",
        "-n",
        "mimicsafe-upload",
        "-s",
        str(_write(tmp_path / "a.sig", sha256_sig)),
        stdin=ART,
    )
    result = check(sha256_sig, [registered(keys.alice_pub)])
    assert result is not None and result.ok and parse_sshsig(sha256_sig).hash_algorithm == "sha256"


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("blob", "phrase"),
    [
        (b"SSHSIG\x00\x00\x00\x01\xff\xff\xff\xff", "truncated"),
        (b"SSHSIG\x00\x00\x00\x02", "version 2"),
        (b"NOTSIG\x00\x00\x00\x01", "magic"),
        (b"", "truncated"),
    ],
)
def test_malformed_sshsig_blobs_are_refused(blob, phrase):
    with pytest.raises(SignatureError, match=phrase):
        parse_sshsig(armor(blob))


# --- fuzz: nothing but SignatureError, whatever the input ---------------------------------------


@pytest.fixture(scope="module")
def samples(keys) -> tuple[bytes, bytes, list[RegisteredKey]]:
    manifest = _signed(keys)
    sshsig = sign_sshsig(load_private_key(keys.alice_priv), ART)
    return manifest, sshsig, [registered(keys.alice_pub)]


def _mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    out = bytearray(data)
    for kind, position, value in edits:
        if not out and kind != 1:
            continue
        i = position % (len(out) + 1)
        if kind == 0 and i < len(out):
            out[i] ^= value or 1  # flip bits
        elif kind == 1:
            out[i:i] = bytes([value])  # insert
        elif kind == 2:
            del out[i : i + value % 8 + 1]  # delete a run
        else:
            del out[i:]  # truncate
    return bytes(out)


EDITS = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=6
)


def _only_signature_errors(call, *args):
    """Call a parser; SignatureError is the one exception it may raise (any other fails the test)."""
    with contextlib.suppress(SignatureError):
        call(*args)


@FUZZ
@given(data=st.binary(max_size=600), prefix=st.sampled_from([b"", b"{", b"-----BEGIN SSH SIGNATURE-----\n"]))
def test_fuzz_random_bytes(samples, data, prefix):
    blob = prefix + data
    for parser in (parse_manifest, parse_sshsig, load_public_key, load_private_key):
        _only_signature_errors(parser, blob)
    _only_signature_errors(parse_sshsig, armor(data))
    result = check(blob, samples[2])
    assert isinstance(result, SignatureCheck) and not result.ok


@FUZZ
@given(edits=EDITS, which=st.sampled_from(["manifest", "sshsig-text", "sshsig-blob"]))
def test_fuzz_mutated_valid_signatures(samples, edits, which):
    manifest, sshsig, alice = samples
    if which == "manifest":
        original, mutated = manifest, _mutate(manifest, edits)
        parse = parse_manifest
    elif which == "sshsig-text":
        original, mutated = sshsig, _mutate(sshsig, edits)
        parse = parse_sshsig
    else:
        original, mutated = sshsig, armor(_mutate(dearmor(sshsig), edits))
        parse = parse_sshsig
    _only_signature_errors(parse, mutated)
    result = check(mutated, alice)
    assert isinstance(result, SignatureCheck)
    if result.ok:  # only a harmless edit (layout, whitespace) may still verify
        assert parse(mutated) == parse(original)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@FUZZ
@given(
    path=st.sampled_from(
        [
            "payload",
            "signature",
            "key_fingerprint",
            "payload.files",
            "payload.artist",
            "payload.version",
            "payload.nonce",
            "payload.created_at",
            "payload.files.0",
            "payload.files.0.sha256",
            "payload.files.0.name",
        ]
    ),
    value=JSON_VALUES,
)
def test_fuzz_structured_manifest_edits(samples, path, value):
    manifest, _, alice = samples
    document = json.loads(manifest)
    *parents, last = path.split(".")
    target = document
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    original = target[int(last)] if last.isdigit() else target[last]
    if last.isdigit():
        target[int(last)] = value
    else:
        target[last] = value
    result = check(json.dumps(document).encode(), alice)
    assert isinstance(result, SignatureCheck)
    assert result.ok == (value == original and type(value) is type(original))
