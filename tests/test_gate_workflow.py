"""The gate end to end through the services: every reason code reached by a real case, the review
queue, and verdicts stored with their audit entries."""

from __future__ import annotations

import hashlib
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from benchmarks import synthetic_art as art
from mimicsafe import accounts, audit, keys, optout, portfolio, review, uploads
from mimicsafe.context import Instance
from mimicsafe.db.models import AuditEntry, Upload
from mimicsafe.errors import PermissionDenied, ValidationFailed
from mimicsafe.imaging import NamedFile
from ownership.signatures import sign_manifest, write_keypair
from tests.gate_helpers import AI_SOURCE, DMI_PROHIBITED, artwork, jpeg_bytes, png_bytes


@pytest.fixture
def world(instance: Instance, tmp_path: Path):
    """alice and bob (artists) with verified portfolios, an admin, and a registered key for alice."""
    with instance.transaction() as s:
        for name, role in [("alice", "artist"), ("bob", "artist"), ("root", "admin")]:
            accounts.create_user(session=s, username=name, role=role, password="a long password")
    alice_works = [artwork(1, i) for i in range(2)]
    bob_works = [artwork(2, i) for i in range(2)]
    with instance.transaction() as s:
        for name, works in [("alice", alice_works), ("bob", bob_works)]:
            portfolio.add_items(session=s, blobs=instance.blobs, settings=instance.settings, username=name,
                                files=[NamedFile(f"{name}{i}.png", png_bytes(w)) for i, w in enumerate(works)],
                                evidence_url="https://example.org/gallery", actor=name)
    with instance.transaction() as s:
        for name in ("alice", "bob"):
            verified, refused = portfolio.verify_items(session=s, registry=instance.registry, username=name,
                                                       admin="root", note="checked the gallery")
            assert len(verified) == 2 and refused == []
    private, public = write_keypair(tmp_path / "keys")
    with instance.transaction() as s:
        keys.register_key(session=s, username="alice", public_key_text=public.read_bytes(), actor="alice")
    return {"alice": alice_works, "bob": bob_works, "private_key": private, "public_key": public}


def _upload(instance: Instance, username: str, name: str, data: bytes, signature: bytes | None = None):
    sigs = [NamedFile("manifest.json", signature)] if signature is not None else []
    with instance.transaction() as s:
        (outcome,) = uploads.upload_files(session=s, blobs=instance.blobs, registry=instance.registry,
                                          settings=instance.settings, username=username,
                                          files=[NamedFile(name, data)], signatures=sigs)
    return outcome


def _codes(outcome) -> set[str]:
    return {r.code for r in outcome.evidence.verdict.reasons}


def _signed(world, name: str, data: bytes, artist: str = "alice") -> bytes:
    return sign_manifest(private_key_path_or_bytes=world["private_key"], artist=artist, files=[(name, data)])


def test_own_portfolio_reupload_is_accepted(instance: Instance, world) -> None:
    outcome = _upload(instance, "alice", "mine.jpg", jpeg_bytes(world["alice"][0], 80))
    assert outcome.evidence.verdict.decision == "accepted"
    assert _codes(outcome) == {"portfolio_match"}
    assert outcome.review_state == "none"


def test_signed_new_work_is_accepted(instance: Instance, world) -> None:
    data = png_bytes(artwork(1, 50))
    outcome = _upload(instance, "alice", "new.png", data, _signed(world, "new.png", data))
    assert outcome.evidence.verdict.decision == "accepted"
    assert _codes(outcome) == {"valid_signature"}


def test_unsigned_new_work_has_no_proof(instance: Instance, world) -> None:
    outcome = _upload(instance, "alice", "new.png", png_bytes(artwork(1, 51)))
    assert _codes(outcome) == {"no_proof"} and outcome.review_state == "pending"


def test_someone_elses_cropped_work_is_rejected_even_when_signed(instance: Instance, world) -> None:
    stolen = art.crop(world["bob"][0], 0.2, "center")
    data = jpeg_bytes(stolen, 85)
    outcome = _upload(instance, "alice", "totally-mine.jpg", data, _signed(world, "totally-mine.jpg", data))
    verdict = outcome.evidence.verdict
    assert verdict.decision == "rejected"
    assert "matches_other_artist" in _codes(outcome)
    assert any(m.owner == "bob" for m in verdict.matches)
    assert outcome.review_state == "pending"


def test_bad_signature_and_revoked_key(instance: Instance, world) -> None:
    data = png_bytes(artwork(1, 52))
    manifest = _signed(world, "a.png", data)
    other = png_bytes(artwork(1, 53))  # a file the manifest does not cover, as if a.png were swapped
    assert _codes(_upload(instance, "alice", "b.png", other, manifest)) == {"bad_signature"}
    with instance.transaction() as s:
        (key,) = keys.list_keys(session=s, username="alice")
        keys.revoke_key(session=s, username="alice", fingerprint=key.fingerprint, actor="alice")
    assert _codes(_upload(instance, "alice", "a.png", data, manifest)) == {"key_revoked"}


