"""Logging in: the rate limit, the signed session cookie, and both over HTTP."""

from __future__ import annotations

import httpx
import pytest

from mimicsafe import accounts
from mimicsafe.db.models import User
from mimicsafe.errors import RateLimited
from ui.auth import SESSION_COOKIE, SESSION_SECONDS, LoginLimiter, Sessions
from ui.server import _safe_next


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_limiter_allows_n_failures_per_minute_per_account() -> None:
    clock = Clock()
    limiter = LoginLimiter(3, clock=clock)
    for _ in range(3):
        limiter.check("dave")
        limiter.record_failure("Dave ")  # names are compared trimmed and case-folded
    with pytest.raises(RateLimited, match="try again in 61 s"):
        limiter.check("dave")
    limiter.check("erin")  # other accounts are not affected
    clock.now += 30
    with pytest.raises(RateLimited, match="try again in 31 s"):
        limiter.check("dave")
    clock.now += 31
    limiter.check("dave")
    limiter.record_failure("dave")
    limiter.reset("dave")  # a successful login clears the count
    limiter.check("dave")


def test_the_limiter_forgets_quiet_names() -> None:
    clock = Clock()
    limiter = LoginLimiter(3, clock=clock)
    for n in range(1000):
        limiter.record_failure(f"guess{n}")
    clock.now += 61
    limiter.check("someone")
    assert len(limiter._failures) == 1


def _user(name: str = "dave", password_hash: str = "$argon2id$v=19$m=65536,t=3,p=4$aaaa$bbbb") -> User:
    return User(username=name, role="artist", password_hash=password_hash, disabled=False)


def test_session_tokens_are_signed_and_expire() -> None:
    clock = Clock()
    sessions = Sessions("secret-one", clock=clock)
    token = sessions.issue(_user())
    assert sessions.read(token).username == "dave"
    body, signature = token.split(".")
    forged_body = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    for bad in (f"{forged_body}.{signature}", f"{body}.{signature[:-1]}", "", "x", "a.b.c", "not base64.at all"):
        assert sessions.read(bad) is None, bad
    assert Sessions("secret-two", clock=clock).read(token) is None
    clock.now += SESSION_SECONDS + 1
    assert sessions.read(token) is None


def test_a_session_ends_when_the_account_is_disabled_or_its_password_changes(instance) -> None:
    sessions = Sessions("secret")
    with instance.transaction() as session:
        token = sessions.issue(accounts.create_user(session=session, username="dave", role="artist",
                                                    password="dave-password-1"))
    assert sessions.username_for(instance, token) == "dave"
    with instance.transaction() as session:
        accounts.set_password(session=session, username="dave", password="dave-password-2", actor="root")
    assert sessions.username_for(instance, token) is None
    with instance.transaction() as session:
        token = sessions.issue(accounts.get_user(session=session, username="dave"))
        accounts.set_disabled(session=session, username="dave", disabled=True, actor="root")
    assert sessions.username_for(instance, token) is None


def test_only_local_paths_follow_a_login() -> None:
    assert _safe_next("/public/") == "/public/"
    for hostile in ("//evil.example/", "https://evil.example/", "/\\evil.example", "", None, "javascript:x",
                    "/\t/evil.example", "/\n/evil.example", "/ /evil.example"):
        assert _safe_next(hostile) == "/"


def test_logins_are_rate_limited_over_http(world) -> None:
    limit = world.instance.settings.login_attempts_per_minute
    with world.instance.transaction() as session:
        accounts.create_user(session=session, username="frank", role="artist", password="frank-password-1")
    with httpx.Client(base_url=world.url) as http:
        for _ in range(limit):
            wrong = http.post("/login", data={"username": "frank", "password": "not-his-password"})
            assert wrong.status_code == 401 and wrong.json() == {"detail": "wrong username or password"}
        blocked = http.post("/login", data={"username": "frank", "password": "frank-password-1"})
        assert blocked.status_code == 429 and "too many failed logins" in blocked.json()["detail"]
        assert SESSION_COOKIE not in blocked.cookies
        other = http.post("/login", data={"username": "bob", "password": "bob-password-22"})
        assert other.status_code == 200 and SESSION_COOKIE in other.cookies
        cookie = other.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie
