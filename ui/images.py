"""Stored images turned into small previews for the page (always decoded by the gate's safe decoder)."""

from __future__ import annotations

from PIL import Image

from mimicsafe.blobs import BlobStore
from mimicsafe.errors import MimicSafeError
from mimicsafe.imaging import decode_limits
from mimicsafe.settings import Settings
from ownership.decode import decode_image
from ownership.errors import DecodeError

THUMBNAIL_PIXELS = 384


def thumbnail(data: bytes, settings: Settings, size: int = THUMBNAIL_PIXELS) -> Image.Image | None:
    """A preview at most `size` pixels on its longer side, or None if the bytes are not an image."""
    try:
        decoded = decode_image(data, decode_limits(settings))
    except DecodeError:
        return None
    image = Image.fromarray(decoded.rgb)
    image.thumbnail((size, size))
    return image


def stored_thumbnail(blobs: BlobStore, sha256: str, settings: Settings,
                     size: int = THUMBNAIL_PIXELS) -> Image.Image | None:
    """The preview of a stored blob, or None when it was deleted (e.g. consent withdrawn) or is not an image."""
    try:
        return thumbnail(blobs.get(sha256), settings, size)
    except MimicSafeError:
        return None
