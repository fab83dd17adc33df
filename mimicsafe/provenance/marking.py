"""All the marks a generated image carries, applied in the one order that keeps each of them valid.

1. The invisible watermark changes pixels, so it goes first. It is read back from the marked pixels at
   once: on an image busy everywhere at the watermark's scale (the built-in demo model's placeholder
   noise is the worst case) it may not be readable, and the record says so instead of pretending.
2. The fingerprint (PDQ + local features) is computed from the final pixels, so it matches the file
   that leaves the app, not an earlier state of it.
3. The pixels are encoded as PNG with the XMP packet and text chunks (lossless: the fingerprinted
   pixels are exactly the file's pixels).
4. The C2PA manifest is signed over those PNG bytes last: its hard binding covers everything above,
   the metadata included. Any later change to the file breaks the manifest, not the watermark.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import numpy as np

from mimicsafe.imaging import fingerprint_of
from mimicsafe.provenance.content_credentials import LoraIngredient, sign_png
from mimicsafe.provenance.credentials import InstanceCredentials
from mimicsafe.provenance.metadata import GenerationFacts, png_with_metadata
from mimicsafe.provenance.watermark import WatermarkConfig, detect, embed
from mimicsafe.settings import Settings
from ownership.fingerprint import Fingerprint
from ownership.types import DecodedImage


@dataclass(frozen=True)
class MarkedImage:
    png: bytes
    """The file to store and deliver: watermarked pixels, XMP and text, signed C2PA manifest."""
    sha256: str
    fingerprint: Fingerprint
    rgb: np.ndarray
    """The watermarked pixels (what the PNG decodes to)."""
    watermark_reads_back: bool
    """Whether the detector finds the payload in the marked pixels (before any edit)."""
    timings_ms: dict[str, float]


def payload_bytes(generation_id: str) -> bytes:
    """The 8-byte watermark payload of a generation id (16 hex digits)."""
    data = bytes.fromhex(generation_id)
    if len(data) != 8:
        raise ValueError(f"generation_id must be 16 hex digits, got {generation_id!r}")
    return data


def mark_image(rgb: np.ndarray, *, facts: GenerationFacts, lora: LoraIngredient,
               credentials: InstanceCredentials, settings: Settings,
               watermark: WatermarkConfig = WatermarkConfig()) -> MarkedImage:
    """Watermark, fingerprint, encode with metadata and sign one output, in that order. `settings` gives
    the PDQ quality setting, so the fingerprint is the one the gate computes for the same pixels."""
    payload = payload_bytes(facts.generation_id)
    timings: dict[str, float] = {}

    start = time.perf_counter()
    marked = embed(rgb, payload, config=watermark)
    timings["watermark"] = 1000 * (time.perf_counter() - start)
    start = time.perf_counter()
    reads_back = detect(marked, config=watermark).payload == payload
    timings["watermark_check"] = 1000 * (time.perf_counter() - start)

    start = time.perf_counter()
    fingerprint = fingerprint_of(DecodedImage(rgb=np.ascontiguousarray(marked), format="PNG"), settings)
    timings["fingerprint"] = 1000 * (time.perf_counter() - start)

    start = time.perf_counter()
    png = png_with_metadata(marked, facts)
    timings["encode"] = 1000 * (time.perf_counter() - start)

    start = time.perf_counter()
    signed = sign_png(png, facts=facts, lora=lora, watermark_payload=payload, credentials=credentials)
    timings["c2pa"] = 1000 * (time.perf_counter() - start)

    return MarkedImage(png=signed, sha256=hashlib.sha256(signed).hexdigest(), fingerprint=fingerprint, rgb=marked,
                       watermark_reads_back=reads_back, timings_ms=timings)
