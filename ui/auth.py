"""Logging in to the web app: a rate-limited password check and a signed session cookie.

The cookie holds the username, an expiry time and a tag derived from the current password hash,
signed with HMAC-SHA256 under `MIMICSAFE_SECRET_KEY`. It is checked against the database on every
request, so disabling an account or resetting its password ends its sessions at once. Nothing about
a session is kept in server memory, so sessions survive a restart and work across several servers.

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
import json
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select

from mimicsafe import accounts
from mimicsafe.context import Instance
from mimicsafe.db.models import User
from mimicsafe.errors import AuthError, RateLimited

log = logging.getLogger(__name__)

SESSION_COOKIE = "mimicsafe_session"
SESSION_SECONDS = 12 * 3600
LOGIN_CSRF_COOKIE = "mimicsafe_login_csrf"
LOGIN_CSRF_FIELD = "csrf_token"
_WINDOW_SECONDS = 60.0


class LoginLimiter:
    """At most `attempts_per_minute` failed logins per account name in any 60 seconds.

    Counted per name, existing or not, so that guessing one account's password is slow and the
    answer does not reveal whether the account exists. Kept in memory: one server process.
    """

    def __init__(self, attempts_per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = attempts_per_minute
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: dict[str, deque[float]] = {}

    def check(self, username: str) -> None:
        with self._lock:
            recent = self._recent(username)
            if len(recent) >= self._limit:
                wait = int(_WINDOW_SECONDS - (self._clock() - recent[0])) + 1
                raise RateLimited(f"too many failed logins for this account; try again in {wait} s")

    def record_failure(self, username: str) -> None:
        with self._lock:
            self._recent(username).append(self._clock())

    def reset(self, username: str) -> None:
        with self._lock:
            self._failures.pop(_key(username), None)

    def _recent(self, username: str) -> deque[float]:
        now = self._clock()
        for name in [n for n, times in self._failures.items() if not times or now - times[-1] > _WINDOW_SECONDS]:
            del self._failures[name]  # forget quiet names, so guessing many names cannot fill memory
        recent = self._failures.setdefault(_key(username), deque())
        while recent and now - recent[0] > _WINDOW_SECONDS:
            recent.popleft()
        return recent


def _key(username: str) -> str:
    return username.strip().lower()


@dataclass(frozen=True)
class Claims:
    username: str
    expires: int
    password_tag: str


class Sessions:
    """Issues and checks session tokens: base64(JSON claims) "." base64(HMAC)."""

    def __init__(self, secret: str, *, clock: Callable[[], float] = time.time) -> None:
        self._key = hashlib.sha256(b"mimicsafe-session\x00" + secret.encode()).digest()
        self._clock = clock

    def issue(self, user: User) -> str:
        claims = {"u": user.username, "exp": int(self._clock()) + SESSION_SECONDS,
                  "pw": self._password_tag(user.password_hash)}
        body = _b64(json.dumps(claims, separators=(",", ":")).encode())
        return f"{body}.{_b64(self._sign(body))}"

    def read(self, token: str | None) -> Claims | None:
        """The claims of a well-signed, unexpired token; None for anything else."""
        if not token or token.count(".") != 1 or len(token) > 1024:
            return None
        body, signature = token.split(".")
        try:
            if not hmac.compare_digest(_unb64(signature), self._sign(body)):
                return None
            claims = json.loads(_unb64(body))
            result = Claims(str(claims["u"]), int(claims["exp"]), str(claims["pw"]))
        except (ValueError, KeyError, TypeError):
            return None
        return result if result.expires > self._clock() else None

    def username_for(self, instance: Instance, token: str | None) -> str | None:
        """The logged-in user behind a token: it must be valid, and the account enabled with the same
        password as when the session began."""
        claims = self.read(token)
        if claims is None:
            return None
        with instance.reading() as session:
            user = session.scalar(select(User).where(User.username == claims.username))
            if user is None or user.disabled:
                return None
            if not hmac.compare_digest(self._password_tag(user.password_hash), claims.password_tag):
                return None
            return user.username

    def tag(self, text: str) -> str:
        """A short keyed digest of `text`: equal texts give equal tags; the text cannot be read back,
        nor guessed offline without the secret key."""
        return hmac.new(self._key, b"log-tag\x00" + text.encode(), hashlib.sha256).hexdigest()[:12]

    def _sign(self, body: str) -> bytes:
        return hmac.new(self._key, body.encode(), hashlib.sha256).digest()

    def _password_tag(self, password_hash: str) -> str:
        return _b64(hmac.new(self._key, password_hash.encode(), hashlib.sha256).digest()[:12])


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


def log_in(*, instance: Instance, limiter: LoginLimiter, sessions: Sessions, username: str, password: str) -> str:
    """Check a password under the rate limit and open a session: the session token. AuthError or
    RateLimited otherwise."""
    username = username.strip()
    limiter.check(username)
    try:
        with instance.transaction() as session:
            user = accounts.authenticate(session=session, username=username, password=password)
            token = sessions.issue(user)
    except AuthError:
        limiter.record_failure(username)
        log.info("failed login for %s", _loggable_name(instance, sessions, username))
        raise
    limiter.reset(username)
    return token


def _loggable_name(instance: Instance, sessions: Sessions, username: str) -> str:
    """How a failed login's account name may appear in the log: the name of an existing account, or a
    tag for any other text (which may be a password typed into the wrong field)."""
    with instance.reading() as session:
        known = session.scalar(select(User.username).where(User.username == username))
    if known is not None:
        return f"account {known!r}"
    return f"an unknown account name (tag {sessions.tag(username)})"
