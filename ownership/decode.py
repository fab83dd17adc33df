"""Safe image decoding: the only door through which uploaded bytes become pixels.

Everything an uploader sends is hostile until proven otherwise. This module decides the format from the
bytes (never from a file name), reads the dimensions from the header and refuses oversized images
*before* any pixel buffer is allocated, and turns every failure into a `DecodeError` with a stable
reason code (`unsupported_format`, `too_large`, `undecodable`). Whatever it accepts comes out as
8-bit RGB with EXIF orientation applied, and every deliberate conversion is written into
`DecodedImage.notes` so a reviewer can see what the gate looked at. See docs/decoding.md.

Global Pillow state is read but never changed: `Image.MAX_IMAGE_PIXELS` keeps Pillow's default as a
second safety net behind `DecodeLimits.max_pixels`, and `ImageFile.LOAD_TRUNCATED_IMAGES` must be
False (we refuse to decode if some other code in the process turned it on).
"""

from __future__ import annotations

import io
import re
import struct
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageCms, ImageFile, ImageOps

from ownership import reasons
from ownership.errors import DecodeError
from ownership.types import DecodedImage, DecodeLimits

ImageFormat = Literal["PNG", "JPEG", "WEBP"]

# A progressive JPEG costs one pass over every coefficient per scan; a file with thousands of tiny
# scans is a CPU bomb. Real encoders emit about 10 (mozjpeg: up to ~20); libjpeg-turbo's tools
# suggest 500 as a hard ceiling. 100 leaves room for exotic encoders and stops the bombs.
MAX_JPEG_SCANS = 100
# Pillow walks PNG chunks and JPEG segments in Python, ~3 µs each: 50 MB of empty chunks would take
# ~15 s. Real files have tens to a few thousand (an encoder splitting IDAT into 8 KB pieces).
MAX_CHUNKS = 100_000

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_MAGICS: tuple[tuple[bytes, ImageFormat], ...] = ((_PNG_MAGIC, "PNG"), (_JPEG_MAGIC, "JPEG"))

# Formats we recognise only to name them in the refusal, so the uploader knows what to do.
_KNOWN_OTHERS: tuple[tuple[bytes, str], ...] = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"%PDF", "PDF"),
    (b"PK\x03\x04", "ZIP archive"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"8BPS", "Photoshop PSD"),
    (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL ", "JPEG XL"),
)
_TEXT_KINDS = ((b"<svg", "SVG"), (b"<?xml", "XML/SVG"), (b"<!doctype html", "HTML"), (b"<html", "HTML"))

# Entropy-coded JPEG data ends at the first 0xFF that is not byte stuffing (FF00), a restart
# marker (FFD0-FFD7) or a fill byte (FFFF).
_JPEG_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}

_ORIENTATION_TAG = 0x0112
_WHITE = (255, 255, 255)


@dataclass(frozen=True)
class _Header:
    """What the container says before any pixel is decoded."""

    width: int
    height: int
    problem: str | None = None  # a structural defect (truncation…), reported after the size check
    trailing_bytes: int = 0  # bytes after the format's end marker (appended data, polyglots)
    bit_depth: int = 8
    jpeg_scans: int = 0
    chunks: int = 0  # PNG chunks or JPEG marker segments; counting stops just past MAX_CHUNKS


def sniff_format(data: bytes) -> ImageFormat | None:
    """Return "PNG", "JPEG" or "WEBP" when the bytes start with that format's signature, else None."""
    for magic, name in _MAGICS:
        if data.startswith(magic):
            return name
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def decode_image(data: bytes, limits: DecodeLimits) -> DecodedImage:
    """Decode untrusted bytes to 8-bit RGB, or raise `DecodeError` — and nothing else.

    Order of checks: byte size, format by signature, pixel count from the header, structure
    (truncation), chunk and scan counts, then the real decode, orientation and colour conversion.
    """
    if len(data) > limits.max_bytes:
        raise DecodeError(
            reasons.TOO_LARGE,
            f"the file is {len(data):,} bytes; the limit is {limits.max_bytes:,} bytes. "
            "Upload a smaller export of the image.",
        )
    fmt = _require_supported(data)
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise DecodeError(
            reasons.UNDECODABLE,
            "Pillow's ImageFile.LOAD_TRUNCATED_IMAGES is enabled in this process, so truncated files "
            "would decode silently; the gate refuses to decode until the code that sets it is removed.",
        )
    header = _read_header(fmt, data)
    _check_pixels(header.width, header.height, limits)
    if header.problem is not None:
        raise DecodeError(reasons.UNDECODABLE, f"{fmt} file is damaged: {header.problem}")
    if header.chunks > MAX_CHUNKS:
        raise DecodeError(
            reasons.TOO_LARGE,
            f"the {fmt} file has more than {MAX_CHUNKS:,} chunks or segments; no real image needs that many. "
            "Re-export it.",
        )
    if header.jpeg_scans > MAX_JPEG_SCANS:
        raise DecodeError(
            reasons.TOO_LARGE,
            f"the JPEG has {header.jpeg_scans} progressive scans; at most {MAX_JPEG_SCANS} are decoded. "
            "Re-export it as a baseline or standard progressive JPEG.",
        )

    notes: list[str] = []
    image = _open_and_load(fmt, data, limits, notes)
    image = _apply_orientation(image, notes)
    image = _to_rgb(image, header, notes)
    if header.trailing_bytes:
        notes.append(f"{header.trailing_bytes} bytes after the end of the {fmt} data were ignored")
    return DecodedImage(rgb=_to_array(image), format=fmt, notes=tuple(notes))


