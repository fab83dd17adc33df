"""Failed-login limits: per account name *and* client address, and a higher cap per account name.

Counting by account name alone (as before) let anyone lock the owner out with ten wrong passwords a
minute. Here one client gets `login_attempts_per_minute` failures per account name; other clients,
the owner's included, are not affected. Guessing spread over many addresses meets the second limit,
`login_attempts_per_account_per_hour` failures per account from all clients together. That one does
stop the owner too, so it is set above what one client can reach (60 × the per-client limit): only an
attacker with many addresses can trip it, and then the account is better locked than guessed.

Names are compared as `accounts.normalise_username` makes them (`BOB`, ` bob` and `bob ` are `bob`),
and only a keyed digest of a name or address is stored, never the text (a password typed into the
name field stays unreadable). The counts are kept by the maintained `limits` library (moving windows)
in `settings.login_limit_url`: the queue's Redis when the queue uses Redis, so every server shares one
count; otherwise the memory of the one `mimicsafe serve` process — the embedded default runs a single
server, and a restart forgiving a minute of failures costs little next to a table written on every
failed login. Give several servers without Redis a shared `MIMICSAFE_LOGIN_LIMIT_STORAGE`.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Literal

from limits import RateLimitItem, RateLimitItemPerHour, RateLimitItemPerMinute
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from mimicsafe.accounts import normalise_username
from mimicsafe.errors import RateLimited
from mimicsafe.settings import Settings

Scope = Literal["client", "account"]


@dataclass(frozen=True)
class Lockout:
    """A limit a failure has just filled: from now on `scope` is refused until its window moves on."""

    scope: Scope
    seconds: int


class LoginLimiter:
    def __init__(self, *, per_client_per_minute: int, per_account_per_hour: int, secret: str,
                 storage_url: str = "memory://") -> None:
        self._per_client = RateLimitItemPerMinute(per_client_per_minute)
        self._per_account = RateLimitItemPerHour(per_account_per_hour)
        self._limiter = MovingWindowRateLimiter(storage_from_string(storage_url))
        self._key = hashlib.sha256(b"mimicsafe-login-limit\x00" + secret.encode()).digest()

    @classmethod
    def from_settings(cls, settings: Settings) -> LoginLimiter:
        return cls(per_client_per_minute=settings.login_attempts_per_minute,
                   per_account_per_hour=settings.login_attempts_per_account_per_hour,
                   secret=settings.secret_key.get_secret_value(), storage_url=settings.login_limit_url)

    def check(self, username: str, client: str) -> None:
        """RateLimited if this client, or everyone, has used up the failures allowed for this name."""
        for scope, item, ids in self._limits(username, client):
            if not self._limiter.test(item, *ids):
                wait = max(1, int(self._limiter.get_window_stats(item, *ids).reset_time - time.time()) + 1)
                whom = "from your address" if scope == "client" else "from everywhere"
                raise RateLimited(f"too many failed logins for this account {whom}; try again in {wait} s")

    def record_failure(self, username: str, client: str) -> list[Lockout]:
        """Count one failure; the limits this failure has just filled (for the audit log)."""
        filled = []
        for scope, item, ids in self._limits(username, client):
            self._limiter.hit(item, *ids)
            stats = self._limiter.get_window_stats(item, *ids)
            if stats.remaining == 0:
                filled.append(Lockout(scope, max(1, int(stats.reset_time - time.time()) + 1)))
        return filled

    def reset(self, username: str, client: str) -> None:
        """A right password clears that client's count (the account-wide count stays: it measures guessing)."""
        scope, item, ids = self._limits(username, client)[0]
        self._limiter.clear(item, *ids)

    def _limits(self, username: str, client: str) -> list[tuple[Scope, RateLimitItem, tuple[str, ...]]]:
        name = self._digest("name", normalise_username(username))
        return [("client", self._per_client, ("login-client", name, self._digest("client", client))),
                ("account", self._per_account, ("login-account", name))]

    def _digest(self, kind: str, text: str) -> str:
        return hmac.new(self._key, f"{kind}\x00{text}".encode(), hashlib.sha256).hexdigest()[:24]
