"""The admin review queue: rejected uploads wait here; an admin upholds or overrides each, with a note.

Accepted uploads that a re-scan suspended (`matches_newly_protected`, `mimicsafe.trust`) wait here too;
deciding one decides its suspension (and so the models trained on it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mimicsafe import audit
from mimicsafe.accounts import get_user
from mimicsafe.db.models import ReviewDecision, Upload, User
from mimicsafe.errors import NotFoundError, PermissionDenied, ValidationFailed
from mimicsafe.trust import suspension
from ownership import reasons

ReviewState = Literal["pending", "upheld", "overridden"]


@dataclass(frozen=True)
class ReviewItem:
    upload: Upload
    artist: str
    decisions: list[ReviewDecision]
    count: int = 1  # how many times the artist sent this file (repeats join the first copy's item)
    suspensions: tuple[dict, ...] = ()
    """A re-scan's findings (with the protected work's owner and the matches): admins only."""

    @property
    def cross_artist_matches(self) -> list[dict]:
        found = [m for m in self.upload.verdict.get("matches", []) if m["owner"] not in (self.artist,)]
        for s in self.suspensions:
            found += [{**m, "owner": s["protected"]["owner"]} for m in s["matches"]]
        return found

    @property
    def reason_codes(self) -> list[str]:
        codes = [r["code"] for r in self.upload.verdict.get("reasons", [])]
        return codes + sorted({s["reason"] for s in self.suspensions} - set(codes))


def _admin(session: Session, username: str) -> User:
    user = get_user(session=session, username=username)
    if user.role != "admin" or user.disabled:
        raise PermissionDenied(f"{username} is not an admin")
    return user


def list_items(*, session: Session, admin: str, state: ReviewState | None = "pending") -> list[ReviewItem]:
    _admin(session, admin)
    query = select(Upload, User.username).join(User, User.id == Upload.user_id).where(Upload.review_state != "none")
    if state is not None:
        query = query.where(Upload.review_state == state)
    rows = list(session.execute(query.order_by(Upload.id)))
    ids = [upload.id for upload, _ in rows]
    counts, later = _copies(session, ids), suspension.evidence_for_admin_of(session, ids)
    return [ReviewItem(upload, username, [], counts.get(upload.id, 1), tuple(later.get(upload.id, [])))
            for upload, username in rows]


def _copies(session: Session, upload_ids: list[int]) -> dict[int, int]:
    """For each review item, 1 + the repeats that joined it."""
    counts: dict[int, int] = {}
    for start in range(0, len(upload_ids), 500):  # keep each IN list short
        chunk = upload_ids[start:start + 500]
        for item_id, repeats in session.execute(select(Upload.repeat_of_id, func.count()).where(
                Upload.repeat_of_id.in_(chunk)).group_by(Upload.repeat_of_id)):
            if item_id is not None:
                counts[int(item_id)] = 1 + int(repeats)
    return counts


def show_item(*, session: Session, admin: str, upload_id: int) -> ReviewItem:
    _admin(session, admin)
    row = session.execute(select(Upload, User.username).join(User, User.id == Upload.user_id)
                          .where(Upload.id == upload_id)).first()
    if row is None or row[0].review_state == "none":
        raise NotFoundError(f"upload {upload_id} is not in the review queue")
    decisions = list(session.scalars(select(ReviewDecision).where(ReviewDecision.upload_id == upload_id)
                                     .order_by(ReviewDecision.id)))
    return ReviewItem(row[0], row[1], decisions, _copies(session, [upload_id]).get(upload_id, 1),
                      tuple(suspension.evidence_for_admin(session, upload_id)))


def decide(*, session: Session, admin: str, upload_id: int, action: Literal["approve", "uphold"], note: str,
           override_match: bool = False) -> ReviewItem:
    """Uphold the rejection, or approve (override) it so the upload becomes training-eligible.

    Overriding a match with another artist's verified work or the opt-out registry needs
    `override_match=True` as well as the note: the admin must have looked at the match.
    """
    admin_user = _admin(session, admin)
    item = show_item(session=session, admin=admin, upload_id=upload_id)
    if not note.strip():
        raise ValidationFailed("note: a review decision needs a note saying why")
    if action not in ("approve", "uphold"):
        raise ValidationFailed(f"action {action!r}: choose approve or uphold")
    codes = set(item.reason_codes)
    protected = codes & {reasons.MATCHES_OTHER_ARTIST, reasons.MATCHES_OPTOUT, reasons.MATCHES_NEWLY_PROTECTED}
    if action == "approve" and protected and not override_match:
        matches = ", ".join(f"{m['owner']} ({m['method']}, {m['score']:g}, {m.get('kind', 'copy')})"
                            for m in item.cross_artist_matches)
        raise ValidationFailed(f"upload {upload_id} matches protected work: {matches}. Approving gives another "
                               "person's work to this artist's training; confirm with --override-match and say why")
    if item.suspensions:  # a re-scan suspended it: the decision is the suspension's, and its models'
        suspension.decide(session, upload=item.upload, admin=admin_user, action=action, note=note)
    else:
        item.upload.review_state = "overridden" if action == "approve" else "upheld"
    decision = ReviewDecision(upload_id=upload_id, admin_id=admin_user.id, action=action, note=note)
    session.add(decision)
    session.flush()
    audit.append(session, actor=admin, action=f"review.{action}", subject=item.artist,
                 details={"upload_id": upload_id, "sha256": item.upload.sha256, "note": note,
                          "reasons": sorted(codes), "override_match": bool(protected and action == "approve")})
    return show_item(session=session, admin=admin, upload_id=upload_id)