# --- format and size -------------------------------------------------------------------------


def _require_supported(data: bytes) -> ImageFormat:
    fmt = sniff_format(data)
    if fmt is not None:
        return fmt
    if not data:
        raise DecodeError(reasons.UNDECODABLE, "the file is empty (0 bytes); upload it again")
    if any(magic.startswith(data) for magic, _ in _MAGICS) or (data[:4] == b"RIFF"[: len(data)] and len(data) < 12):
        raise DecodeError(reasons.UNDECODABLE, f"the file is only {len(data)} bytes, a truncated image header")
    raise DecodeError(
        reasons.UNSUPPORTED_FORMAT,
        f"the content is {_describe_other(data)}; only PNG, JPEG and WebP images are accepted "
        "(the file name does not matter). Export the artwork as PNG, JPEG or WebP.",
    )


def _describe_other(data: bytes) -> str:
    for magic, name in _KNOWN_OTHERS:
        if data.startswith(magic):
            return f"a {name} file"
    if data[:4] == b"RIFF":
        return f"a RIFF '{data[8:12].decode('latin-1', 'replace')}' file (not WebP)"
    head = data[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    for marker, name in _TEXT_KINDS:
        if head.startswith(marker) or (name == "SVG" and b"<svg" in head):
            return f"{name} text"
    if _looks_like_text(data[:512]):
        return "plain text"
    return "not a recognised image format"


def _looks_like_text(sample: bytes) -> bool:
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(b >= 0x20 or b in b"\t\r\n" for b in sample)


def _check_pixels(width: int, height: int, limits: DecodeLimits) -> None:
    if width * height > limits.max_pixels:
        raise DecodeError(
            reasons.TOO_LARGE,
            f"the image declares {width:,}×{height:,} = {width * height:,} pixels; the limit is "
            f"{limits.max_pixels:,}. Upload a downscaled export.",
        )


# --- headers, read without decoding ------------------------------------------------------------


def _read_header(fmt: ImageFormat, data: bytes) -> _Header:
    if fmt == "PNG":
        return _png_header(data)
    if fmt == "JPEG":
        return _jpeg_header(data)
    return _webp_header(data)


def _png_header(data: bytes) -> _Header:
    """Walk the PNG chunk list: IHDR dimensions, IEND present, bytes after IEND."""
    n = len(data)
    pos = len(_PNG_MAGIC)
    if n < pos + 8 + 13 or data[pos + 4 : pos + 8] != b"IHDR":
        return _Header(0, 0, problem="the IHDR header chunk is missing or cut off")
    width, height, bit_depth = struct.unpack_from(">IIB", data, pos + 8)
    if width == 0 or height == 0:
        return _Header(width, height, problem=f"IHDR declares an empty {width}×{height} image")
    chunks = 0
    while pos + 8 <= n:
        chunks += 1
        if chunks > MAX_CHUNKS:
            return _Header(width, height, bit_depth=bit_depth, chunks=chunks)
        length, ctype = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        if end > n:
            problem = f"chunk {ctype!r} at byte {pos} needs {length} bytes but the file ends first"
            return _Header(width, height, problem=problem, bit_depth=bit_depth)
        if ctype == b"IEND":
            return _Header(width, height, trailing_bytes=n - end, bit_depth=bit_depth)
        pos = end
    return _Header(width, height, problem="the file ends before the IEND chunk (truncated)", bit_depth=bit_depth)


def _jpeg_header(data: bytes) -> _Header:
    """Walk JPEG markers up to EOI: frame dimensions and the number of scans."""
    n = len(data)
    pos = 2
    width = height = scans = segments = 0
    while pos < n:
        segments += 1
        if segments > MAX_CHUNKS:
            return _Header(width, height, jpeg_scans=scans, chunks=segments)
        if data[pos] != 0xFF:  # stray bytes between segments: libjpeg skips them with a warning
            found = _JPEG_NEXT_MARKER.search(data, pos)
            if found is None:
                break
            pos = found.start()
        while pos + 1 < n and data[pos + 1] == 0xFF:  # fill bytes
            pos += 1
        if pos + 1 >= n:
            break
        marker = data[pos + 1]
        if marker == 0xD9:  # EOI
            return _Header(width, height, trailing_bytes=n - pos - 2, jpeg_scans=scans)
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # parameterless markers
            pos += 2
            continue
        if pos + 4 > n:
            break
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if length < 2 or pos + 2 + length > n:
            break
        if marker in _JPEG_SOF_MARKERS and length >= 7 and width == 0:
            height, width = struct.unpack_from(">HH", data, pos + 5)
        pos += 2 + length
        if marker == 0xDA:  # SOS: skip the entropy-coded data to the next real marker
            scans += 1
            found = _JPEG_NEXT_MARKER.search(data, pos)
            if found is None:
                break
            pos = found.start()
    if width == 0 or height == 0:
        return _Header(width, height, problem="no usable frame header (SOF) before the data ends", jpeg_scans=scans)
    # Missing EOI: libjpeg tolerates a few missing bytes at the very end, Pillow decides.
    return _Header(width, height, jpeg_scans=scans)


def _webp_header(data: bytes) -> _Header:
    """Canvas size from the first WebP chunk, so that no decoder allocates a canvas we would refuse."""
    (riff_size,) = struct.unpack_from("<I", data, 4)
    declared_end = 8 + riff_size
    problem = None
    if declared_end > len(data):
        problem = f"the RIFF header declares {declared_end} bytes but the file has {len(data)} (truncated)"
    trailing = max(0, len(data) - declared_end)
    if len(data) < 30:
        return _Header(0, 0, problem="the first WebP chunk is cut off")
    fourcc = data[12:16]
    body = 20
    if fourcc == b"VP8X":
        width = 1 + int.from_bytes(data[body + 4 : body + 7], "little")
        height = 1 + int.from_bytes(data[body + 7 : body + 10], "little")
    elif fourcc == b"VP8L":
        if data[body] != 0x2F:
            return _Header(0, 0, problem="bad VP8L signature")
        bits = int.from_bytes(data[body + 1 : body + 5], "little")
        width, height = 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    elif fourcc == b"VP8 ":
        if data[body + 3 : body + 6] != b"\x9d\x01\x2a":
            return _Header(0, 0, problem="bad VP8 start code")
        w, h = struct.unpack_from("<HH", data, body + 6)
        width, height = w & 0x3FFF, h & 0x3FFF
    else:
        return _Header(0, 0, problem=f"unknown first chunk {fourcc!r}")
    return _Header(width, height, problem=problem, trailing_bytes=trailing)


# --- decoding --------------------------------------------------------------------------------


def _open_and_load(fmt: ImageFormat, data: bytes, limits: DecodeLimits, notes: list[str]) -> Image.Image:
    """Open with only the sniffed plugin, re-check the size Pillow reads, pick frame 0, decode.

    The broad `except Exception` is the contract of this module: Pillow and its C decoders raise
    OSError, SyntaxError, ValueError, struct.error, EOFError, zlib.error… on hostile input, and every
    one of them means "undecodable". BaseException (KeyboardInterrupt, SystemExit) passes through.
    """
    try:
        image = Image.open(io.BytesIO(data), formats=[fmt])
        _check_pixels(image.width, image.height, limits)
        frames = int(getattr(image, "n_frames", 1))
        if frames > 1:
            image.seek(0)
            notes.append(f"animated or multi-frame image: only the first of {frames} frames is used")
        image.load()
        return image
    except DecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning, MemoryError) as exc:
        raise DecodeError(reasons.TOO_LARGE, f"refused as a decompression bomb: {_short(exc)}") from exc
    except Exception as exc:
        raise DecodeError(reasons.UNDECODABLE, f"{fmt} data could not be decoded: {_short(exc)}") from exc


