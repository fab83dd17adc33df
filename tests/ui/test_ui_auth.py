"""Logging in: server-side sessions, the rate limit over HTTP (tests/security/test_logins.py has the rest)."""

from __future__ import annotations

import httpx

from mimicsafe import accounts
from ui.auth import SESSION_COOKIE, SESSION_SECONDS, Sessions
from ui.server import _safe_next


def test_a_session_ends_when_the_account_is_disabled_or_its_password_changes(instance) -> None:
    sessions = Sessions("secret")
    with instance.transaction() as session:
        token = sessions.issue(session, accounts.create_user(session=session, username="dave", role="artist",
                                                             password="dave-password-1"))
    assert sessions.username_for(instance, token) == "dave"
    with instance.transaction() as session:
        accounts.set_password(session=session, username="dave", password="dave-password-2", actor="root")
    assert sessions.username_for(instance, token) is None
    with instance.transaction() as session:
        token = sessions.issue(session, accounts.get_user(session=session, username="dave"))
    assert sessions.username_for(instance, token) == "dave"
    with instance.transaction() as session:
        accounts.set_disabled(session=session, username="dave", disabled=True, actor="root")
    assert sessions.username_for(instance, token) is None
    with instance.transaction() as session:
        accounts.set_disabled(session=session, username="dave", disabled=False, actor="root")
    assert sessions.username_for(instance, token) is None  # enabling again does not bring old sessions back


def test_sessions_expire_and_odd_tokens_are_not_looked_up(instance) -> None:
    clock = Clock()
    sessions = Sessions("secret", clock=clock)
    with instance.transaction() as session:
        token = sessions.issue(session, accounts.create_user(session=session, username="dave", role="artist",
                                                             password="dave-password-1"))
    assert sessions.username_for(instance, token) == "dave"
    for bad in (token[:-1], token + "A", "", None, "x" * 43, token[:-1] + "\n", "a.b"):
        assert sessions.username_for(instance, bad) is None, bad
    clock.now += SESSION_SECONDS + 1
    assert sessions.username_for(instance, token) is None


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


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
