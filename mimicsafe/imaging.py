"""The one place where the product turns uploaded bytes into a gate fingerprint."""

from __future__ import annotations

from dataclasses import dataclass

from mimicsafe.errors import ValidationFailed
from mimicsafe.settings import Settings
from ownership.decode import decode_image
from ownership.errors import DecodeError
from ownership.fingerprint import Fingerprint, compute_fingerprint
from ownership.types import DecodedImage, DecodeLimits


def decode_limits(settings: Settings) -> DecodeLimits:
    return DecodeLimits(max_bytes=settings.max_upload_bytes, max_pixels=settings.max_upload_pixels)


@dataclass(frozen=True)
class NamedFile:
    """A file as a person sent it: the name is only for display; nothing reads the filesystem by it."""

    name: str
    data: bytes


def display_name(name: str, limit: int = 255) -> str:
    """A file name as a label to store and show: at most `limit` characters, control characters (NUL,
    newlines…) replaced by U+FFFD — PostgreSQL refuses NUL in text, and a log or a page should not
    be steered by a name a browser sent."""
    return "".join(ch if ch.isprintable() else "\ufffd" for ch in name[:limit])


def fingerprint_or_refuse(file: NamedFile, settings: Settings) -> Fingerprint:
    """Fingerprint a file for a registry (portfolio, opt-out); bad files get a clear refusal."""
    try:
        image = decode_image(file.data, decode_limits(settings))
    except DecodeError as exc:
        raise ValidationFailed(f"{file.name}: {exc.code}: {exc.detail}") from None
    return fingerprint_of(image, settings)


def fingerprint_of(image: DecodedImage, settings: Settings) -> Fingerprint:
    """An image's fingerprint with the instance's PDQ quality setting: every site (the gate, training's
    re-check, marking and verifying outputs) must use this, or one setting gives two fingerprints."""
    return compute_fingerprint(image, min_pdq_quality=settings.pdq_min_quality)