def _apply_orientation(image: Image.Image, notes: list[str]) -> Image.Image:
    """Apply the EXIF (or XMP) orientation, so that a rotated copy fingerprints like the original."""
    try:
        orientation = image.getexif().get(_ORIENTATION_TAG, 1)
    except Exception as exc:
        notes.append(f"EXIF metadata unreadable ({_short(exc)}); orientation not applied")
        return image
    if orientation in (None, 1):
        return image
    if orientation not in range(2, 9):
        notes.append(f"EXIF orientation {orientation!r} is invalid and was ignored")
        return image
    try:
        rotated = ImageOps.exif_transpose(image)
    except Exception as exc:
        notes.append(f"EXIF orientation {orientation} could not be applied ({_short(exc)})")
        return image
    notes.append(f"EXIF orientation {orientation} applied")
    return rotated


def _to_rgb(image: Image.Image, header: _Header, notes: list[str]) -> Image.Image:
    """Convert any mode the three formats produce to 8-bit RGB, one deliberate step at a time."""
    try:
        return _convert(image, header, notes)
    except DecodeError:
        raise
    except MemoryError as exc:
        raise DecodeError(reasons.TOO_LARGE, f"out of memory while converting: {_short(exc)}") from exc
    except Exception as exc:
        raise DecodeError(
            reasons.UNDECODABLE, f"pixel mode {image.mode} could not be converted: {_short(exc)}"
        ) from exc


