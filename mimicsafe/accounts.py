"""Accounts: artists and admins, argon2 password hashes, disable/enable, the first admin, and the web
sessions each account has open (server-side, so that ending them ends every copy of their cookie)."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from mimicsafe import audit
from mimicsafe.db.models import User, WebSession, utcnow
from mimicsafe.errors import AuthError, NotFoundError, ValidationFailed

Role = Literal["artist", "admin"]
ROLES: tuple[Role, ...] = ("artist", "admin")

# argon2id with the RFC 9106 "second recommended" low-memory profile (t=3, m=64 MiB, p=4).
_HASHER = PasswordHasher(time_cost=3, memory_cost=64 * 1024, parallelism=4)
_USERNAME = re.compile(r"[a-z0-9][a-z0-9_.-]{1,31}")  # the whole name: always used with fullmatch
# Owner names the gate uses for registries that are not artists.
RESERVED_USERNAMES = frozenset({"optout", "generated", "admin-system", "system", "anonymous"})
MIN_PASSWORD_LENGTH = 10
INITIAL_ADMIN = "admin"
INITIAL_PASSWORD_FILE = "initial-admin-password"


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def check_username(username: str) -> str:
    if not _USERNAME.fullmatch(username):  # `match` with `$` let a final newline through ("zed\n")
        raise ValidationFailed(
            f"username {username!r}: use 2-32 lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    if username in RESERVED_USERNAMES:
        raise ValidationFailed(f"username {username!r} is reserved; choose another")
    return username


def normalise_username(typed: str) -> str:
    """A name as typed at login: surrounding space dropped and case folded, so that `BOB`, ` bob` and `bob `
    are the account `bob` (names are lowercase by rule) — for logging in and for counting failures alike."""
    return typed.strip().lower()


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationFailed(f"password: use at least {MIN_PASSWORD_LENGTH} characters")
    return password


def create_user(*, session: Session, username: str, role: Role, password: str, actor: str = "system") -> User:
    check_username(username)
    check_password(password)
    if role not in ROLES:
        raise ValidationFailed(f"role {role!r}: choose one of {', '.join(ROLES)}")
    if session.scalar(select(User).where(User.username == username)) is not None:
        raise ValidationFailed(f"username {username!r} is taken")
    user = User(username=username, role=role, password_hash=hash_password(password), disabled=False)
    session.add(user)
    session.flush()
    audit.append(session, actor=actor, action="user.create", subject=username, details={"role": role})
    return user


def get_user(*, session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFoundError(f"no user named {username!r}")
    return user


def list_users(*, session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.username)))


def authenticate(*, session: Session, username: str, password: str) -> User:
    """Return the user if the password is right and the account enabled. One error for every failure."""
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        _HASHER.hash(password)  # spend the same time as a real check, so timing does not reveal usernames
        raise AuthError("wrong username or password")
    try:
        _HASHER.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        raise AuthError("wrong username or password") from None
    if user.disabled:
        raise AuthError("wrong username or password")
    if _HASHER.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return user


def set_disabled(*, session: Session, username: str, disabled: bool, actor: str) -> User:
    user = get_user(session=session, username=username)
    user.disabled = disabled
    audit.append(session, actor=actor, action="user.disable" if disabled else "user.enable", subject=username)
    if disabled:
        end_sessions(session=session, username=username, actor=actor, why="account disabled")
    return user


def set_password(*, session: Session, username: str, password: str, actor: str) -> User:
    user = get_user(session=session, username=username)
    user.password_hash = hash_password(check_password(password))
    audit.append(session, actor=actor, action="user.password_reset", subject=username)
    end_sessions(session=session, username=username, actor=actor, why="password reset")
    return user


# Web sessions ---------------------------------------------------------------------------------------
def _token_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(*, session: Session, user: User, lifetime: timedelta, now: datetime | None = None) -> str:
    """A new web session for `user`: the random token for the cookie (only its hash is stored)."""
    now = now or utcnow()
    session.execute(delete(WebSession).where(WebSession.expires_at <= now))  # expired rows go on the next login
    token = secrets.token_urlsafe(32)
    session.add(WebSession(token_sha256=_token_key(token), user_id=user.id, created_at=now, expires_at=now + lifetime))
    session.flush()
    return token


def session_user(*, session: Session, token: str, now: datetime | None = None) -> User | None:
    """The enabled account a live session token belongs to; None for an unknown, ended or expired one."""
    row = session.execute(select(User, WebSession.expires_at).join(WebSession, WebSession.user_id == User.id)
                          .where(WebSession.token_sha256 == _token_key(token))).first()
    if row is None:
        return None
    user, expires = row
    if expires.tzinfo is None:  # SQLite hands back naive datetimes (stored as UTC)
        expires = expires.replace(tzinfo=(now or utcnow()).tzinfo)
    if expires <= (now or utcnow()) or user.disabled:
        return None
    return user


def end_session(*, session: Session, token: str) -> str | None:
    """Log one session out (its cookie stops working everywhere it was copied): the account's name, or
    None if the token was not a live session."""
    row = session.execute(select(WebSession, User.username).join(User, User.id == WebSession.user_id)
                          .where(WebSession.token_sha256 == _token_key(token))).first()
    if row is None:
        return None
    web_session, username = row
    session.delete(web_session)
    audit.append(session, actor=username, action="user.logout", subject=username,
                 details={"session_id": web_session.id})
    return str(username)


def end_sessions(*, session: Session, username: str, actor: str, why: str) -> int:
    """End every session of an account ("log out everywhere", an admin's action, a password reset or a
    disabled account); the number ended, which the audit entry records."""
    user = get_user(session=session, username=username)
    ended = session.execute(delete(WebSession).where(WebSession.user_id == user.id)).rowcount or 0  # type: ignore[attr-defined]
    audit.append(session, actor=actor, action="user.sessions_ended", subject=username,
                 details={"sessions": ended, "why": why})
    return int(ended)


def open_sessions(*, session: Session, username: str, now: datetime | None = None) -> int:
    user = get_user(session=session, username=username)
    return session.scalar(select(func.count()).select_from(WebSession).where(
        WebSession.user_id == user.id, WebSession.expires_at > (now or utcnow()))) or 0


def ensure_initial_admin(*, session: Session, home: Path, password: str | None) -> str | None:
    """Create the first admin if there is none.

    With `password` (MIMICSAFE_ADMIN_PASSWORD) that one is used; otherwise a random one is written to
    `home/initial-admin-password` with mode 0600 and returned so the caller can print it once.
    Returns None when an admin already exists or the password came from the settings.
    """
    if session.scalar(select(func.count()).select_from(User).where(User.role == "admin")):
        return None
    generated = password is None
    password = password or secrets.token_urlsafe(18)
    create_user(session=session, username=INITIAL_ADMIN, role="admin", password=password)
    if not generated:
        return None
    home.mkdir(parents=True, exist_ok=True)
    path = home / INITIAL_PASSWORD_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(password + "\n")
    os.chmod(path, 0o600)
    return password
