"""Lineage: from any step, the whole chain both ways with states; admins only; the CLI's JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from mimicsafe.accounts import get_user
from mimicsafe.db.models import Generation, LoraModel, PortfolioItem, TrainingJob
from mimicsafe.errors import PermissionDenied
from mimicsafe.jobs import Queue
from mimicsafe.training.manifest import build_manifest, store_dataset
from mimicsafe.trust.lineage import lineage
from tests.gate_helpers import png_bytes
from tests.test_cli_gate import _run
from tests.training.conftest import Studio
from tests.trust.story import original_work, owner_verifies_portfolio, stolen_copy, upload_signed


def _trained_and_generated(studio: Studio, username: str) -> tuple[int, int, int]:
    """A dataset of the artist's eligible uploads, a finished model on it and one stored output (rows
    only: training and generation have their own tests). Returns (dataset, model, generation) ids."""
    with studio.instance.transaction() as s:
        user = get_user(session=s, username=username)
        dataset = store_dataset(session=s, user=user, manifest=build_manifest(session=s, user=user))
        job = TrainingJob(user_id=user.id, dataset_id=dataset.id, preset="tiny", config={}, status="completed",
                          step=2, total_steps=2, finished_at=datetime.now(UTC))
        s.add(job)
        s.flush()
        model = LoraModel(user_id=user.id, job_id=job.id, name="style", blob_sha256="0" * 64, provenance={})
        s.add(model)
        s.flush()
        made = Generation(user_id=user.id, lora_model_id=model.id, prompt="p", params={}, seed=1,
                          image_sha256="1" * 64, watermark_payload="00ff00ff00ff00ff")
        s.add(made)
        s.flush()
        return dataset.id, model.id, made.id


def test_lineage_of_a_stolen_work_both_ways(studio: Studio, queue: Queue, home) -> None:
    stolen = upload_signed(studio, "bob", "copy.png", stolen_copy(original_work()))
    [own] = studio.upload("bob", 1, seed=60)
    dataset_id, model_id, generation_id = _trained_and_generated(studio, "bob")
    owner_verifies_portfolio(studio, queue, "alice", png_bytes(original_work()))
    with studio.instance.reading() as s:
        work_id = s.scalars(select(PortfolioItem.id)).one()
        down = lineage(session=s, admin="root", kind="work", item_id=work_id).to_json()
        up = lineage(session=s, admin="root", kind="generation", item_id=generation_id).to_json()
        with pytest.raises(PermissionDenied):
            lineage(session=s, admin="bob", kind="upload", item_id=stolen.upload_id)
    states = {f"{n['kind']}:{n['id']}": n["state"] for n in down["nodes"]}
    assert states == {f"work:{work_id}": "verified", f"upload:{stolen.upload_id}": "suspended, review pending",
                      f"dataset:{dataset_id}": "tainted", f"model:{model_id}": "suspended",
                      f"generation:{generation_id}": "from a suspended model"}
    assert {(e["from"], e["to"]) for e in down["edges"]} == {
        (f"work:{work_id}", f"upload:{stolen.upload_id}"), (f"upload:{stolen.upload_id}", f"dataset:{dataset_id}"),
        (f"dataset:{dataset_id}", f"model:{model_id}"), (f"model:{model_id}", f"generation:{generation_id}")}
    # upwards from the image: its model, dataset, both uploads, and the work one of them copied
    assert {f"{n['kind']}:{n['id']}" for n in up["nodes"]} == {
        f"generation:{generation_id}", f"model:{model_id}", f"dataset:{dataset_id}", f"upload:{stolen.upload_id}",
        f"upload:{own}", f"work:{work_id}"}

    result = _run(home, "lineage", "model", str(model_id), "--admin", "root")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["subject"] == f"model:{model_id}" and f"work:{work_id}" in {
        f"{n['kind']}:{n['id']}" for n in payload["nodes"]}
    assert _run(home, "lineage", "nothing", "1", "--admin", "root").exit_code == 2
    assert _run(home, "lineage", "upload", str(stolen.upload_id), "--admin", "bob").exit_code == 1
