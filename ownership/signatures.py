"""Signing keys, signed batch manifests, and the one signature check the gate's policy calls.

An artist proves "I made these files" with an Ed25519 key whose public half is registered to their
account. Two kinds of proof are accepted, and `check_signature` tells them apart by their first bytes:

* a **signed manifest** (`mimicsafe sign --key KEY --artist NAME FILE...`): one JSON file for a whole
  batch, listing each file's SHA-256; starts with `{`;
* an **OpenSSH signature** per file (`ssh-keygen -Y sign -n mimicsafe-upload -f KEY FILE` → `FILE.sig`);
  starts with `-----BEGIN SSH SIGNATURE-----`. See `ownership.sshsig`.

Key files. `mimicsafe keys generate` writes OpenSSH formats on purpose: the private key
`mimicsafe_ed25519` is an unencrypted `-----BEGIN OPENSSH PRIVATE KEY-----` file (mode 0600) and the
public key `mimicsafe_ed25519.pub` is one line `ssh-ed25519 AAAA… mimicsafe`. So the very same key
signs manifests here *and* works with `ssh-keygen -Y sign`, `ssh-keygen -lf` shows the same
fingerprint the app shows, and an artist who already has an ed25519 SSH key can register it as is.
Fingerprints are OpenSSH's: `SHA256:` + unpadded base64 of SHA-256 over the wire-form public key.

Manifest file (UTF-8 JSON, written pretty-printed with sorted keys; any JSON layout is accepted):

    {"key_fingerprint": "SHA256:…",
     "payload": {"artist": "alice", "created_at": "2025-01-02T03:04:05Z",
                 "files": [{"name": "a.png", "sha256": "<64 lowercase hex>"}, …],
                 "format": "mimicsafe-manifest", "key_fingerprint": "SHA256:…",
                 "nonce": "<32 lowercase hex = 128 random bits>", "version": 1},
     "signature": "<standard base64 of the 64-byte Ed25519 signature>"}

The signature covers `canonical_json(payload)`, re-derived from the parsed payload on every check:
UTF-8 without BOM; object keys sorted by code point (all our keys are ASCII, so this equals
RFC 8785's UTF-16 order); no whitespace (separators `,` and `:`); strings escape `"` and `\\` with a
backslash, U+0008/09/0A/0C/0D as `\\b \\t \\n \\f \\r`, other U+0000–U+001F as `\\u00xx` (lowercase
hex), and write every other character, non-ASCII included, as literal UTF-8; the only number is
`version`, a small integer in plain decimal; no floats, booleans or nulls. For these types this is
exactly RFC 8785 (JCS). The `format` tag inside the signed bytes keeps a manifest signature from being
mistaken for any other use of the key (an SSHSIG signs bytes that start with "SSHSIG").

File names are basenames and informative only (browsers rename files); a file is covered when its
SHA-256 is listed. `nonce` and `created_at` are signed so that a manifest can be told apart from every
other manifest: the gate does not refuse a manifest seen before (one manifest legitimately covers a
batch that may be uploaded in several requests), but `SignatureCheck.manifest_nonce` exposes the nonce
so the caller may refuse reuse across uploads, or expire old manifests, if it chooses to.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ownership.errors import SignatureError
from ownership.reasons import BAD_SIGNATURE, KEY_REVOKED
from ownership.sshsig import (
    ED25519,
    ONLY_ED25519_HINT,
    UPLOAD_NAMESPACE,
    bad,
    describe_key_type,
    ed25519_key_blob,
    fingerprint,
    looks_like_sshsig,
    parse_ed25519_key_blob,
    parse_sshsig,
    require_namespace,
    show,
    verify_sshsig,
)

PRIVATE_KEY_NAME = "mimicsafe_ed25519"
PUBLIC_KEY_NAME = "mimicsafe_ed25519.pub"
KEY_COMMENT = "mimicsafe"
MANIFEST_FORMAT = "mimicsafe-manifest"
MANIFEST_VERSION = 1
MAX_KEY_BYTES = 16 * 1024
MAX_MANIFEST_BYTES = 8 * 1024 * 1024
MAX_MANIFEST_FILES = 10_000
MAX_NAME_CHARS = 255
MAX_ARTIST_CHARS = 128

_PAYLOAD_KEYS = frozenset({"format", "version", "artist", "created_at", "nonce", "key_fingerprint", "files"})
_FILE_KEYS = frozenset({"name", "sha256"})
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_NONCE_RE = re.compile(r"[0-9a-f]{32}")
_FINGERPRINT_RE = re.compile(r"SHA256:[A-Za-z0-9+/]{43}")
_TIME_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


# --- keys ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PublicKeyInfo:
    """An ed25519 public key as the app stores and shows it."""

    raw: bytes  # the 32-byte key
    fingerprint: str  # "SHA256:…", as `ssh-keygen -lf` prints it
    comment: str = ""

    def openssh_line(self) -> str:
        """`ssh-ed25519 AAAA… comment`, the content of a .pub file."""
        blob = base64.b64encode(ed25519_key_blob(self.raw)).decode("ascii")
        return f"{ED25519} {blob} {self.comment}".rstrip()


@dataclass(frozen=True)
class RegisteredKey:
    """A key registered to one artist, as the caller loaded it from storage."""

    fingerprint: str
    public_key: bytes  # the raw 32-byte ed25519 key
    revoked: bool

    def __post_init__(self) -> None:
        if len(self.public_key) != 32:
            raise ValueError(
                f"public_key must be the raw 32-byte ed25519 key, got {len(self.public_key)} bytes"
            )
        if self.fingerprint != fingerprint(self.public_key):
            raise ValueError(
                f"fingerprint {self.fingerprint!r} does not belong to public_key "
                f"(its fingerprint is {fingerprint(self.public_key)}); store PublicKeyInfo.fingerprint"
            )

    @classmethod
    def from_info(cls, info: PublicKeyInfo, *, revoked: bool = False) -> RegisteredKey:
        return cls(fingerprint=info.fingerprint, public_key=info.raw, revoked=revoked)


def generate_keypair() -> tuple[bytes, bytes]:
    """A new key: (OpenSSH private key file content, `ssh-ed25519 AAAA… mimicsafe\\n` line)."""
    private_key = Ed25519PrivateKey.generate()
    private_bytes = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    info = _info_from_raw(private_key.public_key().public_bytes_raw(), KEY_COMMENT)
    return private_bytes, (info.openssh_line() + "\n").encode("ascii")


def write_keypair(out_dir: Path) -> tuple[Path, Path]:
    """Write a new key pair into `out_dir`; the private file is created 0600, never wider.

    Refuses to overwrite an existing key: replacing a key silently would orphan everything it signed.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    private_path, public_path = out_dir / PRIVATE_KEY_NAME, out_dir / PUBLIC_KEY_NAME
    for path in (private_path, public_path):
        if path.exists() or path.is_symlink():
            raise FileExistsError(
                f"{path} already exists; refusing to overwrite a key. Choose another directory, "
                "or move the old key away first (and revoke it if it is no longer used)."
            )
    private_bytes, public_bytes = generate_keypair()
    _create_file(private_path, private_bytes, mode=0o600)
    try:
        _create_file(public_path, public_bytes, mode=0o644)
    except BaseException:
        private_path.unlink(missing_ok=True)
        raise
    return private_path, public_path


