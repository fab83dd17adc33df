"""Accounts: artists and admins, argon2 password hashes, disable/enable, the first admin."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mimicsafe import audit
from mimicsafe.db.models import User
from mimicsafe.errors import AuthError, NotFoundError, ValidationFailed

Role = Literal["artist", "admin"]
ROLES: tuple[Role, ...] = ("artist", "admin")

# argon2id with the RFC 9106 "second recommended" low-memory profile (t=3, m=64 MiB, p=4).
_HASHER = PasswordHasher(time_cost=3, memory_cost=64 * 1024, parallelism=4)
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{1,31}$")
# Owner names the gate uses for registries that are not artists.
RESERVED_USERNAMES = frozenset({"optout", "generated", "admin-system", "system", "anonymous"})
MIN_PASSWORD_LENGTH = 10
INITIAL_ADMIN = "admin"
INITIAL_PASSWORD_FILE = "initial-admin-password"


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def check_username(username: str) -> str:
    if not _USERNAME.match(username):
        raise ValidationFailed(
            f"username {username!r}: use 2-32 lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    if username in RESERVED_USERNAMES:
        raise ValidationFailed(f"username {username!r} is reserved; choose another")
    return username


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
    return user


def set_password(*, session: Session, username: str, password: str, actor: str) -> User:
    user = get_user(session=session, username=username)
    user.password_hash = hash_password(check_password(password))
    audit.append(session, actor=actor, action="user.password_reset", subject=username)
    return user


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