def _convert(image: Image.Image, header: _Header, notes: list[str]) -> Image.Image:
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        image = _sixteen_to_eight(image)
        notes.append("16-bit samples scaled to 8-bit")
        mode = image.mode
    elif header.bit_depth == 16:
        notes.append("16-bit samples reduced to 8-bit (high byte kept)")
    if mode == "CMYK":
        return _cmyk_to_rgb(image, notes)
    if mode in ("P", "PA"):
        image = image.convert("RGBA" if mode == "PA" or "transparency" in image.info else "RGB")
        notes.append("palette expanded to RGB")
    elif mode in ("1", "L", "LA", "La"):
        target = "RGBA" if mode in ("LA", "La") or "transparency" in image.info else "RGB"
        image = image.convert("L").convert(target) if mode == "1" else image.convert(target)
        notes.append("greyscale expanded to RGB")
    elif mode == "RGB" and "transparency" in image.info:
        image = image.convert("RGBA")  # a tRNS colour key is transparency too
    elif mode not in ("RGB", "RGBA", "RGBa"):
        image = image.convert("RGB")
        notes.append(f"pixel mode {mode} converted to RGB")
    if image.mode in ("RGBA", "RGBa"):
        return _composite_over_white(image.convert("RGBA"), notes)
    return image


def _to_array(image: Image.Image) -> np.ndarray:
    """(H, W, 3) uint8, C-contiguous and read-only: the decoded pixels are evidence; copy to modify."""
    try:
        rgb = np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
    except MemoryError as exc:
        raise DecodeError(reasons.TOO_LARGE, f"out of memory while copying pixels: {_short(exc)}") from exc
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise DecodeError(reasons.UNDECODABLE, f"decoding produced an unexpected pixel layout {rgb.shape}")
    rgb.flags.writeable = False
    return rgb


def _sixteen_to_eight(image: Image.Image) -> Image.Image:
    """Scale 0..65535 to 0..255 with rounding (Pillow's own convert would clip, not scale)."""
    samples = np.asarray(image).astype(np.uint32)
    np.clip(samples, 0, 65535, out=samples)
    scaled = ((samples * 255 + 32767) // 65535).astype(np.uint8)
    return Image.fromarray(scaled, mode="L")


def _cmyk_to_rgb(image: Image.Image, notes: list[str]) -> Image.Image:
    """Use the embedded ICC profile when it works; otherwise Pillow's naive formula, and say which."""
    icc = image.info.get("icc_profile")
    if icc:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            converted = ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except Exception as exc:
            notes.append(f"CMYK converted to RGB naively: the embedded ICC profile is unusable ({_short(exc)})")
        else:
            if converted is not None:
                notes.append("CMYK converted to RGB through the embedded ICC profile")
                return converted
    else:
        notes.append("CMYK converted to RGB naively (no ICC profile)")
    return image.convert("RGB")


def _composite_over_white(image: Image.Image, notes: list[str]) -> Image.Image:
    """Flatten alpha onto white: transparent areas are the artist's blank canvas, not black.

    A transparent background stored as (0,0,0,0) would otherwise fingerprint as a black image and
    match every other transparent-background sticker; white is what the artist sees on a page.
    """
    alpha = image.getchannel("A")
    low, _high = alpha.getextrema()
    if low == 255:
        notes.append("fully opaque alpha channel dropped")
        return image.convert("RGB")
    canvas = Image.new("RGB", image.size, _WHITE)
    canvas.paste(image, mask=alpha)  # RGBA onto RGB: Pillow uses the colour bands, no extra copy
    notes.append("alpha composited over white")
    return canvas


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 200 else text[:197] + "..."
