"""Portfolios: an artist submits works with evidence; an admin verifies them; verified works are
protected for everyone from then on (and prove the artist's own uploads)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from urllib.parse import urlparse

from sqlalchemy import select
from sqlalchemy.orm import Session

from mimicsafe import audit
from mimicsafe.accounts import get_user
from mimicsafe.blobs import BlobStore
from mimicsafe.db.models import PortfolioItem, User
from mimicsafe.errors import PermissionDenied, ValidationFailed
from mimicsafe.imaging import NamedFile, display_name, fingerprint_or_refuse
from mimicsafe.registry import PORTFOLIO_VERIFIED, Registry
from mimicsafe.settings import Settings
from mimicsafe.trust import rescan
from ownership.fingerprint import Fingerprint

MAX_EVIDENCE_URL = 2048  # the column's length; real links to a post or a shop page are far shorter
_NOT_IN_A_LINK = frozenset('<>"`\\{}|^')  # never unescaped in a URL (RFC 3986); markup needs them


def check_evidence_url(url: str | None) -> str | None:
    """An evidence link as it may be stored and shown to an admin: one http(s) URL with a host, no
    whitespace or control characters, none of `<>"` (and the other characters a URL never holds raw), no
    user name or password before the host, at most MAX_EVIDENCE_URL characters. None when none is given.
    Anything else is refused, not cleaned: what the artist typed is not what would be shown."""
    if url is None or url == "":
        return None
    shown = repr(url[:80]) + ("…" if len(url) > 80 else "")
    if len(url) > MAX_EVIDENCE_URL:
        raise ValidationFailed(f"evidence {shown}: a link may be at most {MAX_EVIDENCE_URL} characters")
    if any(c.isspace() or not c.isprintable() for c in url):
        raise ValidationFailed(f"evidence {shown}: give one link on one line, without spaces (write a space as %20)")
    if any(c in _NOT_IN_A_LINK for c in url):
        raise ValidationFailed(f"evidence {shown}: a link cannot contain any of < > \" ` \\ {{ }} | ^ "
                               "(percent-encode them, e.g. %3C for <)")
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValidationFailed(f"evidence {shown}: give an http(s) link to where the work was first published")
    if parsed.username is not None or parsed.password is not None:
        raise ValidationFailed(f"evidence {shown}: a link cannot carry a user name or password before the host")
    return url


def add_items(*, session: Session, blobs: BlobStore, settings: Settings, username: str, files: list[NamedFile],
              evidence_url: str | None, actor: str) -> list[PortfolioItem]:
    """Submit works for verification. Each is stored and fingerprinted now; it protects nothing until verified."""
    user = get_user(session=session, username=username)
    evidence = check_evidence_url(evidence_url)
    fingerprints = [fingerprint_or_refuse(f, settings) for f in files]  # refuse the batch before storing any
    items = []
    for file, fingerprint in zip(files, fingerprints, strict=True):
        sha256 = hashlib.sha256(file.data).hexdigest()
        existing = session.scalar(select(PortfolioItem).where(PortfolioItem.user_id == user.id,
                                                              PortfolioItem.sha256 == sha256))
        if existing is not None:
            items.append(existing)
            continue
        blobs.put(file.data)
        item = PortfolioItem(user_id=user.id, sha256=sha256, file_name=display_name(file.name), evidence_url=evidence,
                             status="pending", pdq=fingerprint.pdq, pdq_quality=fingerprint.pdq_quality,
                             fingerprint=fingerprint.to_bytes())
        session.add(item)
        session.flush()
        audit.append(session, actor=actor, action="portfolio.submit", subject=username,
                     details={"item_id": item.id, "sha256": sha256, "evidence_url": evidence})
        items.append(item)
    return items


def pending_items(*, session: Session, username: str | None = None) -> list[PortfolioItem]:
    query = select(PortfolioItem).where(PortfolioItem.status == "pending").order_by(PortfolioItem.id)
    if username is not None:
        query = query.where(PortfolioItem.user_id == get_user(session=session, username=username).id)
    return list(session.scalars(query))


def verify_items(*, session: Session, registry: Registry, username: str, admin: str, note: str = "",
                 item_ids: list[int] | None = None) -> tuple[list[PortfolioItem], list[tuple[PortfolioItem, str]]]:
    """An admin verifies an artist's pending works (all, or the given ids).

    A work that already matches another artist's verified work or the opt-out registry is not
    verified: two people cannot both own one picture, and the first claim stands until an admin
    resolves it. Returns (verified, refused with reason).

    The verified works are queued for a re-scan of every other artist's accepted uploads in this
    transaction (`mimicsafe.trust.rescan`); the caller dispatches it after the commit, without waiting.
    """
    admin_user = _require_admin(session, admin)
    artist = get_user(session=session, username=username)
    verified: list[PortfolioItem] = []
    refused: list[tuple[PortfolioItem, str]] = []
    for item in pending_items(session=session, username=username):
        if item_ids is not None and item.id not in item_ids:
            continue
        conflicts = [m for m in registry.search(session, Fingerprint.from_bytes(item.fingerprint or b""),
                                                sha256=item.sha256)
                     if m.owner != artist.username]
        if conflicts:
            best = conflicts[0]
            refused.append((item, f"matches a protected work of {best.owner} ({best.method}, score {best.score:g}, "
                                  f"{best.kind})"))
            continue
        item.status, item.decided_at, item.decided_by_id, item.note = "verified", datetime.now(UTC), admin_user.id, note
        audit.append(session, actor=admin, action=PORTFOLIO_VERIFIED, subject=username,
                     details={"item_id": item.id, "sha256": item.sha256, "note": note})
        verified.append(item)
    rescan.request(session, trigger=PORTFOLIO_VERIFIED, actor=admin, items=[("portfolio", i.id) for i in verified])
    return verified, refused


def deny_items(*, session: Session, username: str, admin: str, note: str, item_ids: list[int]) -> list[PortfolioItem]:
    admin_user = _require_admin(session, admin)
    if not note.strip():
        raise ValidationFailed("note: say why the works are denied")
    denied = []
    for item in pending_items(session=session, username=username):
        if item.id in item_ids:
            item.status, item.decided_at = "denied", datetime.now(UTC)
            item.decided_by_id, item.note = admin_user.id, note
            audit.append(session, actor=admin, action="portfolio.deny", subject=username,
                         details={"item_id": item.id, "sha256": item.sha256, "note": note})
            denied.append(item)
    return denied


def _require_admin(session: Session, username: str) -> User:
    user = get_user(session=session, username=username)
    if user.role != "admin" or user.disabled:
        raise PermissionDenied(f"{username} is not an admin")
    return user
