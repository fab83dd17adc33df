"""Artists' signing keys: register (ours or an OpenSSH ed25519 key), list, revoke."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from mimicsafe import audit
from mimicsafe.accounts import get_user
from mimicsafe.db.models import ArtistKey, User
from mimicsafe.errors import NotFoundError, PermissionDenied, ValidationFailed
from ownership.errors import SignatureError
from ownership.signatures import RegisteredKey, load_public_key


def register_key(*, session: Session, username: str, public_key_text: str | bytes, actor: str) -> ArtistKey:
    user = get_user(session=session, username=username)
    try:
        info = load_public_key(public_key_text)
    except SignatureError as exc:
        raise ValidationFailed(f"public key: {exc.detail}") from None
    existing = session.scalar(select(ArtistKey).where(ArtistKey.fingerprint == info.fingerprint))
    if existing is not None:
        owner = "you" if existing.user_id == user.id else "another account"
        raise ValidationFailed(f"key {info.fingerprint} is already registered by {owner}")
    key = ArtistKey(user_id=user.id, fingerprint=info.fingerprint, public_key=info.raw, comment=info.comment[:255])
    session.add(key)
    session.flush()
    audit.append(session, actor=actor, action="key.register", subject=username,
                 details={"fingerprint": info.fingerprint})
    return key


def revoke_key(*, session: Session, username: str, fingerprint: str, actor: User | str) -> ArtistKey:
    user = get_user(session=session, username=username)
    key = session.scalar(select(ArtistKey).where(ArtistKey.fingerprint == fingerprint))
    if key is None or key.user_id != user.id:
        raise NotFoundError(f"{username} has no key {fingerprint}")
    if isinstance(actor, User) and actor.role != "admin" and actor.id != user.id:
        raise PermissionDenied("you can revoke only your own keys")
    if key.revoked_at is None:
        key.revoked_at = datetime.now(UTC)
        audit.append(session, actor=actor if isinstance(actor, str) else actor.username, action="key.revoke",
                     subject=username, details={"fingerprint": fingerprint})
    return key


def list_keys(*, session: Session, username: str) -> list[ArtistKey]:
    user = get_user(session=session, username=username)
    return list(session.scalars(select(ArtistKey).where(ArtistKey.user_id == user.id).order_by(ArtistKey.id)))


def registered_keys(*, session: Session, user_id: int) -> list[RegisteredKey]:
    """The artist's keys in the gate's form, revoked ones included (so the gate can say `key_revoked`)."""
    rows = session.scalars(select(ArtistKey).where(ArtistKey.user_id == user_id))
    return [RegisteredKey(fingerprint=k.fingerprint, public_key=k.public_key, revoked=k.revoked_at is not None)
            for k in rows]
