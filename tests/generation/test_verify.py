"""verify_image: a fresh output, a re-encoded one and a cropped one are recognised (and by what); a clean
image, or one signed by another instance, is not."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from mimicsafe.errors import ValidationFailed
from mimicsafe.generation import GeneratedImage
from mimicsafe.provenance.content_credentials import LoraIngredient
from mimicsafe.provenance.credentials import ensure_credentials
from mimicsafe.provenance.marking import mark_image
from mimicsafe.provenance.metadata import GenerationFacts
from mimicsafe.provenance.verify import verify_image
from ownership.decode import decode_image
from ownership.types import DecodeLimits
from tests.gate_helpers import artwork, jpeg_bytes, png_bytes
from tests.generation.studio import Studio
from tests.provenance.test_marking import scramble_c2pa


def pixels(output: GeneratedImage) -> np.ndarray:
    return decode_image(output.png, DecodeLimits()).rgb


def crop(rgb: np.ndarray, keep: float, corner: str = "br") -> np.ndarray:
    h, w = rgb.shape[:2]
    ch, cw = round(h * keep), round(w * keep)
    y, x = (h - ch, w - cw) if corner == "br" else (0, 0)
    return np.ascontiguousarray(rgb[y:y + ch, x:x + cw])


def test_a_fresh_output_is_known_to_all_three(studio: Studio) -> None:
    report = verify_image(instance=studio.instance, data=studio.sheet.png)
    assert report.found and report.generation is not None
    assert report.methods == ("c2pa", "watermark", "fingerprint")
    record = report.generation
    assert (record.public_id, record.artist, record.model_name) == (studio.sheet.public_id, "alice", "alice-style")
    assert record.kind == "sheet:turnaround" and len(record.prompt_sha256) == 64
    as_json = report.to_json()
    assert as_json["found"] is True and "a fox knight" not in str(as_json)  # the prompt's hash, never the prompt
    # The single image: the demo model's placeholder noise may hide its watermark; C2PA and fingerprint know it.
    single = verify_image(instance=studio.instance, data=studio.first.png)
    assert single.generation is not None and single.generation.public_id == studio.first.public_id
    assert {"c2pa", "fingerprint"} <= set(single.methods)


def test_jpeg_recompressed_output_is_recognised_without_its_manifest(studio: Studio) -> None:
    for output in (studio.sheet, studio.first):
        report = verify_image(instance=studio.instance, data=jpeg_bytes(pixels(output), quality=75))
        assert report.generation is not None and report.generation.public_id == output.public_id
        assert "c2pa" not in report.methods and "fingerprint" in report.methods
        assert report.c2pa is None
    sheet = verify_image(instance=studio.instance, data=jpeg_bytes(pixels(studio.sheet), quality=75))
    assert "watermark" in sheet.methods


def test_cropped_output_is_recognised(studio: Studio) -> None:
    # Crops up to 20% of each side (the target range), from either corner.
    for output, keep, corner in ((studio.sheet, 0.8, "br"), (studio.first, 0.8, "br"), (studio.sheet, 0.8, "tl"),
                                 (studio.first, 0.9, "tl")):
        report = verify_image(instance=studio.instance, data=png_bytes(crop(pixels(output), keep, corner)))
        assert report.generation is not None and report.generation.public_id == output.public_id, (keep, corner, report)
        assert report.methods and "c2pa" not in report.methods


def test_a_clean_image_is_not_recognised(studio: Studio) -> None:
    for data in (png_bytes(artwork(3, 1)), jpeg_bytes(artwork(4, 2)), png_bytes(np.full((300, 300, 3), 200, np.uint8))):
        report = verify_image(instance=studio.instance, data=data)
        assert not report.found and report.methods == () and report.generation is None
        assert not report.watermark.found and report.fingerprint_matches == ()
        assert report.to_json()["found"] is False


def test_a_manifest_from_another_instance_is_not_ours(studio: Studio, tmp_path: Path) -> None:
    """Another MimicSafe instance (another trust anchor) signs its own image with an id we never issued."""
    facts = GenerationFacts(generation_id="fedcba9876543210", artist="alice", model_id=1, model_name="alice-style",
                            lora_sha256="00" * 32, base_model="x", prompt="elsewhere", seed=1, kind="image",
                            created_at=datetime.now(UTC), software="MimicSafe 0.1.0")
    foreign = mark_image(artwork(5, 1), facts=facts, lora=LoraIngredient("alice-style", "00" * 32, 1, "alice"),
                         credentials=ensure_credentials(tmp_path / "elsewhere"), settings=studio.instance.settings)
    report = verify_image(instance=studio.instance, data=foreign.png)
    assert report.c2pa is not None and not report.c2pa.trusted and "signingCredential.untrusted" in report.c2pa.problems
    assert report.watermark.payload == bytes.fromhex("fedcba9876543210")
    assert not report.found and report.methods == ()
    assert any("not trusted" in note for note in report.notes)
    assert any("no generation of this instance" in note for note in report.notes)


def test_not_an_image_is_bad_input(studio: Studio) -> None:
    with pytest.raises(ValidationFailed, match="unsupported_format"):
        verify_image(instance=studio.instance, data=b"%PDF-1.7 not an image")
    whole = png_bytes(artwork(3, 2))
    with pytest.raises(ValidationFailed, match="undecodable"):
        verify_image(instance=studio.instance, data=whole[: len(whole) // 2])


def test_an_unreadable_manifest_is_a_note_and_the_other_witnesses_still_speak(studio: Studio) -> None:
    report = verify_image(instance=studio.instance, data=scramble_c2pa(studio.sheet.png))
    assert report.c2pa is None and any("C2PA manifest store cannot be read" in note for note in report.notes)
    assert report.generation is not None and report.generation.public_id == studio.sheet.public_id
    assert "c2pa" not in report.methods and "watermark" in report.methods
