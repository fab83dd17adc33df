"""Re-scans: which protections start one, what they suspend and spare, that they leave the verification
alone, and that an interrupted one resumes."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from mimicsafe import optout, portfolio
from mimicsafe.db.models import Rescan, Suspension, Upload
from mimicsafe.imaging import NamedFile
from mimicsafe.jobs import Queue
from mimicsafe.trust import rescan
from ownership import reasons
from tests.gate_helpers import png_bytes
from tests.training.conftest import Studio, drain
from tests.trust.story import original_work, owner_verifies_portfolio, stolen_copy, upload_signed


def _suspended(studio: Studio) -> set[int]:
    with studio.instance.reading() as s:
        return set(s.scalars(select(Upload.id).where(Upload.suspended_at.is_not(None))))


def test_verifying_queues_the_rescan_and_does_not_wait_for_it(studio: Studio, queue: Queue) -> None:
    instance = studio.instance
    stolen = upload_signed(studio, "bob", "copy.png", stolen_copy(original_work()))
    with instance.transaction() as s:
        portfolio.add_items(session=s, blobs=instance.blobs, settings=instance.settings, username="alice",
                            files=[NamedFile("mine.png", png_bytes(original_work()))], evidence_url=None, actor="alice")
    with instance.transaction() as s:
        verified, _ = portfolio.verify_items(session=s, registry=instance.registry, username="alice", admin="root")
    assert verified
    assert rescan.dispatch(instance, queue) == [1]
    with instance.reading() as s:  # verified and committed; nothing re-scanned yet
        assert s.get(Rescan, 1).status == "queued" and _suspended(studio) == set()
    drain(queue)
    assert _suspended(studio) == {stolen.upload_id}


def test_an_artists_own_verified_work_suspends_nothing_of_theirs(studio: Studio, queue: Queue) -> None:
    own = upload_signed(studio, "alice", "early.png", stolen_copy(original_work()))
    owner_verifies_portfolio(studio, queue, "alice", png_bytes(original_work()))
    assert own.upload_id is not None and _suspended(studio) == set()


def test_an_optout_added_later_suspends_the_matching_upload(studio: Studio, queue: Queue) -> None:
    instance = studio.instance
    stolen = upload_signed(studio, "bob", "copy.png", stolen_copy(original_work(seed=900)))
    innocent = studio.upload("bob", 1, seed=70)
    with instance.transaction() as s:
        optout.add_files(session=s, settings=instance.settings, source="the author, by email", actor="root",
                         files=[NamedFile("theirs.png", png_bytes(original_work(seed=900)))])
    rescan.dispatch(instance, queue)
    drain(queue)
    assert _suspended(studio) == {stolen.upload_id} and innocent[0] not in _suspended(studio)
    with instance.reading() as s:
        row = s.scalars(select(Suspension)).one()
        assert (row.reason, row.protected_kind, row.evidence["owner"]) == (reasons.MATCHES_NEWLY_PROTECTED, "optout",
                                                                            "optout")


def test_an_imported_hash_list_suspends_an_exact_copy(studio: Studio, queue: Queue) -> None:
    instance = studio.instance
    data = stolen_copy(original_work(seed=901))
    stolen = upload_signed(studio, "bob", "copy.png", data)
    with instance.transaction() as s:
        optout.import_hashes(session=s, text=f"sha256:{stolen.evidence.verdict.sha256}\n", source="list",
                             actor="root")
    rescan.dispatch(instance, queue)
    drain(queue)
    assert _suspended(studio) == {stolen.upload_id}


def test_an_interrupted_rescan_resumes_where_it_stopped(studio: Studio, queue: Queue) -> None:
    instance = studio.instance
    first = upload_signed(studio, "bob", "a.png", stolen_copy(original_work(seed=910)))
    second = upload_signed(studio, "bob", "b.png", stolen_copy(original_work(seed=911)))
    with instance.transaction() as s:
        items = optout.add_files(session=s, settings=instance.settings, source="two works", actor="root",
                                 files=[NamedFile(f"{i}.png", png_bytes(original_work(seed=i))) for i in (910, 911)])
        assert len(items) == 2
    with instance.transaction() as s:  # a worker died after committing the first work
        row = s.scalars(select(Rescan)).one()
        row.status, row.position = "running", 1
    assert rescan.recover(instance) == [row.id]
    progress = rescan.run(instance, row.id)
    assert (progress["status"], progress["position"], progress["total"], progress["suspended"]) == ("done", 2, 2, 1)
    assert _suspended(studio) == {second.upload_id} and first.upload_id not in _suspended(studio)
    assert rescan.run(instance, row.id)["suspended"] == 1  # running a finished one again changes nothing


def test_uploads_stored_before_fingerprints_were_kept_are_rescanned_too(studio: Studio, queue: Queue) -> None:
    instance = studio.instance
    stolen = upload_signed(studio, "bob", "copy.png", stolen_copy(original_work(seed=920)))
    with instance.transaction() as s:  # as migration 0004 leaves an older upload
        s.get(Upload, stolen.upload_id).fingerprint = None
    with instance.reading() as s:
        instance.accepted.rebuild(s)
    owner_verifies_portfolio(studio, queue, "alice", png_bytes(original_work(seed=920)))
    assert _suspended(studio) == {stolen.upload_id}


def test_overriding_a_suspension_keeps_the_signature_rule(studio: Studio, queue: Queue) -> None:
    """The admin's override judged the later match, not the signature: an upload the gate accepted on a
    signature still loses its proof when that key is revoked."""
    from mimicsafe import keys, review
    from mimicsafe.db.models import ArtistKey, Dataset, User
    from mimicsafe.training.errors import DatasetRefused
    from mimicsafe.training.manifest import load_items
    from mimicsafe.training.service import submit_training

    instance = studio.instance
    signed = upload_signed(studio, "bob", "copy.png", stolen_copy(original_work()))
    owner_verifies_portfolio(studio, queue, "alice", png_bytes(original_work()))
    assert _suspended(studio) == {signed.upload_id}
    with instance.transaction() as s:
        review.decide(session=s, admin="root", upload_id=signed.upload_id, action="approve",
                      note="licensed; licence on file", override_match=True)
    job = submit_training(instance=instance, queue=queue, username="bob", actor="bob", preset="tiny", steps=1)
    with instance.transaction() as s:
        bob = s.scalars(select(User).where(User.username == "bob")).one()
        for key in s.scalars(select(ArtistKey).where(ArtistKey.user_id == bob.id)):
            keys.revoke_key(session=s, username="bob", fingerprint=key.fingerprint, actor="bob")
    with instance.reading() as s, pytest.raises(DatasetRefused, match="now revoked"):
        load_items(session=s, blobs=instance.blobs, registry=instance.registry, settings=instance.settings,
                   dataset=s.get(Dataset, job.dataset_id))
