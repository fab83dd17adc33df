"""OpenSSH signatures (SSHSIG) and the SSH wire format, for ssh-ed25519 keys only.

Why this exists: artists who already use SSH can sign an upload with the tool they have,
`ssh-keygen -Y sign -n mimicsafe-upload -f KEY FILE`, and the gate verifies the resulting `FILE.sig`
without any MimicSafe software on the artist's side.

Format (OpenSSH PROTOCOL.sshsig). The armored file is

    -----BEGIN SSH SIGNATURE-----
    <base64 of the blob, wrapped at 70 columns>
    -----END SSH SIGNATURE-----

and the blob is, in SSH wire encoding (uint32 big-endian; string = uint32 length + bytes):

    byte[6] "SSHSIG" | uint32 version (1) | string publickey | string namespace | string reserved
    | string hash_algorithm ("sha256" or "sha512") | string signature

The Ed25519 signature covers

    byte[6] "SSHSIG" | string namespace | string reserved | string hash_algorithm | string H(message)

so the key signs a hash of the file bound to a namespace; a signature made for another purpose
(`-n file`, `-n git`) never verifies as an upload signature.

Parsing is bounded and total: every length is checked against the bytes that remain, and any
malformed input raises `SignatureError` (code `bad_signature`), never another exception.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ownership.errors import SignatureError
from ownership.reasons import BAD_SIGNATURE

MAGIC = b"SSHSIG"
SIG_VERSION = 1
UPLOAD_NAMESPACE = "mimicsafe-upload"
ED25519 = "ssh-ed25519"
ARMOR_BEGIN = "-----BEGIN SSH SIGNATURE-----"
ARMOR_END = "-----END SSH SIGNATURE-----"
MAX_ARMORED_BYTES = 64 * 1024  # a real ed25519 SSHSIG is under 400 bytes
HASH_ALGORITHMS = {"sha256": hashlib.sha256, "sha512": hashlib.sha512}

# Friendly names for the key types people are likely to try, so a refusal says what to do.
_OTHER_KEY_TYPES = {
    "ssh-rsa": "an RSA key",
    "rsa-sha2-256": "an RSA key",
    "rsa-sha2-512": "an RSA key",
    "ssh-dss": "a DSA key",
    "ecdsa-sha2-nistp256": "an ECDSA key",
    "ecdsa-sha2-nistp384": "an ECDSA key",
    "ecdsa-sha2-nistp521": "an ECDSA key",
    "sk-ssh-ed25519@openssh.com": "a security-key (FIDO) ed25519 key",
    "sk-ecdsa-sha2-nistp256@openssh.com": "a security-key (FIDO) ECDSA key",
    "ssh-ed448": "an Ed448 key",
}
ONLY_ED25519_HINT = (
    "only ssh-ed25519 keys are accepted; create one with `mimicsafe keys generate` "
    "or `ssh-keygen -t ed25519`, register its .pub file, and sign with it"
)


def bad(detail: str) -> SignatureError:
    """A `bad_signature` error; a helper so every refusal in this module carries the same code."""
    return SignatureError(BAD_SIGNATURE, detail)


def show(value: bytes | str, limit: int = 60) -> str:
    """Quote untrusted text for a message: printable, bounded, unambiguous."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    text = repr(value[:limit])
    return text + ("…" if len(value) > limit else "")


def describe_key_type(key_type: bytes | str) -> str:
    """'an RSA key' for the types we know, else the quoted type name."""
    name = key_type.decode("ascii", errors="replace") if isinstance(key_type, bytes) else key_type
    return _OTHER_KEY_TYPES.get(name, f"a key of type {show(name)}")


# --- SSH wire format -----------------------------------------------------------------------------


class WireReader:
    """Reads SSH wire-format fields from a buffer; every overrun is a `SignatureError`."""

    def __init__(self, data: bytes, what: str) -> None:
        self._data = data
        self._pos = 0
        self._what = what

    def take(self, n: int) -> bytes:
        if n > len(self._data) - self._pos:
            raise bad(f"{self._what} is truncated (needs {n} more bytes, has {len(self._data) - self._pos})")
        chunk = self._data[self._pos : self._pos + n]
        self._pos += n
        return chunk

    def u32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def string(self) -> bytes:
        return self.take(self.u32())

    def end(self) -> None:
        if self._pos != len(self._data):
            raise bad(f"{self._what} has {len(self._data) - self._pos} unexpected trailing bytes")


