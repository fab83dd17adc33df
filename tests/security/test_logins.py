"""Sessions and login (issue 17 §5): revocable server-side sessions, failed-login limits that a client
elsewhere cannot turn against the owner, names that match the rule in full, and the audit of both.

The login routes are served on loopback with 127.0.0.1 as the trusted proxy, so each request can speak
for a different client address through X-Forwarded-For (as a TLS proxy in front of the app would).
"""

from __future__ import annotations

import hashlib

import httpx
import pytest
from sqlalchemy import select

from mimicsafe import accounts
from mimicsafe.context import Instance
from mimicsafe.db.models import AuditEntry, WebSession
from mimicsafe.errors import AuthError, RateLimited, ValidationFailed
from mimicsafe.logins import LoginLimiter
from tests.security.test_web_sessions import PASSWORD, serving
from ui.auth import SESSION_COOKIE, Sessions, log_in

ATTACKER = {"X-Forwarded-For": "203.0.113.9"}
OWNER = {"X-Forwarded-For": "198.51.100.7"}


@pytest.fixture
def grace(instance: Instance) -> str:
    with instance.transaction() as session:
        accounts.create_user(session=session, username="grace", role="artist", password=PASSWORD)
    return "grace"


def _log_in(http: httpx.Client, username: str, password: str, headers: dict[str, str]) -> httpx.Response:
    return http.post("/login", data={"username": username, "password": password}, headers=headers)


def _audit(instance: Instance, action: str) -> list[AuditEntry]:
    with instance.reading() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)))


def test_someone_elsewhere_cannot_lock_the_owner_out(instance: Instance, grace: str) -> None:
    limit = instance.settings.login_attempts_per_minute
    with serving(instance, trusted_proxies="127.0.0.1") as url, httpx.Client(base_url=url) as http:
        spellings = ["grace", "GRACE", " grace", "grace "]  # every spelling counts as grace
        for n in range(limit):
            assert _log_in(http, spellings[n % 4], "not-her-password", ATTACKER).status_code == 401
        refused = _log_in(http, "Grace", PASSWORD, ATTACKER)  # even the right password, from there
        assert refused.status_code == 429 and "from your address" in refused.json()["detail"]
        owner = _log_in(http, "grace", PASSWORD, OWNER)
        assert owner.status_code == 200 and SESSION_COOKIE in owner.cookies
    (locked,) = _audit(instance, "user.login_locked")
    assert locked.subject == "grace" and locked.details["scope"] == "client"
    assert locked.details["client"] == "203.0.113.9"


def test_guessing_from_many_addresses_meets_the_account_cap(instance: Instance, grace: str) -> None:
    with serving(instance, trusted_proxies="127.0.0.1", login_attempts_per_account_per_hour=5) as url, \
            httpx.Client(base_url=url) as http:
        for n in range(5):
            assert _log_in(http, "grace", "guess", {"X-Forwarded-For": f"203.0.113.{n}"}).status_code == 401
        capped = _log_in(http, "grace", "guess", {"X-Forwarded-For": "203.0.113.200"})
        assert capped.status_code == 429 and "from everywhere" in capped.json()["detail"]
    (locked,) = _audit(instance, "user.login_locked")
    assert locked.details["scope"] == "account"


def test_names_are_counted_as_the_account_they_name() -> None:
    limiter = LoginLimiter(per_client_per_minute=3, per_account_per_hour=100, secret="s")
    for typed in ("BOB", " bob", "bob "):
        limiter.check(typed, "10.0.0.1")
        limiter.record_failure(typed, "10.0.0.1")
    with pytest.raises(RateLimited):
        limiter.check("bob", "10.0.0.1")
    limiter.check("bob", "10.0.0.2")  # another client
    limiter.check("erin", "10.0.0.1")  # another account
    limiter.reset("Bob", "10.0.0.1")  # a right password clears that client's count
    limiter.check("bob", "10.0.0.1")


def test_a_name_logs_in_as_typed_with_case_and_spaces(instance: Instance, grace: str) -> None:
    sessions = Sessions("secret")
    limiter = LoginLimiter(per_client_per_minute=10, per_account_per_hour=100, secret="secret")
    token = log_in(instance=instance, limiter=limiter, sessions=sessions, username=" GRACE ", password=PASSWORD)
    assert sessions.username_for(instance, token) == "grace"