def _create_file(path: Path, data: bytes, *, mode: int) -> None:
    """Create `path` exclusively with `mode` from the first syscall (no window with wider access)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
    try:
        os.fchmod(fd, mode)  # the umask may only have narrowed it; make it exactly `mode`
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)


def load_private_key(key: Path | str | bytes, *, password: bytes | None = None) -> Ed25519PrivateKey:
    """An ed25519 private key from a file path (Path or str) or the file's bytes.

    Accepts OpenSSH (`-----BEGIN OPENSSH PRIVATE KEY-----`) and PKCS#8 PEM. OSError from reading a
    path propagates unchanged; anything wrong with the content raises `SignatureError`.
    """
    if isinstance(key, bytes):
        data = key
    else:
        with open(key, "rb") as handle:
            data = handle.read(MAX_KEY_BYTES + 1)
    if len(data) > MAX_KEY_BYTES:
        raise bad(f"the private key file is over {MAX_KEY_BYTES} bytes; it is not a key file")
    data = data.strip()
    try:
        if data.startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----"):
            loaded: Any = serialization.load_ssh_private_key(data, password=password)
        elif data.startswith(b"-----BEGIN") and b"PRIVATE KEY-----" in data.split(b"\n", 1)[0]:
            loaded = serialization.load_pem_private_key(data, password=password)
        else:
            raise bad(
                "this is not a private key file (expected -----BEGIN OPENSSH PRIVATE KEY-----); "
                "pass the file without .pub, e.g. mimicsafe_ed25519"
            )
    except TypeError as exc:  # cryptography's way of saying "password missing / not needed"
        raise bad(
            f"cannot open the private key: {exc} (give its passphrase, or use an unencrypted key)"
        ) from None
    except UnsupportedAlgorithm as exc:
        if "bcrypt" in str(exc):
            raise bad(
                "this passphrase-protected OpenSSH key needs the optional 'bcrypt' package to open; sign "
                "with `ssh-keygen -Y sign -n mimicsafe-upload -f KEY FILE` instead, or use an unencrypted key"
            ) from None
        raise bad(f"cannot read the private key: {exc}") from None
    except ValueError as exc:
        raise bad(
            f"cannot read the private key: {exc}; is the file complete and the passphrase right?"
        ) from None
    if not isinstance(loaded, Ed25519PrivateKey):
        raise bad(f"the private key is {_describe_crypto_key(loaded)}; {ONLY_ED25519_HINT}")
    return loaded


def load_public_key(text: str | bytes) -> PublicKeyInfo:
    """An ed25519 public key from a .pub line (`ssh-ed25519 AAAA… [comment]`) or a PEM public key.

    Anything else (RSA, ECDSA, a private key, a signature, garbage) raises `SignatureError` saying why.
    """
    if isinstance(text, str):
        text = text.encode("utf-8", errors="replace")
    if len(text) > MAX_KEY_BYTES:
        raise bad(f"the public key is over {MAX_KEY_BYTES} bytes; a .pub file is one short line")
    data = text.removeprefix(b"\xef\xbb\xbf").strip()
    first_line = data.split(b"\n", 1)[0].strip()
    if not data:
        raise bad("the public key file is empty")
    if first_line.startswith(b"-----BEGIN"):
        return _load_pem_public_key(data, first_line)
    lines = [line for line in data.splitlines() if line.strip() and not line.lstrip().startswith(b"#")]
    if len(lines) != 1:
        raise bad(f"expected one key line 'ssh-ed25519 AAAA… [comment]', found {len(lines)} lines")
    return _load_openssh_line(lines[0])


def _load_openssh_line(line: bytes) -> PublicKeyInfo:
    try:
        fields = line.decode("utf-8").split(None, 2)
    except UnicodeDecodeError:
        raise bad("the public key line is not UTF-8 text") from None
    if not fields:  # bytes.strip() keeps characters that str.split() drops (\x1c-\x1f, \x85, U+3000…)
        raise bad("the public key line holds only whitespace or control characters")
    key_type = fields[0]
    if key_type != ED25519:
        if key_type in ("ssh-rsa", "ssh-dss") or key_type.startswith(("ecdsa-", "sk-", "ssh-")):
            raise bad(f"the public key is {describe_key_type(key_type)}; {ONLY_ED25519_HINT}")
        raise bad(f"not an OpenSSH public key line: expected 'ssh-ed25519 AAAA… [comment]', got {show(line)}")
    if len(fields) < 2:
        raise bad("the ssh-ed25519 line has no key data after the type")
    try:
        blob = base64.b64decode(fields[1], validate=True)
    except (binascii.Error, ValueError):
        raise bad(
            "the key data in the ssh-ed25519 line is not valid base64; was it cut or wrapped?"
        ) from None
    raw = parse_ed25519_key_blob(blob)
    return _info_from_raw(raw, fields[2].strip() if len(fields) > 2 else "")


def _load_pem_public_key(data: bytes, first_line: bytes) -> PublicKeyInfo:
    if b"PRIVATE KEY" in first_line:
        raise bad("this is a PRIVATE key; register the public key (the .pub file) and keep this one secret")
    if b"SSH SIGNATURE" in first_line:
        raise bad("this is an SSH signature, not a public key; register the .pub file")
    if b"SSH2 PUBLIC KEY" in first_line:
        raise bad("RFC 4716 keys are not read; convert with `ssh-keygen -i -f KEY` and register the result")
    if b"RSA PUBLIC KEY" in first_line:
        raise bad(f"the public key is an RSA key; {ONLY_ED25519_HINT}")
    try:
        loaded: Any = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm, TypeError) as exc:
        raise bad(f"cannot read the PEM public key: {exc}") from None
    if not isinstance(loaded, Ed25519PublicKey):
        raise bad(f"the public key is {_describe_crypto_key(loaded)}; {ONLY_ED25519_HINT}")
    return _info_from_raw(loaded.public_bytes_raw(), "")


def _info_from_raw(raw: bytes, comment: str) -> PublicKeyInfo:
    return PublicKeyInfo(raw=raw, fingerprint=fingerprint(raw), comment=comment)


def _describe_crypto_key(key: object) -> str:
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        return "an RSA key"
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        return "an ECDSA key"
    if isinstance(key, ed448.Ed448PublicKey | ed448.Ed448PrivateKey):
        return "an Ed448 key"
    return f"a {type(key).__name__.lstrip('_')}"


# --- manifests -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ManifestFile:
    name: str  # basename at signing time; informative only
    sha256: str  # 64 lowercase hex


@dataclass(frozen=True)
class SignedManifest:
    """A parsed manifest. Parsing proves it is well formed; `verify_manifest` proves who signed it."""

    artist: str
    created_at: datetime  # UTC
    nonce: str  # 32 lowercase hex; unique per manifest
    key_fingerprint: str  # the key the signer says they used
    files: tuple[ManifestFile, ...]
    signature: bytes  # 64 bytes
    payload: bytes  # canonical_json(payload): the exact bytes the signature covers

    def entries_for(self, sha256: str) -> tuple[ManifestFile, ...]:
        return tuple(entry for entry in self.files if entry.sha256 == sha256)


def canonical_json(value: object) -> bytes:
    """The canonical bytes of a payload (see the module docstring for the exact form)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sign_manifest(
    *,
    private_key_path_or_bytes: Path | str | bytes,
    artist: str,
    files: Sequence[tuple[str, bytes] | Path | str],
    now: datetime | None = None,
    password: bytes | None = None,
) -> bytes:
    """The content of a manifest file covering `files`, signed with the given private key.

    `files` holds (name, content) pairs or paths to read; only each name's basename is recorded.
    """
    if not files:
        raise ValueError("files must name at least one file to sign")
    if now is None:
        now = datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (e.g. datetime.now(UTC))")
    _check_text(artist, "artist", MAX_ARTIST_CHARS, error=ValueError)
    private_key = load_private_key(private_key_path_or_bytes, password=password)
    key_fingerprint = fingerprint(private_key.public_key().public_bytes_raw())

    entries = []
    for item in files:
        if isinstance(item, tuple):
            name, content = item
        else:
            name, content = str(item), Path(item).read_bytes()
        base = re.split(r"[/\\]", name)[-1]
        _check_text(base, "file name", MAX_NAME_CHARS, error=ValueError)
        entries.append({"name": base, "sha256": hashlib.sha256(content).hexdigest()})
    if len(entries) > MAX_MANIFEST_FILES:
        raise ValueError(
            f"files has {len(entries)} entries; one manifest covers at most {MAX_MANIFEST_FILES}"
        )

    payload = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "artist": artist,
        "created_at": now.astimezone(UTC).strftime(_TIME_FORMAT),
        "nonce": secrets.token_hex(16),
        "key_fingerprint": key_fingerprint,
        "files": entries,
    }
    signature = private_key.sign(canonical_json(payload))
    document = {
        "payload": payload,
        "signature": base64.b64encode(signature).decode("ascii"),
        "key_fingerprint": key_fingerprint,
    }
    return (json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def parse_manifest(data: bytes | str) -> SignedManifest:
    """Parse a manifest file strictly; any malformed input raises `SignatureError` (bad_signature)."""
    if isinstance(data, str):
        data = data.encode("utf-8", errors="replace")
    if len(data) > MAX_MANIFEST_BYTES:
        raise bad(f"the manifest is {len(data)} bytes; at most {MAX_MANIFEST_BYTES} are accepted")
    try:
        document = json.loads(
            data.removeprefix(b"\xef\xbb\xbf").decode("utf-8"),
            object_pairs_hook=_no_duplicate_keys,
            parse_float=_refuse_float,
            parse_constant=_refuse_float,
        )
    except UnicodeDecodeError:
        raise bad("the manifest is not UTF-8 text") from None
    except (ValueError, RecursionError) as exc:
        raise bad(f"the manifest is not valid JSON ({_short(exc)}); was it edited or cut short?") from None

    document = _expect_object(document, {"payload", "signature", "key_fingerprint"}, "the manifest")
    payload = _expect_object(document["payload"], _PAYLOAD_KEYS, "the manifest payload")
    if payload["format"] != MANIFEST_FORMAT:
        raise bad(f"the manifest's format is {show(str(payload['format']))}, not {MANIFEST_FORMAT!r}")
    version = payload["version"]
    if type(version) is not int or version != MANIFEST_VERSION:
        raise bad(f"the manifest has version {show(str(version))}; this app reads version {MANIFEST_VERSION}")
    artist = _check_text(payload["artist"], "artist", MAX_ARTIST_CHARS)
    created_at = _parse_time(payload["created_at"])
    nonce = _match(payload["nonce"], _NONCE_RE, "nonce", "32 lowercase hex digits")
    key_fingerprint = _match(payload["key_fingerprint"], _FINGERPRINT_RE, "key_fingerprint", "SHA256:…")
    if document["key_fingerprint"] != key_fingerprint:
        raise bad("the manifest's outer key_fingerprint differs from the signed one; the file was edited")
    files = _parse_files(payload["files"])
    signature = _parse_signature(document["signature"])
    try:
        canonical = canonical_json(payload)
    except (ValueError, UnicodeEncodeError):  # pragma: no cover - excluded by the checks above
        raise bad("the manifest payload cannot be put in canonical form") from None
    return SignedManifest(artist, created_at, nonce, key_fingerprint, files, signature, canonical)


K = TypeVar("K", bytes, PublicKeyInfo, RegisteredKey)


def verify_manifest(manifest: SignedManifest, *, public_keys: Sequence[K]) -> K:
    """The first of `public_keys` under which the manifest's signature verifies.

    Revocation is not considered here (see `check_signature`). Raises `SignatureError` when none does.
    """
    for key in public_keys:
        if _verifies(_raw(key), manifest.signature, manifest.payload):
            if fingerprint(_raw(key)) != manifest.key_fingerprint:
                raise bad(
                    f"the manifest names key {manifest.key_fingerprint} but was signed by "
                    f"{fingerprint(_raw(key))}; sign the batch again"
                )
            return key
    raise bad(
        f"the manifest's signature (key {manifest.key_fingerprint}) does not verify under any of the "
        f"{len(public_keys)} given key(s)"
    )


def _raw(key: bytes | PublicKeyInfo | RegisteredKey) -> bytes:
    if isinstance(key, PublicKeyInfo):
        return key.raw
    if isinstance(key, RegisteredKey):
        return key.public_key
    return key


def _verifies(raw: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(raw).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key[:40]!r}")
        result[key] = value
    return result


def _refuse_float(text: str) -> Any:
    raise ValueError(f"number {text[:20]!r} is not allowed (no floats, NaN or Infinity)")


def _short(exc: BaseException) -> str:
    return str(exc)[:120] or type(exc).__name__


def _expect_object(value: object, keys: frozenset[str] | set[str], what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise bad(f"{what} must be a JSON object")
    if set(value) != set(keys):
        missing, extra = sorted(set(keys) - set(value)), sorted(set(value) - set(keys))
        raise bad(
            f"{what} has the wrong fields (missing {missing[:8]}, unexpected {[k[:40] for k in extra[:8]]})"
        )
    return value


def _check_text(value: object, what: str, limit: int, *, error: type[Exception] = SignatureError) -> str:
    """A non-empty, bounded, printable, UTF-8-encodable string, or `error`."""
    problem = None
    if not isinstance(value, str):
        problem = "must be a string"
    elif not value or len(value) > limit:
        problem = f"must be 1 to {limit} characters long"
    elif any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        problem = "must not contain control characters"
    else:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            problem = "is not valid Unicode text"
    if problem is None:
        return value  # type: ignore[return-value]
    if error is SignatureError:
        raise bad(f"the manifest's {what} {problem}")
    raise error(f"{what} {problem}: {show(str(value))}")


def _match(value: object, pattern: re.Pattern[str], what: str, expected: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise bad(f"the manifest's {what} must be {expected}")
    return value


def _parse_time(value: object) -> datetime:
    if not isinstance(value, str) or not _TIME_RE.fullmatch(value):
        raise bad("the manifest's created_at must be a UTC time like 2025-01-02T03:04:05Z")
    try:
        return datetime.strptime(value, _TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise bad(f"the manifest's created_at {show(value)} is not a real date and time") from None


def _parse_files(value: object) -> tuple[ManifestFile, ...]:
    if not isinstance(value, list) or not value:
        raise bad("the manifest's files must be a non-empty list")
    if len(value) > MAX_MANIFEST_FILES:
        raise bad(f"the manifest lists {len(value)} files; at most {MAX_MANIFEST_FILES} are accepted")
    files = []
    for item in value:
        entry = _expect_object(item, _FILE_KEYS, "a manifest file entry")
        name = _check_text(entry["name"], "file name", MAX_NAME_CHARS)
        if "/" in name or "\\" in name:
            raise bad("a manifest file name contains a path separator; names are basenames")
        sha = _match(entry["sha256"], _SHA256_RE, "file sha256", "64 lowercase hex digits")
        files.append(ManifestFile(name, sha))
    return tuple(files)


def _parse_signature(value: object) -> bytes:
    if not isinstance(value, str) or len(value) > 200:
        raise bad("the manifest's signature must be a base64 string")
    try:
        signature = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise bad("the manifest's signature is not valid base64") from None
    if len(signature) != 64:
        raise bad(f"the manifest's signature is {len(signature)} bytes; an Ed25519 signature is 64")
    return signature


# --- the check the policy calls ------------------------------------------------------------------


@dataclass(frozen=True)
class SignatureCheck:
    """The outcome of checking one file's signature. `code` is None when ok."""

    ok: bool
    code: str | None  # None, "bad_signature" or "key_revoked"
    detail: str
    key_fingerprint: str | None  # the key that verified (or that was claimed, when none did)
    kind: Literal["manifest", "sshsig"] | None = None
    manifest_nonce: str | None = None  # for callers that refuse a manifest's reuse across uploads


def check_signature(
    *,
    file_bytes: bytes,
    file_name: str,
    artist: str,
    signature: bytes | None,
    registered_keys: Sequence[RegisteredKey],
) -> SignatureCheck | None:
    """Does `signature` prove that `artist` signed exactly `file_bytes`? None when no signature given.

    `registered_keys` are the artist's keys, revoked ones included (so that a revoked key is reported
    as `key_revoked` rather than as an unknown key). Never raises for malformed signatures.
    """
    if signature is None:
        return None
    if isinstance(signature, str):
        signature = signature.encode("utf-8", errors="replace")
    head = signature.removeprefix(b"\xef\xbb\xbf").lstrip()
    if head.startswith(b"{"):
        return _check_manifest(file_bytes, file_name, artist, signature, registered_keys)
    if looks_like_sshsig(signature):
        return _check_sshsig(file_bytes, artist, signature, registered_keys)
    what = "empty" if not head else "neither a MimicSafe manifest (JSON) nor an OpenSSH signature"
    return _refused(
        BAD_SIGNATURE,
        f"the signature given is {what}; give the manifest from `mimicsafe sign` or the .sig file from "
        f"`ssh-keygen -Y sign -n {UPLOAD_NAMESPACE}`",
        None,
        None,
    )


def _check_manifest(
    file_bytes: bytes, file_name: str, artist: str, data: bytes, keys: Sequence[RegisteredKey]
) -> SignatureCheck:
    try:
        manifest = parse_manifest(data)
    except SignatureError as exc:
        return _refused(exc.code, f"malformed manifest: {exc.detail}", None, "manifest")
    claimed, nonce = manifest.key_fingerprint, manifest.nonce

    def refuse(code: str, detail: str, fp: str | None = claimed) -> SignatureCheck:
        return SignatureCheck(False, code, detail, fp, "manifest", nonce)

    if manifest.artist != artist:
        return refuse(
            BAD_SIGNATURE, f"the manifest was signed for artist {show(manifest.artist)}, not {artist!r}"
        )
    if not keys:
        return refuse(BAD_SIGNATURE, _no_keys_detail(artist))
    verified = [key for key in keys if _verifies(key.public_key, manifest.signature, manifest.payload)]
    if not verified:
        if any(key.fingerprint == claimed for key in keys):
            return refuse(
                BAD_SIGNATURE,
                f"the manifest's signature does not verify under {artist}'s key {claimed}: the manifest was "
                "altered after signing (or the signature is damaged); sign the batch again",
            )
        return refuse(BAD_SIGNATURE, _unregistered_detail(claimed, artist, keys))
    key = next((k for k in verified if not k.revoked), verified[0])
    if key.fingerprint != claimed:
        return refuse(BAD_SIGNATURE, f"the manifest names key {claimed} but was signed by {key.fingerprint}")
    if key.revoked:
        return refuse(KEY_REVOKED, _revoked_detail(artist, key.fingerprint), key.fingerprint)

    sha = hashlib.sha256(file_bytes).hexdigest()
    entries = manifest.entries_for(sha)
    if not entries:
        return refuse(
            BAD_SIGNATURE,
            f"this file's SHA-256 {sha[:16]}… is not listed in the manifest (nonce {nonce}, "
            f"{len(manifest.files)} file(s)): the file was changed after signing, "
            "or it belongs to another batch",
            key.fingerprint,
        )
    names = [entry.name for entry in entries]
    renamed = "" if file_name in names else f" as {show(names[0])}"  # browsers rename files; that is fine
    return SignatureCheck(
        True,
        None,
        f"listed{renamed} in manifest {nonce} of {manifest.created_at:%Y-%m-%dT%H:%M:%SZ}, "
        f"signed by {artist}'s key {key.fingerprint}",
        key.fingerprint,
        "manifest",
        nonce,
    )


def _check_sshsig(
    file_bytes: bytes, artist: str, data: bytes, keys: Sequence[RegisteredKey]
) -> SignatureCheck:
    try:
        sig = parse_sshsig(data)
    except SignatureError as exc:
        return _refused(exc.code, f"malformed SSH signature: {exc.detail}", None, "sshsig")
    try:  # before the key: a signature made for another purpose is refused as such
        require_namespace(sig, UPLOAD_NAMESPACE)
    except SignatureError as exc:
        return _refused(exc.code, exc.detail, sig.fingerprint, "sshsig")
    if not keys:
        return _refused(BAD_SIGNATURE, _no_keys_detail(artist), sig.fingerprint, "sshsig")
    matching = [key for key in keys if key.public_key == sig.public_key]
    if not matching:
        return _refused(
            BAD_SIGNATURE, _unregistered_detail(sig.fingerprint, artist, keys), sig.fingerprint, "sshsig"
        )
    try:
        verify_sshsig(sig, file_bytes, namespace=UPLOAD_NAMESPACE)
    except SignatureError as exc:
        return _refused(exc.code, exc.detail, sig.fingerprint, "sshsig")
    if all(key.revoked for key in matching):
        return _refused(KEY_REVOKED, _revoked_detail(artist, sig.fingerprint), sig.fingerprint, "sshsig")
    return SignatureCheck(
        True, None, f"OpenSSH signature by {artist}'s key {sig.fingerprint}", sig.fingerprint, "sshsig", None
    )


def _refused(
    code: str, detail: str, fp: str | None, kind: Literal["manifest", "sshsig"] | None
) -> SignatureCheck:
    return SignatureCheck(False, code, detail, fp, kind, None)


def _no_keys_detail(artist: str) -> str:
    return f"{artist!r} has no registered signing key; register a public key with `mimicsafe keys register`"


def _unregistered_detail(fp: str, artist: str, keys: Sequence[RegisteredKey]) -> str:
    registered = ", ".join(key.fingerprint for key in keys[:5])
    return (
        f"signed by key {fp}, which is not registered to {artist!r} (registered: {registered}); "
        "sign with a registered key, or register this key's .pub file first"
    )


def _revoked_detail(artist: str, fp: str) -> str:
    return (
        f"signed by {artist}'s key {fp}, which has been revoked; "
        "sign again with a current key (register a new one if needed)"
    )