def ssh_string(value: bytes) -> bytes:
    return struct.pack(">I", len(value)) + value


def ed25519_key_blob(raw: bytes) -> bytes:
    """The wire form of an ed25519 public key: string "ssh-ed25519" | string key(32)."""
    return ssh_string(ED25519.encode()) + ssh_string(raw)


def parse_ed25519_key_blob(blob: bytes) -> bytes:
    """The raw 32-byte key from a wire-form public key; other key types are refused by name."""
    reader = WireReader(blob, "the public key")
    key_type = reader.string()
    if key_type != ED25519.encode():
        raise bad(f"the key is {describe_key_type(key_type)}; {ONLY_ED25519_HINT}")
    raw = reader.string()
    reader.end()
    if len(raw) != 32:
        raise bad(f"the ssh-ed25519 key is {len(raw)} bytes long; an ed25519 key is 32 bytes")
    return raw


def fingerprint(raw: bytes) -> str:
    """`SHA256:<base64, no padding>` of the wire-form key: exactly what `ssh-keygen -lf` prints."""
    digest = hashlib.sha256(ed25519_key_blob(raw)).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


# --- SSHSIG --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SshSignature:
    """A parsed SSHSIG. Parsing proves only that it is well formed; `verify_sshsig` checks it."""

    public_key: bytes  # raw 32-byte ed25519 key that claims to have signed
    namespace: str
    reserved: bytes
    hash_algorithm: str  # "sha256" or "sha512"
    signature: bytes  # raw 64-byte ed25519 signature

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)


def looks_like_sshsig(data: bytes) -> bool:
    """True when the bytes start (after whitespace) with the SSH signature armor line."""
    return data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(ARMOR_BEGIN.encode())


def dearmor(data: bytes | str) -> bytes:
    """The binary blob inside `-----BEGIN SSH SIGNATURE-----` armor."""
    if isinstance(data, str):
        data = data.encode("utf-8", errors="replace")
    if len(data) > MAX_ARMORED_BYTES:
        raise bad(f"the SSH signature is {len(data)} bytes; a real one is under {MAX_ARMORED_BYTES} bytes")
    try:
        text = data.removeprefix(b"\xef\xbb\xbf").decode("ascii")
    except UnicodeDecodeError:
        raise bad("the SSH signature contains non-ASCII bytes; it should be the armored text") from None
    lines = [line.strip() for line in text.strip().splitlines()]
    if not lines or lines[0] != ARMOR_BEGIN:
        raise bad(f"the SSH signature does not start with {ARMOR_BEGIN}")
    if len(lines) < 2 or lines[-1] != ARMOR_END:
        raise bad(f"the SSH signature does not end with {ARMOR_END}; it may be truncated")
    body = "".join(lines[1:-1])
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise bad("the SSH signature's body is not valid base64; it was damaged in transit") from None


def armor(blob: bytes) -> bytes:
    """Armor a blob the way ssh-keygen does (base64 wrapped at 70 columns)."""
    body = base64.b64encode(blob).decode("ascii")
    lines = [body[i : i + 70] for i in range(0, len(body), 70)]
    return "\n".join([ARMOR_BEGIN, *lines, ARMOR_END]).encode("ascii") + b"\n"


