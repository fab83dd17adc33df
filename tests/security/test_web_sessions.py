"""Web sessions: the `Secure` cookie flag behind a TLS proxy, CSRF on the login form, and what a failed
login writes to the log (SECURITY.md, "Web sessions, cookies and CSRF").

The real login routes (ui/server.py) are served by uvicorn on loopback, as `mimicsafe serve` does,
in front of two empty Gradio pages: what is tested here is the server around them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager

import gradio as gr
import httpx
import pytest

from mimicsafe import accounts
from mimicsafe.context import Instance
from mimicsafe.errors import AuthError
from tests.servers import free_port_number
from ui.auth import LOGIN_CSRF_COOKIE, SESSION_COOKIE, LoginForms, LoginLimiter, Sessions, log_in
from ui.server import FORM_EXPIRED, WebApp

PASSWORD = "grace-password-1"


@pytest.fixture
def grace(instance: Instance) -> str:
    with instance.transaction() as session:
        accounts.create_user(session=session, username="grace", role="artist", password=PASSWORD)
    return "grace"


@contextmanager
def serving(instance: Instance, **settings: object) -> Iterator[str]:
    """The login routes on a free loopback port, with `settings` changed; yields the base URL."""
    changed = Instance(settings=instance.settings.model_copy(update=settings), engine=instance.engine,
                       sessions=instance.sessions, blobs=instance.blobs)
    with gr.Blocks() as main, gr.Blocks() as public:
        gr.Markdown("empty")
    app = WebApp(changed, main=main, public=public)
    port = free_port_number()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        app.close()


def _cookie_header(response: httpx.Response, name: str) -> str:
    (header,) = [h for h in response.headers.get_list("set-cookie") if h.startswith(name + "=")]
    return header.lower()


def _token_in(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "the login form has no CSRF token"
    return match.group(1)


HTTPS = {"X-Forwarded-Proto": "https"}


def test_cookies_are_secure_when_a_trusted_proxy_says_https(instance: Instance, grace: str) -> None:
    with serving(instance, trusted_proxies="127.0.0.1") as url, httpx.Client(base_url=url) as http:
        behind_tls = http.post("/login", data={"username": grace, "password": PASSWORD}, headers=HTTPS)
        assert behind_tls.status_code == 200
        assert "; secure" in _cookie_header(behind_tls, SESSION_COOKIE)
        assert "; secure" in _cookie_header(http.get("/login", headers=HTTPS), LOGIN_CSRF_COOKIE)
        plain = http.post("/login", data={"username": grace, "password": PASSWORD})  # the proxy says http
        assert "secure" not in _cookie_header(plain, SESSION_COOKIE)


@pytest.mark.parametrize("trusted", ["10.9.8.7", ""])
def test_an_untrusted_client_cannot_claim_https(instance: Instance, grace: str, trusted: str) -> None:
    """Loopback is not the configured proxy (or none is): the header is ignored, no Secure flag."""
    with serving(instance, trusted_proxies=trusted) as url, httpx.Client(base_url=url) as http:
        assert "secure" not in _cookie_header(http.get("/login", headers=HTTPS), LOGIN_CSRF_COOKIE)
        answer = http.post("/login", data={"username": grace, "password": PASSWORD}, headers=HTTPS)
        assert answer.status_code == 200
        cookie = _cookie_header(answer, SESSION_COOKIE)
        assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie


def test_a_browser_login_needs_the_forms_token(instance: Instance, grace: str) -> None:
    with serving(instance) as url, httpx.Client(base_url=url, headers={"Origin": url}) as http:
        form = {"username": grace, "password": PASSWORD, "next": "/"}
        without = http.post("/login", data=form)  # no cookie, no token
        assert without.status_code == 403 and FORM_EXPIRED in without.text
        assert SESSION_COOKIE not in without.cookies

        page = http.get("/login")  # sets the nonce cookie; the form carries its token
        token = _token_in(page.text)
        wrong = http.post("/login", data={**form, "csrf_token": token[:-2] + ("AA" if token[-2:] != "AA" else "BB")})
        assert wrong.status_code == 403 and FORM_EXPIRED in wrong.text and SESSION_COOKIE not in wrong.cookies
        other = LoginForms("another secret").token_for(http.cookies[LOGIN_CSRF_COOKIE])
        assert http.post("/login", data={**form, "csrf_token": other}).status_code == 403

        good = http.post("/login", data={**form, "csrf_token": _token_in(wrong.text)})  # the refusal's form works
        assert good.status_code == 303 and good.headers["location"] == "/"
        assert SESSION_COOKIE in good.cookies


def test_a_forged_cross_site_login_is_refused(instance: Instance, grace: str) -> None:
    """A page elsewhere posts the attacker's credentials into the victim's browser: it has a token of
    its own (from its own visit) but not the victim's cookie, or neither."""
    with serving(instance) as url:
        with httpx.Client(base_url=url) as attacker:
            attackers_token = _token_in(attacker.get("/login").text)
        browser = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
        with httpx.Client(base_url=url, headers=browser) as victim:
            victim.get("/login")  # the victim's own nonce cookie
            for data in ({"username": grace, "password": PASSWORD, "csrf_token": attackers_token},
                         {"username": grace, "password": PASSWORD, "next": "/", "csrf_token": attackers_token}):
                forged = victim.post("/login", data=data)
                assert forged.status_code == 403 and FORM_EXPIRED in forged.text
                assert SESSION_COOKIE not in forged.cookies


