"""Marking one image: watermark, fingerprint, XMP/PNG text and a C2PA manifest that validates only
against this instance's trust anchor — and breaks if anything in the file changes."""

from __future__ import annotations

import io
import struct
import zlib
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mimicsafe.errors import MimicSafeError
from mimicsafe.imaging import fingerprint_of
from mimicsafe.provenance.content_credentials import (
    GENERATION_ASSERTION,
    SOFT_BINDING_ALG,
    ContentCredentialsError,
    LoraIngredient,
    read_manifest,
)
from mimicsafe.provenance.credentials import ensure_credentials
from mimicsafe.provenance.marking import mark_image
from mimicsafe.provenance.metadata import TRAINED_ALGORITHMIC_MEDIA, GenerationFacts
from mimicsafe.provenance.watermark import detect
from mimicsafe.settings import Settings
from ownership.decode import decode_image
from ownership.fingerprint import MIN_PDQ_QUALITY, compute_fingerprint
from ownership.signals import read_signals
from ownership.types import DecodeLimits
from tests.gate_helpers import artwork

FACTS = GenerationFacts(generation_id="0123456789abcdef", artist="alice", model_id=3, model_name="alice-style",
                        lora_sha256="ab" * 32, base_model="mimicsafe-tiny-seed0", prompt='a fox <knight> & "friends"',
                        seed=42, kind="sheet:turnaround", created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
                        software="MimicSafe 0.1.0")
LORA = LoraIngredient(name="alice-style", sha256="ab" * 32, model_id=3, artist="alice")