def parse_sshsig(data: bytes | str) -> SshSignature:
    """Parse an armored SSHSIG. Any malformed input raises `SignatureError` (bad_signature)."""
    reader = WireReader(dearmor(data), "the SSH signature")
    if reader.take(len(MAGIC)) != MAGIC:
        raise bad("the SSH signature blob does not start with the SSHSIG magic")
    version = reader.u32()
    if version != SIG_VERSION:
        raise bad(f"the SSH signature has version {version}; only version {SIG_VERSION} is supported")
    key_blob = reader.string()
    namespace_bytes = reader.string()
    reserved = reader.string()
    hash_bytes = reader.string()
    sig_blob = reader.string()
    reader.end()

    public_key = parse_ed25519_key_blob(key_blob)
    try:
        namespace = namespace_bytes.decode("utf-8")
    except UnicodeDecodeError:
        raise bad("the SSH signature's namespace is not UTF-8 text") from None
    hash_algorithm = hash_bytes.decode("ascii", errors="replace")
    if hash_algorithm not in HASH_ALGORITHMS:
        raise bad(f"the SSH signature uses hash {show(hash_bytes)}; only sha256 and sha512 are supported")

    sig_reader = WireReader(sig_blob, "the signature inside the SSH signature")
    sig_type = sig_reader.string()
    if sig_type != ED25519.encode():
        raise bad(f"the signature was made with {describe_key_type(sig_type)}; {ONLY_ED25519_HINT}")
    signature = sig_reader.string()
    sig_reader.end()
    if len(signature) != 64:
        raise bad(f"the ed25519 signature is {len(signature)} bytes long; it must be 64")
    return SshSignature(public_key, namespace, reserved, hash_algorithm, signature)


def signed_data(*, namespace: str, reserved: bytes, hash_algorithm: str, message: bytes) -> bytes:
    """The exact bytes an SSHSIG signs (see the module docstring)."""
    digest = HASH_ALGORITHMS[hash_algorithm](message).digest()
    return (
        MAGIC
        + ssh_string(namespace.encode("utf-8"))
        + ssh_string(reserved)
        + ssh_string(hash_algorithm.encode("ascii"))
        + ssh_string(digest)
    )


def require_namespace(sig: SshSignature, namespace: str) -> None:
    """Refuse a signature made for another purpose (`-n file`, `-n git`, …)."""
    if sig.namespace != namespace:
        raise bad(
            f"the SSH signature was made for namespace {show(sig.namespace)}, not {namespace!r}; "
            f"sign with `ssh-keygen -Y sign -n {namespace} -f KEY FILE`"
        )


def verify_sshsig(sig: SshSignature, message: bytes, *, namespace: str = UPLOAD_NAMESPACE) -> None:
    """Raise `SignatureError` unless `sig` is a valid signature of exactly `message` in `namespace`.

    This checks the mathematics only; whether the key belongs to the artist is the caller's question.
    """
    require_namespace(sig, namespace)
    data = signed_data(
        namespace=sig.namespace, reserved=sig.reserved, hash_algorithm=sig.hash_algorithm, message=message
    )
    try:
        Ed25519PublicKey.from_public_bytes(sig.public_key).verify(sig.signature, data)
    except (InvalidSignature, ValueError):
        raise bad(
            f"the SSH signature by key {sig.fingerprint} does not verify for this file: "
            "the file was changed after it was signed, or the signature belongs to another file"
        ) from None


def sign_sshsig(
    private_key: Ed25519PrivateKey,
    message: bytes,
    *,
    namespace: str = UPLOAD_NAMESPACE,
    hash_algorithm: str = "sha512",
) -> bytes:
    """Make an armored SSHSIG, byte-compatible with `ssh-keygen -Y sign` (for tests and tools)."""
    if hash_algorithm not in HASH_ALGORITHMS:
        raise ValueError(f"hash_algorithm must be one of {sorted(HASH_ALGORITHMS)}, not {hash_algorithm!r}")
    raw = private_key.public_key().public_bytes_raw()
    data = signed_data(namespace=namespace, reserved=b"", hash_algorithm=hash_algorithm, message=message)
    sig_blob = ssh_string(ED25519.encode()) + ssh_string(private_key.sign(data))
    blob = (
        MAGIC
        + struct.pack(">I", SIG_VERSION)
        + ssh_string(ed25519_key_blob(raw))
        + ssh_string(namespace.encode("utf-8"))
        + ssh_string(b"")
        + ssh_string(hash_algorithm.encode("ascii"))
        + ssh_string(sig_blob)
    )
    return armor(blob)
