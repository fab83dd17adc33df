"""Generation end to end on the tiny model: who may generate, what every output carries, sheets,
progress, cancel, and the LoRA really being applied (and removed afterwards)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from sqlalchemy import func, select

from mimicsafe import accounts
from mimicsafe.db.models import AuditEntry, Generation, LoraModel
from mimicsafe.errors import NotFoundError, PermissionDenied, ValidationFailed
from mimicsafe.generation import GenerationCancelled, GenerationConfig, generate
from mimicsafe.imaging import NamedFile
from mimicsafe.provenance.content_credentials import read_manifest
from mimicsafe.provenance.credentials import load_credentials
from mimicsafe.provenance.watermark import detect
from mimicsafe.registry import GENERATION_REGISTERED
from mimicsafe.uploads import check_files
from ownership import reasons
from ownership.decode import decode_image
from ownership.fingerprint import Fingerprint
from ownership.policy import GENERATED_OWNER
from ownership.types import DecodeLimits
from tests.generation.studio import QUICK, Studio, add_accepted_upload, add_lora, make_lora_file
from tests.generation.test_palette import CREAM, RED, TEAL, blocks


def _count(studio: Studio) -> int:
    with studio.instance.transaction() as session:
        return int(session.scalar(select(func.count()).select_from(Generation)) or 0)


def test_only_the_owner_or_an_admin_generates(studio: Studio) -> None:
    config = GenerationConfig(prompt="a cat", seed=1, **QUICK)
    instance, before = studio.instance, _count(studio)
    with pytest.raises(PermissionDenied, match="only alice or an admin"):
        generate(instance=instance, actor="bob", username="alice", model_id=studio.alice_model, config=config)
    with pytest.raises(NotFoundError, match="bob has no model"):  # alice's model is not bob's to name
        generate(instance=instance, actor="bob", username="bob", model_id=studio.alice_model, config=config)
    with pytest.raises(NotFoundError):
        generate(instance=instance, actor="alice", username="alice", model_id=9999, config=config)
    assert _count(studio) == before

    [made] = generate(instance=instance, actor="root", username="alice", model_id=studio.alice_model, config=config)
    with instance.transaction() as session:
        row = session.get(Generation, made.generation_id)
        assert row is not None and row.params["requested_by"] == "root"
        assert accounts.get_user(session=session, username="alice").id == row.user_id  # alice's style, alice's record
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == GENERATION_REGISTERED)
                                .order_by(AuditEntry.seq.desc())).first()
        assert entry is not None and entry.actor == "root" and entry.details["generation_id"] == made.generation_id


def test_deleted_models_and_withdrawn_consent_are_refused(studio: Studio) -> None:
    instance = studio.instance
    config = GenerationConfig(prompt="a cat", seed=1, **QUICK)
    old = add_lora(instance, "bob", name="bob-old", lora_file=make_lora_file(seed=3))
    with instance.transaction() as session:
        model = session.get(LoraModel, old)
        assert model is not None
        model.deleted_at = datetime.now(UTC)
    with pytest.raises(NotFoundError):
        generate(instance=instance, actor="bob", username="bob", model_id=old, config=config)
    with instance.transaction() as session:
        accounts.get_user(session=session, username="bob").consent_withdrawn_at = datetime.now(UTC)
    try:
        with pytest.raises(PermissionDenied, match="withdrew consent"):
            generate(instance=instance, actor="root", username="bob", model_id=studio.bob_model, config=config)
    finally:
        with instance.transaction() as session:
            accounts.get_user(session=session, username="bob").consent_withdrawn_at = None


def test_every_output_carries_all_marks(studio: Studio) -> None:
    instance = studio.instance
    anchor = load_credentials(instance.settings.home_dir)
    assert anchor is not None
    for output in (studio.first, studio.sheet):
        with instance.transaction() as session:
            row = session.get(Generation, output.generation_id)
            assert row is not None
            assert row.image_sha256 == output.image_sha256 and instance.blobs.get(row.image_sha256) == output.png
            assert row.watermark_payload == output.public_id and row.seed == output.seed
            assert row.pdq is not None and row.fingerprint is not None and row.lora_model_id == studio.alice_model
            # the fingerprint is registered as "generated" (by the audit entry the registry replays)
            fingerprint = Fingerprint.from_bytes(row.fingerprint)
            [match] = [m for m in instance.registry.search(session, fingerprint)
                       if m.owner == GENERATED_OWNER and m.item_sha256 == row.image_sha256]
            assert match.method in ("pdq", "local_features")
        pixels = decode_image(output.png, DecodeLimits()).rgb
        assert min(pixels.shape[:2]) >= 256
        # the watermark: readable on the sheet (flat paper, header, captions); on the demo model's single
        # image (placeholder noise at the watermark's own scale) the record says honestly whether it reads
        found = detect(pixels)
        assert output.watermark_reads_back == (found.payload == bytes.fromhex(output.public_id))
        assert found.payload in (None, bytes.fromhex(output.public_id))  # never a wrong id
        # C2PA, validated against this instance's anchor; XMP and PNG text with the same id
        manifest = read_manifest(output.png, mime="image/png", trust_anchor_pem=anchor.trust_anchor_pem)
        assert manifest is not None and manifest.trusted and manifest.soft_binding == output.public_id
        assert manifest.generation is not None and manifest.generation["generation_id"] == output.public_id
        assert f"<mimicsafe:generationId>{output.public_id}</mimicsafe:generationId>".encode() in output.png
    assert studio.sheet.watermark_reads_back


def test_the_gate_rejects_our_outputs_as_training_data(studio: Studio) -> None:
    instance = studio.instance
    with instance.transaction() as session:
        [outcome] = check_files(session=session, registry=instance.registry, settings=instance.settings,
                                username="alice", files=[NamedFile("mine.png", studio.sheet.png)])
    codes = [r.code for r in outcome.evidence.verdict.reasons]
    assert outcome.evidence.verdict.decision == "rejected" and reasons.AI_GENERATED in codes
    assert any(m.owner == GENERATED_OWNER for m in outcome.evidence.verdict.matches)


def test_a_sheet_has_every_panel(studio: Studio) -> None:
    with studio.instance.transaction() as session:
        row = session.get(Generation, studio.sheet.generation_id)
        assert row is not None
        params = row.params
    assert params["kind"] == "sheet:turnaround" and params["label"] is True
    panels = params["panels"]
    assert [p["caption"] for p in panels] == ["front", "three-quarter", "side", "back"]
    assert all(p["prompt"].startswith("a fox knight, ") and p["kind"] == "image" for p in panels)
    pixels = decode_image(studio.sheet.png, DecodeLimits()).rgb
    for p in panels:
        x, y, w, h = p["box"]
        assert x + w <= pixels.shape[1] and y + h <= pixels.shape[0]
        assert pixels[y:y + h, x:x + w].std() > 10  # a rendered panel, not blank paper


def test_palette_sheet_from_the_artists_own_accepted_works(studio: Studio) -> None:
    instance = studio.instance
    for index in range(2):
        work = blocks([(CREAM, 60), (RED, 30), (TEAL, 10 + 10 * index)])
        add_accepted_upload(instance, "alice", work, f"w{index}.png")
    [sheet] = generate(instance=instance, actor="alice", username="alice", model_id=studio.alice_model,
                       config=GenerationConfig(prompt="a fox", seed=2, sheet="palette", palette_colours=3, **QUICK))
    with instance.transaction() as session:
        row = session.get(Generation, sheet.generation_id)
        assert row is not None
        palette, panels = row.params["palette"], row.params["panels"]
    assert [s["hex"] for s in palette] == ["#f5ebd2", "#c82832", "#148c96"]
    assert [p["caption"] for p in panels] == ["in your style", "#f5ebd2", "#c82832", "#148c96"]
    with pytest.raises(ValidationFailed, match="no accepted uploads"):
        generate(instance=instance, actor="bob", username="bob", model_id=studio.bob_model,
                 config=GenerationConfig(prompt="a fox", sheet="palette", **QUICK))


def test_progress_cancel_and_batch(studio: Studio) -> None:
    instance = studio.instance
    seen: list[tuple[int, int]] = []
    outputs = generate(instance=instance, actor="alice", username="alice", model_id=studio.alice_model,
                       config=GenerationConfig(prompt="a cat", seed=11, batch=2, **QUICK),
                       progress=lambda done, total: seen.append((done, total)))
    assert [o.seed for o in outputs] == [11, 12] and len({o.public_id for o in outputs}) == 2
    assert seen[-1] == (2, 2) and [d for d, _ in seen][:2] == [1, 2]

    before = _count(studio)
    steps: list[int] = []
    with pytest.raises(GenerationCancelled):
        generate(instance=instance, actor="alice", username="alice", model_id=studio.alice_model,
                 config=GenerationConfig(prompt="a cat", seed=11, **{**QUICK, "steps": 5}),
                 progress=lambda done, total: steps.append(done), cancel=lambda: len(steps) >= 2)
    assert steps == [1, 2] and _count(studio) == before  # stopped at the next step; nothing stored

    # The same seed after a cancelled run renders the same image (the LoRA was detached cleanly); only
    # the watermark, a different id, differs.
    [again] = generate(instance=instance, actor="alice", username="alice", model_id=studio.alice_model,
                       config=GenerationConfig(prompt="a cat", seed=12, **QUICK))
    a = decode_image(outputs[1].png, DecodeLimits()).rgb.astype(float)
    b = decode_image(again.png, DecodeLimits()).rgb.astype(float)
    assert 10 * np.log10(255**2 / np.mean((a - b) ** 2)) > 30


def test_the_lora_changes_the_render_and_is_removed_after(studio: Studio) -> None:
    from mimicsafe.generation.pipeline import DEFAULT_PIPELINES, denoise, lora_attached

    lora_file = studio.instance.blobs.get(_lora_sha(studio))

    def render(pipe) -> np.ndarray:  # type: ignore[no-untyped-def]
        return denoise(pipe, prompts=["a cat"], negative="", seeds=[3], steps=2, guidance=1.0, width=64, height=64,
                       on_step=lambda: None, cancelled=lambda: False)[0].astype(int)

    with DEFAULT_PIPELINES.borrow(studio.instance.settings) as pipe:
        base = render(pipe)
        with lora_attached(pipe, lora_file, scale=1.0, adapter_name="t1"):
            styled = render(pipe)
        with lora_attached(pipe, lora_file, scale=0.0, adapter_name="t0"):
            off = render(pipe)
        after = render(pipe)
        with pytest.raises(ValidationFailed, match="safetensors"), \
                lora_attached(pipe, b"not a lora", scale=1.0, adapter_name="bad"):
            pass
    assert np.abs(styled - base).mean() > 2  # the LoRA is applied
    assert np.abs(off - base).max() <= 1 and np.abs(after - base).max() <= 1  # scale 0 = base; removed after


def _lora_sha(studio: Studio) -> str:
    with studio.instance.transaction() as session:
        model = session.get(LoraModel, studio.alice_model)
        assert model is not None
        return model.blob_sha256
