"""The whole story of issue 16, end to end: a work stolen before its owner joined stops everything built on it."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from mimicsafe import review
from mimicsafe.db.models import AuditEntry, Rescan, TrainingJob, Upload
from mimicsafe.errors import PermissionDenied
from mimicsafe.generation import GenerationConfig, generate
from mimicsafe.jobs import Queue
from mimicsafe.provenance.verify import verify_image
from mimicsafe.training import service
from mimicsafe.training.errors import DatasetRefused
from mimicsafe.training.manifest import load_items
from mimicsafe.trust import retrain, suspension
from ownership import reasons
from tests.gate_helpers import png_bytes
from tests.generation.studio import QUICK
from tests.training.conftest import Studio, drain
from tests.trust.story import original_work, owner_verifies_portfolio, stolen_copy, upload_signed


def _model_of(studio: Studio, job_id: int) -> int:
    with studio.instance.reading() as s:
        view = service.get_job(session=s, job_id=job_id, actor="bob")
        assert view.job.status == "completed", view.to_json()
        assert view.model_id is not None
        return view.model_id


def _generate(studio: Studio, model_id: int) -> bytes:
    images = generate(instance=studio.instance, actor="bob", username="bob", model_id=model_id,
                      config=GenerationConfig(prompt="a lighthouse", seed=3, **QUICK))
    return images[0].png


def _actions(studio: Studio) -> list[str]:
    with studio.instance.reading() as s:
        return list(s.scalars(select(AuditEntry.action).order_by(AuditEntry.seq)))


def test_stolen_work_signed_before_owner_registers(studio: Studio, queue: Queue) -> None:
    instance = studio.instance
    work = original_work()
    # 1. bob signs alice's illustration with his own key while alice has not joined: the gate accepts it.
    stolen = upload_signed(studio, "bob", "my-lighthouse.png", stolen_copy(work))
    assert stolen.evidence.verdict.decision == "accepted" and stolen.upload_id is not None
    own = studio.upload("bob", 2, seed=40)
    # 2. ... trains on it with the tiny model, and generates.
    job = service.submit_training(instance=instance, queue=queue, username="bob", actor="bob", preset="tiny", steps=2)
    drain(queue)
    model_id = _model_of(studio, job.id)
    image = _generate(studio, model_id)
    assert verify_image(instance=instance, data=image).generation.suspension is None

    # 3. alice joins and an admin verifies her portfolio: the re-scan job finds bob's copy.
    owner_verifies_portfolio(studio, queue, "alice", png_bytes(work))
    with instance.reading() as s:
        rescan_row = s.scalars(select(Rescan)).one()
        assert (rescan_row.status, rescan_row.position, rescan_row.total, rescan_row.suspended) == ("done", 1, 1, 1)
        upload = s.get(Upload, stolen.upload_id)
        assert upload.suspended_at is not None and upload.review_state == "pending"
        assert all(s.get(Upload, i).suspended_at is None for i in own)  # bob's own works are untouched
        [evidence] = suspension.evidence_for_admin(s, stolen.upload_id)
        assert evidence["reason"] == reasons.MATCHES_NEWLY_PROTECTED and evidence["protected"]["owner"] == "alice"
        assert evidence["matches"] and evidence["matches"][0]["method"] in ("pdq", "local_features")
        queue_items = {i.upload.id: i for i in review.list_items(session=s, admin="root")}
        assert reasons.MATCHES_NEWLY_PROTECTED in queue_items[stolen.upload_id].reason_codes
        # the model: suspended; bob sees that and why, never whose work or the picture
        models = service.list_models(session=s, username="bob", actor="bob")
        states = service.model_states(session=s, models=models)
        assert states[model_id] == suspension.FOR_ARTIST
        artist_view = json.dumps([states, suspension.for_artist(s, stolen.upload_id)])
        assert "alice" not in artist_view and evidence["protected"]["key"] not in artist_view
    with pytest.raises(PermissionDenied, match="suspended, under review"):
        _generate(studio, model_id)
    with pytest.raises(PermissionDenied, match="suspended, under review"):
        service.export_model(instance=instance, model_id=model_id, actor="bob", fmt="diffusers")
    # 4. verify answers with the suspension, naming no one else.
    record = verify_image(instance=instance, data=image).generation
    assert record is not None and record.suspension == suspension.FOR_VERIFY
    # the suspended copy can no longer be trained on
    with pytest.raises(DatasetRefused, match="suspended"):
        _load_old_dataset(studio, job.id)

    # 5. The admin upholds: everything stays suspended; bob retrains without the copy in one call.
    with instance.transaction() as s:
        review.decide(session=s, admin="root", upload_id=stolen.upload_id, action="uphold",
                      note="alice published it in 2021")
    with pytest.raises(PermissionDenied):
        _generate(studio, model_id)
    again = retrain.retrain_without_suspended(instance=instance, queue=queue, model_id=model_id, actor="bob")
    drain(queue)
    with instance.reading() as s:
        dataset = service.dataset_of(s, s.get(TrainingJob, again.id))
        listed = {item["upload_id"] for item in dataset.manifest["items"]}
    assert listed == set(own)
    new_model = _model_of(studio, again.id)
    assert verify_image(instance=instance, data=_generate(studio, new_model)).generation.suspension is None

    # 6. The admin overrides instead (a licence turned up): everything is restored.
    with instance.transaction() as s:
        review.decide(session=s, admin="root", upload_id=stolen.upload_id, action="approve",
                      note="alice licensed it to bob; licence on file", override_match=True)
    with instance.reading() as s:
        upload = s.get(Upload, stolen.upload_id)
        assert upload.suspended_at is None and upload.review_state == "overridden"
        models = service.list_models(session=s, username="bob", actor="bob")
        assert service.model_states(session=s, models=models)[model_id] == "ready"
    _generate(studio, model_id)
    assert verify_image(instance=instance, data=image).generation.suspension is None
    _load_old_dataset(studio, job.id)  # the overridden match no longer stops training on it

    # 7. Every step is in the audit log.
    actions = _actions(studio)
    for action in ("rescan.queue", "upload.suspend", "rescan.done", "suspension.uphold", "review.uphold",
                   "suspension.override", "review.approve"):
        assert action in actions, action


def _load_old_dataset(studio: Studio, job_id: int) -> None:
    instance = studio.instance
    with instance.reading() as s:
        dataset = service.dataset_of(s, s.get(TrainingJob, job_id))
        load_items(session=s, blobs=instance.blobs, registry=instance.registry, settings=instance.settings,
                   dataset=dataset)
