"""Disputes: transfer and keep, each audited; the claimed work stays protected meanwhile; a claim on one's
own work is refused."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from mimicsafe.db.models import AuditEntry, PortfolioItem, Upload
from mimicsafe.errors import NotFoundError, PermissionDenied, ValidationFailed
from mimicsafe.imaging import NamedFile
from mimicsafe.jobs import Queue
from mimicsafe.trust import disputes, rescan
from ownership import reasons
from tests.gate_helpers import png_bytes
from tests.test_cli_gate import _run
from tests.training.conftest import Studio, drain
from tests.trust.story import original_work, owner_verifies_portfolio, stolen_copy, upload_signed

EVIDENCE = "https://example.org/alice/2019/lighthouse"


def _bob_owns_alices_work(studio: Studio, queue: Queue) -> tuple[int, int]:
    """bob had alice's work verified as his before she joined, and uploaded a copy (accepted on it).
    Returns (work id, upload id)."""
    [work_id] = owner_verifies_portfolio(studio, queue, "bob", png_bytes(original_work()))
    copy = upload_signed(studio, "bob", "copy.png", stolen_copy(original_work()))
    assert copy.evidence.verdict.decision == "accepted" and copy.upload_id is not None
    return work_id, copy.upload_id


def _claim(studio: Studio, work_id: int, claimant: str = "alice", **kwargs) -> int:  # type: ignore[no-untyped-def]
    instance = studio.instance
    with instance.transaction() as s:
        return disputes.open_dispute(session=s, blobs=instance.blobs, settings=instance.settings, work_id=work_id,
                                     claimant=claimant, evidence_url=kwargs.get("evidence_url", EVIDENCE),
                                     note=kwargs.get("note", "I drew it in 2019; sketches attached"),
                                     files=kwargs.get("files", [NamedFile("sketch.png", png_bytes(original_work(7)))])
                                     ).id


def _audit(studio: Studio, action: str) -> list[dict]:
    with studio.instance.reading() as s:
        return [e.details for e in s.scalars(select(AuditEntry).where(AuditEntry.action == action))]


def test_transfer_moves_the_work_and_suspends_the_former_owners_copies(studio: Studio, queue: Queue) -> None:
    instance = studio.instance
    work_id, copy_id = _bob_owns_alices_work(studio, queue)
    dispute_id = _claim(studio, work_id)
    # while open, the work stays protected for bob: alice's own upload of it is rejected
    rejected = upload_signed(studio, "alice", "mine.png", png_bytes(original_work()))
    assert reasons.MATCHES_OTHER_ARTIST in {r.code for r in rejected.evidence.verdict.reasons}
    with instance.reading() as s:
        both = disputes.show_dispute(session=s, actor="root", dispute_id=dispute_id).to_json(for_admin=True)
        claimant_view = disputes.show_dispute(session=s, actor="alice", dispute_id=dispute_id).to_json(for_admin=False)
    assert both["owner"] == "bob" and both["claim"]["evidence_url"] == EVIDENCE and both["work"]["verified_at"]
    assert "owner" not in claimant_view and "bob" not in json.dumps(claimant_view)

    with instance.transaction() as s:
        disputes.decide(session=s, admin="root", dispute_id=dispute_id, action="transfer",
                        note="the claimant's 2019 post predates the account that registered it")
    rescan.dispatch(instance, queue)
    drain(queue)
    with instance.reading() as s:
        old, new = s.get(PortfolioItem, work_id), s.scalars(select(PortfolioItem).where(
            PortfolioItem.status == "verified")).one()
        assert old.status == "transferred" and new.user_id != old.user_id and new.sha256 == old.sha256
        assert s.get(Upload, copy_id).suspended_at is not None  # bob's copy, and what was built on it
    assert [d["dispute_id"] for d in _audit(studio, "dispute.open")] == [dispute_id]
    assert [d["dispute_id"] for d in _audit(studio, "dispute.transfer")] == [dispute_id]
    assert [d["upload_id"] for d in _audit(studio, "upload.suspend")] == [copy_id]
    assert upload_signed(studio, "alice", "mine-again.png", png_bytes(original_work())) \
        .evidence.verdict.decision == "accepted"  # now it is her verified work
    with instance.reading() as s:  # what each artist's Portfolio tab shows names the dispute, not the other artist
        shown = [(w.file_name, w.note) for w in (s.get(PortfolioItem, work_id), new)]
    assert "alice" not in repr(shown[0]) and "bob" not in repr(shown[1]), shown
    assert [(d["from"]) for d in _audit(studio, "portfolio.verify") if d.get("dispute_id") == dispute_id] == ["bob"]


def test_a_suspended_upload_can_start_a_claim_on_the_work_that_suspended_it(studio: Studio, queue: Queue) -> None:
    """bob's accepted work was suspended when alice's portfolio was verified later: bob may claim that work
    (through his upload, never learning whose it is)."""
    copy = upload_signed(studio, "bob", "mine.png", stolen_copy(original_work()))
    assert copy.evidence.verdict.decision == "accepted" and copy.upload_id is not None
    [work_id] = owner_verifies_portfolio(studio, queue, "alice", png_bytes(original_work()))
    with studio.instance.reading() as s:
        assert s.get(Upload, copy.upload_id).suspended_at is not None
        assert disputes.work_matched_by(session=s, username="bob", upload_id=copy.upload_id) == work_id


def test_keep_leaves_everything_as_it_was(studio: Studio, queue: Queue) -> None:
    work_id, copy_id = _bob_owns_alices_work(studio, queue)
    dispute_id = _claim(studio, work_id, files=[])
    with studio.instance.transaction() as s, pytest.raises(PermissionDenied):
        disputes.decide(session=s, admin="alice", dispute_id=dispute_id, action="transfer", note="mine")
    with studio.instance.transaction() as s:
        disputes.decide(session=s, admin="root", dispute_id=dispute_id, action="keep", note="no earlier publication")
    with studio.instance.transaction() as s, pytest.raises(ValidationFailed, match="already decided"):
        disputes.decide(session=s, admin="root", dispute_id=dispute_id, action="transfer", note="changed my mind")
    with studio.instance.reading() as s:
        assert s.get(PortfolioItem, work_id).status == "verified" and s.get(Upload, copy_id).suspended_at is None
        assert [v.dispute.id for v in disputes.list_disputes(session=s, actor="bob")] == []  # not bob's claim
        with pytest.raises(NotFoundError):
            disputes.show_dispute(session=s, actor="bob", dispute_id=dispute_id)
    assert [(d["dispute_id"], d["owner"]) for d in _audit(studio, "dispute.keep")] == [(dispute_id, "bob")]


def test_claims_that_are_refused(studio: Studio, queue: Queue) -> None:
    work_id, _ = _bob_owns_alices_work(studio, queue)
    with pytest.raises(ValidationFailed, match="already yours"):
        _claim(studio, work_id, claimant="bob")
    with pytest.raises(ValidationFailed, match="needs a note and evidence"):
        _claim(studio, work_id, evidence_url=None, files=[])
    with pytest.raises(ValidationFailed, match="http"):
        _claim(studio, work_id, evidence_url="javascript:alert(1)")
    for link in ("https://example.org/a\x00b", "https://example.org/a b", "https://example.org/<form>",
                 "https://admin.example.org@evil.example/login", "https://example.org/" + "a" * 5000):
        with pytest.raises(ValidationFailed):  # the portfolio's strict rule, not a database error
            _claim(studio, work_id, evidence_url=link)
    with pytest.raises(NotFoundError):
        _claim(studio, work_id + 100)
    _claim(studio, work_id)
    with pytest.raises(ValidationFailed, match="already have an open claim"):
        _claim(studio, work_id)
    assert len(_audit(studio, "dispute.open")) == 1


def test_disputes_from_the_command_line(studio: Studio, queue: Queue, home) -> None:
    work_id, _ = _bob_owns_alices_work(studio, queue)
    opened = _run(home, "dispute", "open", str(work_id), "--by", "alice", "--evidence", EVIDENCE, "--note", "mine")
    assert opened.exit_code == 0, opened.output
    dispute_id = json.loads(opened.output)["dispute_id"]
    assert _run(home, "dispute", "open", str(work_id), "--by", "bob", "--evidence", EVIDENCE,
                "--note", "x").exit_code == 2
    shown = json.loads(_run(home, "dispute", "show", str(dispute_id), "--as", "root").output)
    assert shown["owner"] == "bob" and shown["state"] == "open"
    decided = _run(home, "dispute", "decide", str(dispute_id), "transfer", "--admin", "root", "--note", "earlier post")
    assert decided.exit_code == 0 and json.loads(decided.output)["state"] == "transferred"
    listed = json.loads(_run(home, "dispute", "list", "--as", "alice").output)["disputes"]
    assert [d["state"] for d in listed] == ["transferred"]