def test_optout_match(instance: Instance, world) -> None:
    protected = artwork(7, 1)
    with instance.transaction() as s:
        optout.add_files(session=s, settings=instance.settings, files=[NamedFile("x.png", png_bytes(protected))],
                         source="request by email", actor="root")
    data = jpeg_bytes(art.resize(protected, 0.6), 70)
    outcome = _upload(instance, "alice", "x.jpg", data, _signed(world, "x.jpg", data))
    assert "matches_optout" in _codes(outcome) and outcome.evidence.verdict.decision == "rejected"


def test_optout_hash_list_import(instance: Instance, world) -> None:
    data = png_bytes(artwork(8, 1))
    with instance.transaction() as s:
        optout.import_hashes(session=s, text=f"# list\nsha256:{hashlib.sha256(data).hexdigest()}\n", source="list",
                             actor="root")
        with pytest.raises(ValidationFailed, match="line 1"):
            optout.import_hashes(session=s, text="md5:abc", source="bad", actor="root")
    outcome = _upload(instance, "alice", "y.png", data, _signed(world, "y.png", data))
    assert "matches_optout" in _codes(outcome)


def test_metadata_prohibits_training_and_ai_declared(instance: Instance, world) -> None:
    data = png_bytes(artwork(1, 60), xmp=DMI_PROHIBITED)
    codes = _codes(_upload(instance, "alice", "p.png", data, _signed(world, "p.png", data)))
    assert "metadata_prohibits_training" in codes
    data = png_bytes(artwork(1, 61), xmp=AI_SOURCE)
    assert "ai_generated" in _codes(_upload(instance, "alice", "g.png", data, _signed(world, "g.png", data)))


def test_prohibition_in_the_artists_own_verified_work_does_not_reject(instance: Instance, world) -> None:
    data = png_bytes(world["alice"][1], xmp=DMI_PROHIBITED)
    outcome = _upload(instance, "alice", "own.png", data)
    assert outcome.evidence.verdict.decision == "accepted", outcome.evidence.verdict.reasons


def test_duplicate_and_low_detail(instance: Instance, world) -> None:
    data = png_bytes(artwork(1, 70))
    manifest = _signed(world, "d.png", data)
    assert _upload(instance, "alice", "d.png", data, manifest).evidence.verdict.decision == "accepted"
    again = _upload(instance, "alice", "d.png", data, manifest)
    assert "duplicate" in _codes(again) and again.review_state == "none"
    flat = png_bytes(art.flat_image(256, 256))
    assert "low_detail" in _codes(_upload(instance, "alice", "flat.png", flat, _signed(world, "flat.png", flat)))


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "undecodable"),
        (png_bytes(artwork(4, 1))[:5000], "undecodable"),
        (b"GIF89a" + b"\x00" * 100, "unsupported_format"),
        (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0))
         + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 100)) + _png_chunk(b"IEND", b""), "too_large"),
    ],
    ids=["zero-bytes", "truncated-png", "gif", "100k-by-100k"],
)
def test_bad_files_get_their_reason_and_are_not_reviewed(instance: Instance, world, data: bytes, code: str) -> None:
    outcome = _upload(instance, "alice", "bad.png", data)
    assert _codes(outcome) == {code}
    assert outcome.review_state == "none"


def test_every_verdict_is_stored_once_with_its_audit_entry(instance: Instance, world) -> None:
    for i in range(3):
        _upload(instance, "alice", f"f{i}.png", png_bytes(artwork(1, 80 + i)))
    with instance.transaction() as s:
        n_uploads = s.scalar(select(func.count()).select_from(Upload))
        n_audit = s.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.action.like("upload.%")))
        assert n_uploads == n_audit == 3
        assert audit.verify_chain(s).ok


def test_review_queue_decisions(instance: Instance, world) -> None:
    stolen = _upload(instance, "alice", "s.jpg", jpeg_bytes(art.rotate(world["bob"][1], 10, crop_inside=True)))
    unproven = _upload(instance, "alice", "u.png", png_bytes(artwork(1, 90)))
    with instance.transaction() as s:
        pending = review.list_items(session=s, admin="root")
        assert {i.upload.id for i in pending} == {stolen.upload_id, unproven.upload_id}
        with pytest.raises(PermissionDenied):
            review.list_items(session=s, admin="alice")
        with pytest.raises(ValidationFailed, match="note"):
            review.decide(session=s, admin="root", upload_id=unproven.upload_id, action="approve", note=" ")
        with pytest.raises(ValidationFailed, match="override-match"):
            review.decide(session=s, admin="root", upload_id=stolen.upload_id, action="approve", note="looks fine")
        review.decide(session=s, admin="root", upload_id=stolen.upload_id, action="uphold", note="bob's work")
        item = review.decide(session=s, admin="root", upload_id=unproven.upload_id, action="approve",
                             note="saw the artist's sketches on video call")
        assert item.upload.review_state == "overridden"
        eligible = {u.id for u in uploads.eligible_uploads(session=s, user_id=item.upload.user_id)}
        assert unproven.upload_id in eligible and stolen.upload_id not in eligible
        actions = [e.action for e in s.scalars(select(AuditEntry).where(AuditEntry.action.like("review.%"))
                                               .order_by(AuditEntry.seq))]
        assert actions == ["review.uphold", "review.approve"]