def test_logout_ends_every_copy_of_the_cookie(instance: Instance, grace: str) -> None:
    with serving(instance) as url, httpx.Client(base_url=url) as browser:
        assert _log_in(browser, grace, PASSWORD, {}).status_code == 200
        stolen = browser.cookies[SESSION_COOKIE]
        with httpx.Client(base_url=url, cookies={SESSION_COOKIE: stolen}) as thief:
            assert thief.get("/config").status_code == 200
            assert browser.get("/logout").status_code == 303
            assert thief.get("/config").status_code == 401  # the copy ended with the original
    (ended,) = _audit(instance, "user.logout")
    assert ended.subject == "grace"


def test_log_out_everywhere_ends_every_session_of_the_account(instance: Instance, grace: str) -> None:
    with serving(instance) as url, httpx.Client(base_url=url) as here, httpx.Client(base_url=url) as elsewhere:
        for http in (here, elsewhere):
            assert _log_in(http, grace, PASSWORD, {}).status_code == 200
        answer = here.post("/logout/everywhere")
        assert answer.status_code == 303 and answer.headers["location"] == "/login"
        assert here.get("/config").status_code == 401 and elsewhere.get("/config").status_code == 401
    (ended,) = _audit(instance, "user.sessions_ended")
    assert ended.actor == grace and ended.details == {"sessions": 2, "why": "log out everywhere"}


@pytest.mark.parametrize("how", ["password reset", "admin ends sessions", "disabled"])
def test_an_account_change_ends_its_sessions(instance: Instance, grace: str, how: str) -> None:
    with serving(instance) as url, httpx.Client(base_url=url) as first, httpx.Client(base_url=url) as second:
        for http in (first, second):
            assert _log_in(http, grace, PASSWORD, {}).status_code == 200
            assert http.get("/config").status_code == 200
        with instance.transaction() as session:
            if how == "password reset":
                accounts.set_password(session=session, username=grace, password="a-new-password-9", actor="root")
            elif how == "admin ends sessions":
                assert accounts.end_sessions(session=session, username=grace, actor="root", why="test") == 2
            else:
                accounts.set_disabled(session=session, username=grace, disabled=True, actor="root")
        assert first.get("/config").status_code == 401 and second.get("/config").status_code == 401
    (ended,) = _audit(instance, "user.sessions_ended")
    assert ended.subject == grace and ended.details["sessions"] == 2


def test_the_database_holds_no_usable_cookie(instance: Instance, grace: str) -> None:
    sessions = Sessions("secret")
    with instance.transaction() as session:
        token = sessions.issue(session, accounts.get_user(session=session, username=grace))
    with instance.reading() as session:
        (stored,) = session.scalars(select(WebSession.token_sha256))
    assert stored == hashlib.sha256(token.encode()).hexdigest() and token not in stored


@pytest.mark.parametrize("name", ["zed\n", "zed\r\n", " zed", "zed ", "Zed", "zed\x00", "zé"])
def test_names_match_the_rule_in_full(instance: Instance, name: str) -> None:
    with instance.transaction() as session, pytest.raises(ValidationFailed, match="username"):
        accounts.create_user(session=session, username=name, role="artist", password="correct horse")


def test_wrong_passwords_are_refused_with_one_message(instance: Instance, grace: str) -> None:
    sessions = Sessions("secret")
    limiter = LoginLimiter(per_client_per_minute=10, per_account_per_hour=100, secret="secret")
    for name in ("grace", "nobody"):
        with pytest.raises(AuthError, match="wrong username or password"):
            log_in(instance=instance, limiter=limiter, sessions=sessions, username=name, password="nope")


def test_failed_login_counts_go_where_every_server_sees_them(settings) -> None:
    embedded = settings.model_copy(update={"queue_url": None, "login_limit_storage": None})
    assert embedded.login_limit_url == "memory://"  # the embedded default: one server process
    redis = settings.model_copy(update={"queue_url": "redis://queue.internal:6379/0"})
    assert redis.login_limit_url == "redis://queue.internal:6379/0"
    chosen = settings.model_copy(update={"login_limit_storage": "redis://limits:6379/1"})
    assert chosen.login_limit_url == "redis://limits:6379/1"
