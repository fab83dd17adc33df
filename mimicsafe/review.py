"""The admin review queue: rejected uploads wait here; an admin upholds or overrides each, with a note."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from mimicsafe import audit
from mimicsafe.accounts import get_user
from mimicsafe.db.models import ReviewDecision, Upload, User
from mimicsafe.errors import NotFoundError, PermissionDenied, ValidationFailed
from ownership import reasons

ReviewState = Literal["pending", "upheld", "overridden"]


@dataclass(frozen=True)
class ReviewItem:
    upload: Upload
    artist: str
    decisions: list[ReviewDecision]

    @property
    def cross_artist_matches(self) -> list[dict]:
        return [m for m in self.upload.verdict.get("matches", []) if m["owner"] not in (self.artist,)]


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
    return [ReviewItem(upload, username, []) for upload, username in session.execute(query.order_by(Upload.id))]


def show_item(*, session: Session, admin: str, upload_id: int) -> ReviewItem:
    _admin(session, admin)
    row = session.execute(select(Upload, User.username).join(User, User.id == Upload.user_id)
                          .where(Upload.id == upload_id)).first()
    if row is None or row[0].review_state == "none":
        raise NotFoundError(f"upload {upload_id} is not in the review queue")
    decisions = list(session.scalars(select(ReviewDecision).where(ReviewDecision.upload_id == upload_id)
                                     .order_by(ReviewDecision.id)))
    return ReviewItem(row[0], row[1], decisions)


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
    codes = {r["code"] for r in item.upload.verdict.get("reasons", [])}
    protected = codes & {reasons.MATCHES_OTHER_ARTIST, reasons.MATCHES_OPTOUT}
    if action == "approve" and protected and not override_match:
        matches = ", ".join(f"{m['owner']} ({m['method']}, {m['score']:g}, {m.get('kind', 'copy')})"
                            for m in item.cross_artist_matches)
        raise ValidationFailed(f"upload {upload_id} matches protected work: {matches}. Approving gives another "
                               "person's work to this artist's training; confirm with --override-match and say why")
    item.upload.review_state = "overridden" if action == "approve" else "upheld"
    decision = ReviewDecision(upload_id=upload_id, admin_id=admin_user.id, action=action, note=note)
    session.add(decision)
    session.flush()
    audit.append(session, actor=admin, action=f"review.{action}", subject=item.artist,
                 details={"upload_id": upload_id, "sha256": item.upload.sha256, "note": note,
                          "reasons": sorted(codes), "override_match": bool(protected and action == "approve")})
    return show_item(session=session, admin=admin, upload_id=upload_id)