def test_the_same_rejected_file_sent_six_times_is_one_review_item(instance: Instance, world) -> None:
    data = png_bytes(artwork(1, 91))
    sent = [_upload(instance, "alice", f"again{n}.png", data) for n in range(6)]
    bob_sent = _upload(instance, "bob", "same.png", data)  # another artist's copy is their own item
    first = sent[0]
    assert all(o.review_state == "pending" for o in sent)  # each copy is told it waits for review
    with instance.transaction() as s:
        items = review.list_items(session=s, admin="root")
        alices = [i for i in items if i.artist == "alice"]
        assert [(i.upload.id, i.count) for i in alices] == [(first.upload_id, 6)]
        assert [i.upload.id for i in items if i.artist == "bob"] == [bob_sent.upload_id]
        assert review.show_item(session=s, admin="root", upload_id=first.upload_id).count == 6
        rows = list(s.scalars(select(Upload).where(Upload.sha256 == first.evidence.verdict.sha256,
                                                   Upload.user_id == items[0].upload.user_id)))
        assert len(rows) == 6 and {r.repeat_of_id for r in rows[1:]} == {first.upload_id}  # every copy stored
        review.decide(session=s, admin="root", upload_id=first.upload_id, action="uphold", note="not hers")
        assert set(uploads.review_states(s, rows).values()) == {"upheld"}  # the copies follow the decision
    again = _upload(instance, "alice", "seventh.png", data)
    assert again.review_state == "upheld"
    with instance.transaction() as s:
        alices = [i for i in review.list_items(session=s, admin="root", state=None) if i.artist == "alice"]
        assert [(i.upload.id, i.count) for i in alices] == [(first.upload_id, 7)]


def test_verify_refuses_a_work_already_protected_for_someone_else(instance: Instance, world) -> None:
    with instance.transaction() as s:
        portfolio.add_items(session=s, blobs=instance.blobs, settings=instance.settings, username="alice",
                            files=[NamedFile("bobs.png", jpeg_bytes(world["bob"][0], 90))], evidence_url=None,
                            actor="alice")
        verified, refused = portfolio.verify_items(session=s, registry=instance.registry, username="alice",
                                                   admin="root")
        assert verified == [] and len(refused) == 1 and "bob" in refused[0][1]


def test_registry_follows_changes_made_by_another_process(instance: Instance, world, settings) -> None:
    """A second Instance (another process, say) adds an opt-out; this one's index sees it at next search."""
    from mimicsafe.context import open_instance

    other = open_instance(settings)
    work = artwork(9, 3)
    with other.transaction() as s:
        optout.add_files(session=s, settings=settings, files=[NamedFile("o.png", png_bytes(work))], source="x",
                         actor="root")
    other.close()
    outcome = _upload(instance, "alice", "o.jpg", jpeg_bytes(work, 75))
    assert "matches_optout" in _codes(outcome)
    with instance.transaction() as s:
        before = instance.registry.size(s)
        instance.registry.rebuild(s)
        assert instance.registry.size(s) == before  # rebuilt from the tables == kept in step


def test_disabled_artist_cannot_upload(instance: Instance, world) -> None:
    with instance.transaction() as s:
        accounts.set_disabled(session=s, username="alice", disabled=True, actor="root")
    with pytest.raises(PermissionDenied):
        _upload(instance, "alice", "x.png", png_bytes(artwork(1, 99)))


def test_gate_thresholds_come_from_settings(tmp_path: Path) -> None:
    """The documented threshold settings are the ones the gate uses: a stricter PDQ quality floor makes
    a soft, low-contrast work `low_detail`, and the robust matcher's thresholds reach the index."""
    import cv2

    from mimicsafe.context import open_instance
    from mimicsafe.settings import load_settings
    from ownership.fingerprint import compute_fingerprint
    from ownership.types import DecodedImage

    work = artwork(1, 54).astype(np.float64)
    soft = cv2.GaussianBlur(np.clip(work.mean() + 0.3 * (work - work.mean()), 0, 255).astype(np.uint8), (0, 0), 3)
    fp = compute_fingerprint(DecodedImage(rgb=np.ascontiguousarray(soft), format="PNG"))
    assert 50 <= fp.pdq_quality < 95 and not fp.low_detail  # fine under the default floor of 50

    strict = open_instance(load_settings(home=tmp_path / "strict", pdq_min_quality=95, robust_min_coverage=0.9,
                                         robust_min_inliers=12, robust_min_area=0.2,
                                         robust_vote_descriptors=120))
    try:
        with strict.transaction() as s:
            accounts.create_user(session=s, username="alice", role="artist", password="a long password")
        index = strict.registry._new_index()  # the index the gate builds from these settings
        params = index.verify_params
        assert (params.min_coverage, params.min_inliers, params.min_area) == (0.9, 12, 0.2)
        assert index.min_pdq_quality == 95 and index.vote_descriptors == 120
        outcome = _upload(strict, "alice", "new.png", png_bytes(soft))
        assert "low_detail" in _codes(outcome)
    finally:
        strict.close()
