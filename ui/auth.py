"""Logging in to the web app: a rate-limited password check and a server-side session.

The session cookie holds a random token; the database holds its SHA-256 in `web_sessions`
(mimicsafe/accounts.py), checked on every request. Logging out deletes the row, and so do a password
reset, disabling the account, "log out everywhere" and an admin ending the account's sessions: a copied
cookie stops working at once, on every server, and sessions survive a restart.

Failed logins are limited per account name and client address, with a higher cap per account name
(mimicsafe/logins.py): someone elsewhere cannot lock the owner out.

The login form carries a CSRF token (`LoginForms`): a random nonce in a cookie and its HMAC in the
form, so a page on another site cannot log a visitor in to an account of the attacker's choosing.
A failed login logs the account name only if such an account exists; any other name (a password typed
into the name field, say) is logged as a short keyed tag, so that repeated guesses can be told apart
without the text ever reaching the log.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from mimicsafe import accounts, audit
from mimicsafe.context import Instance
from mimicsafe.db.models import User
from mimicsafe.errors import AuthError
from mimicsafe.logins import LoginLimiter

__all__ = ["LOGIN_CSRF_COOKIE", "LOGIN_CSRF_FIELD", "SESSION_COOKIE", "SESSION_SECONDS", "LoginForms",
           "LoginLimiter", "Sessions", "log_in", "log_out", "log_out_everywhere"]

log = logging.getLogger(__name__)

SESSION_COOKIE = "mimicsafe_session"
SESSION_SECONDS = 12 * 3600
LOGIN_CSRF_COOKIE = "mimicsafe_login_csrf"
LOGIN_CSRF_FIELD = "csrf_token"
_TOKEN_LENGTH = 43  # secrets.token_urlsafe(32)


class Sessions:
    """Opens, checks and ends server-side sessions (rows of `web_sessions`, keyed by the token's hash)."""

    def __init__(self, secret: str, *, clock: Callable[[], float] = time.time) -> None:
        self._key = hashlib.sha256(b"mimicsafe-session\x00" + secret.encode()).digest()
        self._clock = clock

    def issue(self, session: Session, user: User) -> str:
        """A new session for `user`, in the caller's transaction: the cookie's token."""
        return accounts.open_session(session=session, user=user, lifetime=timedelta(seconds=SESSION_SECONDS),
                                     now=self._now())

    def username_for(self, instance: Instance, token: str | None) -> str | None:
        """The logged-in user behind a token: a live session of an enabled account, else None."""
        if not _plausible(token):
            return None
        with instance.reading() as session:
            user = accounts.session_user(session=session, token=str(token), now=self._now())
            return user.username if user is not None else None

    def end(self, instance: Instance, token: str | None) -> str | None:
        """Log this session out everywhere its cookie went: the account's name, or None if it was not live."""
        if not _plausible(token):
            return None
        with instance.transaction() as session:
            return accounts.end_session(session=session, token=str(token))

    def tag(self, text: str) -> str:
        """A short keyed digest of `text`: equal texts give equal tags; the text cannot be read back,
        nor guessed offline without the secret key."""
        return hmac.new(self._key, b"log-tag\x00" + text.encode(), hashlib.sha256).hexdigest()[:12]

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)


def _plausible(token: str | None) -> bool:
    """A value `secrets.token_urlsafe(32)` could have made: anything else is not looked up."""
    return (token is not None and len(token) == _TOKEN_LENGTH
            and all(c.isascii() and (c.isalnum() or c in "-_") for c in token))


class LoginForms:
    """CSRF tokens for the login form (signed double submit): the browser holds a random nonce in a
    cookie that only this site can set, the form carries HMAC(key, nonce). A forged form on another site
    can send neither the victim's cookie value nor a token that matches it."""

    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(b"mimicsafe-login-csrf\x00" + secret.encode()).digest()

    @staticmethod
    def new_nonce() -> str:
        return secrets.token_urlsafe(24)

    @staticmethod
    def usable_nonce(nonce: str | None) -> bool:
        """A cookie value this class could have made (anything else is replaced, never signed)."""
        return nonce is not None and 16 <= len(nonce) <= 64 and all(c.isalnum() or c in "-_" for c in nonce)

    def token_for(self, nonce: str) -> str:
        return _b64(hmac.new(self._key, nonce.encode(), hashlib.sha256).digest())

    def valid(self, nonce: str | None, token: str | None) -> bool:
        if nonce is None or not self.usable_nonce(nonce) or not token or len(token) > 128:
            return False
        return hmac.compare_digest(self.token_for(nonce).encode(), token.encode())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def log_in(*, instance: Instance, limiter: LoginLimiter, sessions: Sessions, username: str, password: str,
           client: str = "unknown") -> str:
    """Check a password under the rate limits and open a session: the session token. AuthError or
    RateLimited otherwise. `client` is the caller's address (as the trusted-proxy rules give it)."""
    username = accounts.normalise_username(username)
    limiter.check(username, client)
    try:
        with instance.transaction() as session:
            user = accounts.authenticate(session=session, username=username, password=password)
            token = sessions.issue(session, user)
    except AuthError:
        filled = limiter.record_failure(username, client)
        known = _known_account(instance, username)
        log.info("failed login for %s", f"account {known!r}" if known is not None else
                 f"an unknown account name (tag {sessions.tag(username)})")
        if filled:  # the failure that locks: once per window, not for every refused attempt after it
            with instance.transaction() as session:
                for lockout in filled:
                    audit.append(session, actor="system", action="user.login_locked",
                                 subject=known if known is not None else f"unknown name, tag {sessions.tag(username)}",
                                 details={"scope": lockout.scope, "client": client, "seconds": lockout.seconds})
        raise
    limiter.reset(username, client)
    return token


def log_out(*, instance: Instance, sessions: Sessions, token: str | None) -> None:
    """End the session behind the cookie (nothing to do for a cookie that is not a live session)."""
    sessions.end(instance, token)


def log_out_everywhere(*, instance: Instance, sessions: Sessions, token: str | None) -> int:
    """End every session of the account behind the cookie (other browsers and copied cookies too): how
    many ended. Nothing for a cookie that is not a live session."""
    username = sessions.username_for(instance, token)
    if username is None:
        return 0
    with instance.transaction() as session:
        return accounts.end_sessions(session=session, username=username, actor=username, why="log out everywhere")


def _known_account(instance: Instance, username: str) -> str | None:
    """The failed login's account if it exists. Any other text (perhaps a password typed into the name
    field) may appear in the log and the audit only as a keyed tag."""
    with instance.reading() as session:
        return session.scalar(select(User.username).where(User.username == username))