def test_api_clients_log_in_without_a_token(instance: Instance, grace: str) -> None:
    """gradio_client and scripts send no Origin or Sec-Fetch-* header: no other site can drive them."""
    with serving(instance) as url, httpx.Client(base_url=url) as http:
        answer = http.post("/login", data={"username": grace, "password": PASSWORD})
        assert answer.status_code == 200 and answer.json() == {"success": True}
        assert SESSION_COOKIE in answer.cookies


def test_login_tokens_are_bound_to_the_nonce_and_the_key() -> None:
    forms = LoginForms("secret")
    nonce = forms.new_nonce()
    token = forms.token_for(nonce)
    assert forms.valid(nonce, token)
    assert not forms.valid(forms.new_nonce(), token)
    assert not LoginForms("other").valid(nonce, token)
    for bad_nonce in (None, "", "short", "x" * 65, "a b" * 10, nonce + "\n"):
        assert not forms.valid(bad_nonce, token)
    assert not forms.valid(nonce, None) and not forms.valid(nonce, "")


def test_a_failed_login_never_logs_the_text_of_an_unknown_name(instance: Instance, grace: str,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    sessions = Sessions("secret")
    limiter = LoginLimiter(per_client_per_minute=100, per_account_per_hour=1000, secret="secret")
    typed_password = "correct horse battery staple 77"  # a password typed into the name field
    caplog.set_level(logging.INFO, logger="ui.auth")
    for name, password in ((typed_password, "x"), (typed_password, "y"), (grace, "wrong-password-1")):
        with pytest.raises(AuthError):
            log_in(instance=instance, limiter=limiter, sessions=sessions, username=name, password=password)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert all(typed_password not in line and "correct horse" not in line for line in lines)
    assert lines[0] == lines[1] and re.fullmatch(r"failed login for an unknown account name \(tag [0-9a-f]{12}\)",
                                                 lines[0])  # the same text gives the same tag
    assert lines[2] == "failed login for account 'grace'"


def test_no_other_origin_may_call_the_app(instance: Instance, grace: str) -> None:
    """Gradio's own CORS handling, on a public host name, grants credentialed access to any origin; the
    server's refuses every other origin, so a same-site subdomain cannot ride the session cookie."""
    public_host = {"Host": "mimicsafe.example", "Origin": "https://other.mimicsafe.example"}
    with serving(instance) as url, httpx.Client(base_url=url) as http:
        asking = {**public_host, "Access-Control-Request-Method": "POST",
                  "Access-Control-Request-Headers": "content-type"}
        preflight = http.options("/gradio_api/queue/join", headers=asking)
        assert preflight.status_code == 400 and "access-control-allow-origin" not in preflight.headers
        simple = http.get("/public/config", headers=public_host)
        assert "access-control-allow-origin" not in simple.headers
        assert "access-control-allow-credentials" not in simple.headers
