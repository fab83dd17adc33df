"""Withdrawing consent (mimicsafe/consent.py): what goes, what stays, who may, and a second run."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest

from mimicsafe import accounts, audit, consent, uploads
from mimicsafe.db.models import AuditEntry, Dataset, Generation, LoraModel, PortfolioItem, TrainingJob, Upload
from mimicsafe.errors import PermissionDenied, ValidationFailed
from mimicsafe.imaging import NamedFile
from mimicsafe.training.runner import cache_dir as training_cache_dir
from mimicsafe.training.runner import job_dir
from tests.gate_helpers import artwork, png_bytes


def _world(instance) -> dict:  # type: ignore[no-untyped-def]
    """dave has two uploads (one file also uploaded by erin), a verified portfolio work, a model (both
    formats), a job still running with a sample and a checkpoint, a generated image, and a cache entry."""
    own, shared, work = (png_bytes(artwork(5, n)) for n in (1, 2, 3))
    weights, kohya, sample, generated = b"lora weights", b"kohya weights", b"sample image", b"generated image"
    with instance.transaction() as session:
        dave = accounts.create_user(session=session, username="dave", role="artist", password="dave-password-1")
        erin = accounts.create_user(session=session, username="erin", role="artist", password="erin-password-1")
        accounts.create_user(session=session, username="root", role="admin", password="root-password-1")
        for user, data in ((dave, own), (dave, shared), (erin, shared)):
            session.add(Upload(user_id=user.id, sha256=instance.blobs.put(data), file_name="x.png",
                               size_bytes=len(data), decision="accepted", verdict={}, policy_version="1"))
        session.add(PortfolioItem(user_id=dave.id, sha256=instance.blobs.put(work), file_name="w.png",
                                  status="verified"))
        dataset = Dataset(user_id=dave.id, manifest={}, manifest_sha256="d" * 64, item_count=2, policy_version="1")
        session.add(dataset)
        session.flush()
        job = TrainingJob(user_id=dave.id, dataset_id=dataset.id, preset="tiny", config={}, status="running",
                          samples=[{"step": 5, "prompt": "x", "seed": 1, "sha256": instance.blobs.put(sample)}])
        done = TrainingJob(user_id=dave.id, dataset_id=dataset.id, preset="tiny", config={}, status="done",
                           finished_at=datetime.now(UTC))
        session.add_all([job, done])
        session.flush()
        session.add(LoraModel(user_id=dave.id, job_id=done.id, name="style", blob_sha256=instance.blobs.put(weights),
                              provenance={"kohya_blob_sha256": instance.blobs.put(kohya)}))
        session.add(Generation(user_id=dave.id, prompt="a cat", params={}, seed=1,
                               image_sha256=instance.blobs.put(generated)))
    entry = training_cache_dir(instance.settings) / "latents" / "ab" / "entry.safetensors"
    entry.parent.mkdir(parents=True)
    entry.write_bytes(b"cached latents")
    work_dir = job_dir(instance.settings, job.id)
    work_dir.mkdir(parents=True)
    (work_dir / "checkpoint.pt").write_bytes(b"checkpoint")
    sha = {name: hashlib.sha256(data).hexdigest()
           for name, data in (("own", own), ("shared", shared), ("work", work), ("weights", weights),
                              ("kohya", kohya), ("sample", sample), ("generated", generated))}
    return {"sha": sha, "job_id": job.id, "cache_entry": entry, "work_dir": work_dir}


def test_withdrawal_deletes_the_artists_material_and_keeps_the_facts(instance) -> None:
    made = _world(instance)
    sha = made["sha"]
    done = consent.withdraw_consent(instance=instance, username="dave", actor="dave", confirmation="dave")
    assert (done.uploads_deleted, done.models_deleted, done.generations_deleted, done.jobs_cancelled,
            done.files_deleted, done.cache_entries_deleted) == (2, 1, 1, 1, 5, 1)
    for gone in ("own", "weights", "kohya", "sample", "generated"):
        assert not instance.blobs.exists(sha[gone]), gone
    assert instance.blobs.exists(sha["shared"])  # erin still has this file
    assert instance.blobs.exists(sha["work"])  # the verified portfolio keeps protecting dave's work
    assert not made["cache_entry"].exists() and made["cache_entry"].parent.is_dir()  # entries go, folders stay
    assert not made["work_dir"].exists()
    with instance.transaction() as session:
        dave = accounts.get_user(session=session, username="dave")
        assert dave.consent_withdrawn_at is not None
        assert all(u.deleted_at is not None for u in session.query(Upload).filter_by(user_id=dave.id))
        assert session.query(Upload).filter(Upload.deleted_at.is_(None)).count() == 1  # erin's
        assert session.query(LoraModel).one().deleted_at is not None
        assert session.query(Generation).count() == 1  # the record stays: copies are still recognised
        assert session.get(TrainingJob, made["job_id"]).cancel_requested
        assert session.query(PortfolioItem).one().status == "verified"
        entry = session.query(AuditEntry).filter_by(action=consent.CONSENT_WITHDRAWN).one()
        assert entry.actor == "dave" and entry.details["uploads_deleted"] == 2
        assert sha["own"] in entry.details["upload_sha256"]
        assert audit.verify_chain(session).ok
        with pytest.raises(PermissionDenied, match="withdrew consent"):
            uploads.check_files(session=session, registry=instance.registry, settings=instance.settings,
                                username="dave", files=[NamedFile("new.png", png_bytes(artwork(5, 9)))])


def test_withdrawal_needs_the_typed_username_and_the_artist_or_an_admin(instance) -> None:
    made = _world(instance)
    with pytest.raises(ValidationFailed, match="type your username"):
        consent.withdraw_consent(instance=instance, username="dave", actor="dave", confirmation="yes")
    with pytest.raises(PermissionDenied):
        consent.withdraw_consent(instance=instance, username="dave", actor="erin", confirmation="dave")
    with pytest.raises(ValidationFailed, match="not an artist"):
        consent.withdraw_consent(instance=instance, username="root", actor="root", confirmation="root")
    assert instance.blobs.exists(made["sha"]["own"])
    consent.withdraw_consent(instance=instance, username="dave", actor="root", confirmation="dave")
    assert not instance.blobs.exists(made["sha"]["own"])


def test_running_it_again_removes_what_a_crash_left_behind(instance) -> None:
    made = _world(instance)
    consent.withdraw_consent(instance=instance, username="dave", actor="dave", confirmation="dave")
    instance.blobs.put(png_bytes(artwork(5, 1)))  # as if the process died before deleting this file
    again = consent.withdraw_consent(instance=instance, username="dave", actor="dave", confirmation="dave")
    assert (again.uploads_deleted, again.files_deleted) == (0, 1)
    assert not instance.blobs.exists(made["sha"]["own"])
