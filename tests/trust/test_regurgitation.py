"""No regurgitation: an output that reproduces another artist's protected work is withheld; clean ones pass."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import func, select

from mimicsafe import accounts, portfolio
from mimicsafe.context import Instance
from mimicsafe.db.models import AuditEntry, Generation, LoraModel
from mimicsafe.generation import GenerationConfig, generate
from mimicsafe.imaging import NamedFile
from mimicsafe.trust.regurgitation import OUTPUT_WITHHELD, OutputWithheld
from tests.gate_helpers import artwork, png_bytes
from tests.generation.studio import QUICK, add_lora, make_lora_file
from tests.training.conftest import PALETTES, palette_image

WORK = artwork(3, 4)  # alice's illustration (about 1100 x 850 px)


@pytest.fixture
def bob_model(instance: Instance) -> int:
    """alice (with a verified portfolio work), bob (with a model) and root."""
    with instance.transaction() as s:
        for name, role in (("alice", "artist"), ("bob", "artist"), ("root", "admin")):
            accounts.create_user(session=s, username=name, role=role, password="a long password")  # type: ignore[arg-type]
    with instance.transaction() as s:
        portfolio.add_items(session=s, blobs=instance.blobs, settings=instance.settings, username="alice",
                            files=[NamedFile("work.png", png_bytes(WORK))], evidence_url=None,
                            actor="alice")
    with instance.transaction() as s:
        assert portfolio.verify_items(session=s, registry=instance.registry, username="alice", admin="root")[0]
    return add_lora(instance, "bob", name="bob-style", lora_file=make_lora_file())


def _stub_pipeline(monkeypatch: pytest.MonkeyPatch, outputs: list[np.ndarray]) -> None:
    """The base model, replaced by one that returns the given images (one per prompt, in order)."""
    from mimicsafe.generation import pipeline

    def denoise(pipe, *, prompts, on_step, **_kwargs):  # type: ignore[no-untyped-def]
        on_step()
        return [outputs[i % len(outputs)] for i in range(len(prompts))]

    monkeypatch.setattr(pipeline, "denoise", denoise)


def _reproduction() -> np.ndarray:
    """alice's work as a model that memorised it would return it: mirrored and a little brighter."""
    return np.clip(WORK[:, ::-1].astype(np.int16) + 8, 0, 255).astype(np.uint8)


def _counts(instance: Instance, model_id: int) -> tuple[int, int, int]:
    with instance.reading() as s:
        stored = s.scalar(select(func.count()).select_from(Generation)) or 0
        withheld = s.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.action == OUTPUT_WITHHELD))
        return stored, withheld or 0, s.get(LoraModel, model_id).blocked_outputs


def test_a_reproduction_is_withheld_and_a_clean_output_passes(instance: Instance, bob_model: int,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    clean = palette_image(PALETTES["bob"], 3, (128, 128))
    _stub_pipeline(monkeypatch, [_reproduction(), clean])
    told: list[int] = []
    images = generate(instance=instance, actor="bob", username="bob", model_id=bob_model, withheld=told.append,
                      config=GenerationConfig(prompt="a lighthouse", seed=1, batch=2, **QUICK))
    assert len(images) == 1 and told == [1]
    assert _counts(instance, bob_model) == (1, 1, 1)
    with instance.reading() as s:
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == OUTPUT_WITHHELD)).one()
        [evidence] = entry.details["withheld"]
        assert {m["owner"] for m in evidence["matches"]} == {"alice"}  # for admins; the artist is told no name

    _stub_pipeline(monkeypatch, [_reproduction()])
    with pytest.raises(OutputWithheld, match="withheld because it reproduced a protected work"):
        generate(instance=instance, actor="bob", username="bob", model_id=bob_model,
                 config=GenerationConfig(prompt="a lighthouse", seed=2, **QUICK))
    assert _counts(instance, bob_model) == (1, 2, 2)  # nothing stored


def test_an_artist_may_generate_something_like_their_own_work(instance: Instance, bob_model: int,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    _stub_pipeline(monkeypatch, [_reproduction()])
    alice_model = add_lora(instance, "alice", name="alice-style", lora_file=make_lora_file(seed=2))
    images = generate(instance=instance, actor="alice", username="alice", model_id=alice_model,
                      config=GenerationConfig(prompt="my lighthouse", seed=1, **QUICK))
    assert len(images) == 1 and _counts(instance, alice_model)[2] == 0
