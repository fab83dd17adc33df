"""Fingerprints of an image for the near-duplicate gate: PDQ (whole image) plus local features.

Why two: PDQ is tiny, fast to index and catches re-encoded, resized, recoloured, blurred and
flipped copies; it misses crops, small rotations, borders and screenshots. The local features
(`ownership.local_features`) catch those. Both are computed from one downscaled working copy
(512 pixels; PDQ from a 384-pixel copy of it), so a fingerprint costs a fraction of decoding a
large image, and registration and query always agree. (An inset found inside the image, e.g. the
picture in a screenshot, is cut from the full-resolution pixels.)

A fingerprint is stored by the database as bytes (`Fingerprint.to_bytes`); the index is rebuilt
from those bytes at start.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import cv2
import numpy as np
import pdqhash

from ownership.local_features import WORK_SIDE, LocalFeatures, compute_local_features, resize_long_side
from ownership.types import DecodedImage

# PDQ is computed on a copy this size: half the time of the 512-pixel working copy, and closer to
# PDQ of the full image (7 bits apart on average, 14 at most, on synthetic art; 11 and 20 at 512),
# which matters when an opt-out list of standard PDQ hashes is imported.
PDQ_SIDE = 384
# PDQ's own guidance: hashes of quality below 50 are unreliable (too little gradient in the image).
MIN_PDQ_QUALITY = 50
# Fewer ORB keypoints than this and the robust matcher has nothing to stand on.
MIN_KEYPOINTS = 40
# Grey-level standard deviation of the working copy below which an image is treated as flat.
MIN_GRAY_STD = 4.0

_FORMAT_VERSION = 1


def _pack_bits(bits: np.ndarray) -> bytes:
    """256 bits from pdqhash (one int per bit) → 32 bytes, first bit in the high bit of byte 0."""
    return np.packbits(np.asarray(bits, np.uint8)).tobytes()


def pdq_hex(hash_bytes: bytes) -> str:
    return hash_bytes.hex()


@dataclass(frozen=True)
class Fingerprint:
    """Everything the gate needs to recognise an image again. Immutable; serialisable as bytes."""

    pdq: bytes  # 32 bytes, PDQ of the image
    pdq_quality: int  # 0..100 from pdqhash
    pdq_dihedral: tuple[bytes, ...]  # PDQ of the 8 rotations/flips; [0] is the image itself
    robust: LocalFeatures  # ORB keypoints of the image, its mirror and an inset, plus small grey copies
    low_detail: bool  # too little detail to fingerprint reliably

    def robust_to_bytes(self) -> bytes:
        return self.robust.to_bytes()

    @staticmethod
    def robust_from_bytes(data: bytes) -> LocalFeatures:
        return LocalFeatures.from_bytes(data)

    def to_bytes(self) -> bytes:
        """One blob: header, PDQ, the 8 dihedral hashes, then the local features."""
        robust = self.robust.to_bytes()
        head = struct.pack("<4sHBB", b"MSFP", _FORMAT_VERSION, self.pdq_quality, int(self.low_detail))
        return head + self.pdq + b"".join(self.pdq_dihedral) + robust

    @classmethod
    def from_bytes(cls, data: bytes) -> Fingerprint:
        head = struct.calcsize("<4sHBB")
        if len(data) < head + 9 * 32:
            raise ValueError("fingerprint blob is truncated; recompute it from the image")
        magic, version, quality, low = struct.unpack_from("<4sHBB", data, 0)
        if magic != b"MSFP" or version != _FORMAT_VERSION:
            raise ValueError(f"not a version-{_FORMAT_VERSION} fingerprint blob (magic {magic!r}, version "
                             f"{version}); recompute it from the image")
        pdq = data[head:head + 32]
        dihedral = tuple(data[head + 32 * (i + 1): head + 32 * (i + 2)] for i in range(8))
        robust = LocalFeatures.from_bytes(data[head + 9 * 32:])
        return cls(pdq=pdq, pdq_quality=quality, pdq_dihedral=dihedral, robust=robust, low_detail=bool(low))


def working_copy(rgb: np.ndarray) -> np.ndarray:
    """The downscaled RGB copy every fingerprint is computed from (longer side <= WORK_SIDE)."""
    return np.ascontiguousarray(resize_long_side(rgb, WORK_SIDE))


def compute_fingerprint(image: DecodedImage, *, min_pdq_quality: int = MIN_PDQ_QUALITY) -> Fingerprint:
    """Fingerprint a decoded image. Deterministic: the same pixels give the same bytes.

    `low_detail` is set when the PDQ quality is below `min_pdq_quality` (the `pdq_min_quality`
    setting), when there are too few keypoints for the robust matcher, or when the image is flat.
    """
    work = working_copy(image.rgb)
    hashes, quality = pdqhash.compute_dihedral(np.ascontiguousarray(resize_long_side(work, PDQ_SIDE)))
    dihedral = tuple(_pack_bits(h) for h in hashes)
    gray = cv2.cvtColor(work, cv2.COLOR_RGB2GRAY)
    robust = compute_local_features(gray, full=image.rgb)
    low = quality < min_pdq_quality or len(robust.view) < MIN_KEYPOINTS or float(gray.std()) < MIN_GRAY_STD
    return Fingerprint(pdq=dihedral[0], pdq_quality=int(quality), pdq_dihedral=dihedral, robust=robust,
                       low_detail=bool(low))