@pytest.fixture(scope="module")
def marked(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    home = tmp_path_factory.mktemp("marking")
    image = artwork(1, 1)
    return home, image, mark_image(image, facts=FACTS, lora=LORA, credentials=ensure_credentials(home),
                                   settings=Settings(home=home))


def test_marks_in_order_all_present(marked) -> None:  # type: ignore[no-untyped-def]
    home, original, result = marked
    decoded = decode_image(result.png, DecodeLimits()).rgb
    assert np.array_equal(decoded, result.rgb)  # the PNG holds exactly the marked pixels
    assert not np.array_equal(decoded, original)  # … which carry the watermark
    assert result.watermark_reads_back and detect(decoded).payload == bytes.fromhex(FACTS.generation_id)
    again = compute_fingerprint(decode_image(result.png, DecodeLimits()))  # the gate's view of the file
    assert result.fingerprint.to_bytes() == again.to_bytes()  # fingerprinted after watermarking
    report = read_manifest(result.png, mime="image/png", trust_anchor_pem=ensure_credentials(home).trust_anchor_pem)
    assert report is not None and report.trusted, report
    assert report.actions[0] == "c2pa.created" and "c2pa.watermarked.bound" in report.actions
    assert report.digital_source_type == TRAINED_ALGORITHMIC_MEDIA
    assert report.ingredients == ("alice-style.safetensors",)
    assert report.training_mining["cawg.ai_generative_training"] == "notAllowed"
    assert report.soft_binding == FACTS.generation_id
    assert report.generation is not None and report.generation["prompt_sha256"] == FACTS.prompt_sha256
    assert report.generation["artist"] == "alice" and report.generation["generation_id"] == FACTS.generation_id


def test_the_same_facts_in_xmp_and_png_text(marked) -> None:  # type: ignore[no-untyped-def]
    _, _, result = marked
    text = Image.open(io.BytesIO(result.png)).text  # type: ignore[attr-defined]
    xmp = text["XML:com.adobe.xmp"]
    for fact in (FACTS.generation_id, FACTS.lora_sha256, FACTS.prompt_sha256, "alice-style", "trainedAlgorithmicMedia",
                 "DMI-PROHIBITED-AIMLTRAINING", 'a fox &lt;knight&gt; &amp; "friends"'):  # escaped for XML
        assert fact in xmp
    assert text["Description"] == FACTS.prompt
    assert FACTS.generation_id in text["Title"] and "AI reference · @alice" in text["Title"]
    assert FACTS.lora_sha256 in text["Source"] and "Not to be used to train" in text["Disclaimer"]
    # What the ownership gate reads from it: AI-generated and do-not-train, from XMP and from C2PA.
    signals = read_signals(result.png)
    sources = {(s.kind, s.source.split(":")[0]) for s in signals.signals}
    assert {("ai_generated", "xmp"), ("ai_generated", "c2pa"), ("training_prohibited", "xmp"),
            ("training_prohibited", "c2pa")} <= sources


def test_only_this_instance_anchor_trusts_it(marked, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, _, result = marked
    stranger = ensure_credentials(tmp_path / "other-instance")
    report = read_manifest(result.png, mime="image/png", trust_anchor_pem=stranger.trust_anchor_pem)
    assert report is not None and not report.trusted
    assert "signingCredential.untrusted" in report.problems


def test_any_change_to_the_file_breaks_the_manifest(marked) -> None:  # type: ignore[no-untyped-def]
    home, _, result = marked
    anchor = ensure_credentials(home).trust_anchor_pem
    index = result.png.index(b"alice-style", result.png.index(b"iTXt"))  # inside the XMP, before the manifest
    edited = result.png[:index] + b"ALICE" + result.png[index + 5:]
    report = read_manifest(edited, mime="image/png", trust_anchor_pem=anchor)
    assert report is not None and not report.trusted and report.validation_state == "Invalid"
    # Re-encoding the pixels drops the manifest altogether.
    out = io.BytesIO()
    Image.fromarray(result.rgb).save(out, "PNG")
    assert read_manifest(out.getvalue(), mime="image/png", trust_anchor_pem=anchor) is None
    assert SOFT_BINDING_ALG and GENERATION_ASSERTION  # names exported for verify


def test_the_fingerprint_uses_the_instances_pdq_quality_setting(tmp_path: Path) -> None:
    """With `pdq_min_quality` changed, an output gets the fingerprint the gate computes for it with that
    setting (marking once used the library default, so the two disagreed on `low_detail`)."""
    faint = (artwork(1, 1).astype(float) * 0.1 + 128 * 0.9).round().astype(np.uint8)  # low contrast
    credentials = ensure_credentials(tmp_path)
    usual = mark_image(faint, facts=FACTS, lora=LORA, credentials=credentials, settings=Settings(home=tmp_path))
    quality = usual.fingerprint.pdq_quality
    assert MIN_PDQ_QUALITY <= quality < 100 and not usual.fingerprint.low_detail
    strict = Settings(home=tmp_path, pdq_min_quality=quality + 1)  # just above this output's PDQ quality
    result = mark_image(faint, facts=FACTS, lora=LORA, credentials=credentials, settings=strict)
    decoded = decode_image(result.png, DecodeLimits())
    gate = fingerprint_of(decoded, strict)
    assert result.fingerprint.to_bytes() == gate.to_bytes()
    assert result.fingerprint.low_detail is gate.low_detail is True
    assert not compute_fingerprint(decoded).low_detail  # the library default would have said otherwise


def scramble_c2pa(png: bytes) -> bytes:
    """`png` with the bytes of its C2PA store (the caBX chunk) scrambled and the chunk's CRC made good."""
    at = png.index(b"caBX") - 4
    (length,) = struct.unpack(">I", png[at:at + 4])
    data = bytearray(png[at + 8:at + 8 + length])
    for k in range(8, len(data), 7):
        data[k] ^= 0x5A
    chunk = struct.pack(">I", length) + b"caBX" + bytes(data) + struct.pack(">I", zlib.crc32(b"caBX" + data))
    return png[:at] + chunk + png[at + 12 + length:]


def test_an_unreadable_store_is_a_refusal_the_cli_and_ui_explain(marked) -> None:  # type: ignore[no-untyped-def]
    home, _, result = marked
    with pytest.raises(MimicSafeError, match="C2PA manifest store cannot be read") as caught:
        read_manifest(scramble_c2pa(result.png), mime="image/png",
                      trust_anchor_pem=ensure_credentials(home).trust_anchor_pem)
    assert isinstance(caught.value, ContentCredentialsError)
