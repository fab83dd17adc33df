"""The web server: the logged-in app at `/`, the public page at `/public/`, and the login routes.

Gradio's own `auth=` puts a whole app behind one login form, which leaves no page for anonymous
visitors, keeps sessions only in server memory and cannot see the client's request. So the two Gradio
apps are mounted in one FastAPI app instead: `/login` checks the password (rate-limited, ui/auth.py)
and sets a signed session cookie; the logged-in app's `auth_dependency` turns that cookie into the
username every callback receives as `gr.Request.username`. See docs/ui.md.

Web-session security (SECURITY.md, "Web sessions, cookies and CSRF"): the login form carries a CSRF
token that every browser login must return; cookies are `Secure` when the request came over https —
directly, or through a proxy listed in `MIMICSAFE_TRUSTED_PROXIES` that says so in X-Forwarded-Proto.

In front of it all, `ui/webguard.py` binds Gradio's session hashes, event ids and files to the caller
and limits the public upload (SECURITY.md, "The web app's surface"); every event goes through the
queue (`api_open=False`), whose limits are then the only way in.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import gradio as gr
import uvicorn
from fastapi import FastAPI, Form, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount

from mimicsafe.context import Instance
from mimicsafe.errors import AuthError, RateLimited
from ui.auth import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    SESSION_SECONDS,
    LoginForms,
    LoginLimiter,
    Sessions,
    log_in,
    log_out,
    log_out_everywhere,
)
from ui.files import page_folders
from ui.login_page import login_page
from ui.throttle import Throttle, counter_storage
from ui.webguard import Mount as GuardedMount
from ui.webguard import WebGuard

LOGIN_PATH = "/login"
LOGOUT_PATH = "/logout"
LOGOUT_EVERYWHERE_PATH = "/logout/everywhere"
PUBLIC_PATH = "/public"
_FOOTER = ["api", "gradio", "settings"]
FORM_EXPIRED = ("This login form has expired or was not sent from this site. Nothing was done; "
                "please log in again.")


def _safe_next(target: str | None) -> str:
    """Only a path on this site may follow a login: no `//host`, no scheme, and no backslash, space or
    control character (browsers drop tabs and newlines, so `/<TAB>/host` would become `//host`)."""
    if (target and target.startswith("/") and not target.startswith("//")
            and not any(c == "\\" or c.isspace() or not c.isprintable() for c in target)):
        return target
    return "/"


def _from_a_browser(request: Request) -> bool:
    """Browsers send `Origin` with every POST, and `Sec-Fetch-Site` with every request (a page on another
    site cannot remove them). A client without either (gradio_client, curl) cannot be steered by another
    site, and so needs no CSRF token."""
    return "origin" in request.headers or "sec-fetch-site" in request.headers


def _over_https(request: Request) -> bool:
    """https to us, or to a trusted proxy that said so (uvicorn applies X-Forwarded-Proto only for the
    addresses in MIMICSAFE_TRUSTED_PROXIES; see `WebApp.launch`)."""
    return request.url.scheme == "https"


def create_server(instance: Instance, *, main: gr.Blocks, public: gr.Blocks) -> WebGuard:
    settings = instance.settings
    sessions = Sessions(settings.secret_key.get_secret_value())
    limiter = LoginLimiter.from_settings(settings)
    forms = LoginForms(settings.secret_key.get_secret_value())
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    # No cross-origin access at all: the pages call their own origin only. Without a CORS middleware of
    # ours, Gradio adds one that, on any host but localhost, allows every origin *with credentials* — a
    # sibling subdomain (same site, so the SameSite=Lax cookie goes along) could act as the visitor.
    app.add_middleware(CORSMiddleware, allow_origins=[])

    def form_page(request: Request, *, next_path: str | None, error: str = "", username: str = "",
                  status_code: int = 200) -> Response:
        """The login form with a CSRF token, and the cookie it must come back with."""
        nonce = request.cookies.get(LOGIN_CSRF_COOKIE)
        if nonce is None or not forms.usable_nonce(nonce):
            nonce = forms.new_nonce()  # kept when usable, so that two open login tabs both work
        page = login_page(next_path=_safe_next(next_path), public_path=PUBLIC_PATH + "/",
                          csrf_token=forms.token_for(nonce), error=error, username=username)
        response = HTMLResponse(page, status_code=status_code)
        response.set_cookie(LOGIN_CSRF_COOKIE, nonce, httponly=True, samesite="strict", secure=_over_https(request),
                            path=LOGIN_PATH)
        return response

    def session_user(request: Request) -> str | None:
        return sessions.username_for(instance, request.cookies.get(SESSION_COOKIE))

    @app.middleware("http")
    async def send_strangers_to_login(request: Request, call_next):  # type: ignore[no-untyped-def]
        if request.method in ("GET", "HEAD") and request.url.path == "/" and session_user(request) is None:
            return RedirectResponse(LOGIN_PATH, status_code=303)
        return await call_next(request)

    @app.get(LOGIN_PATH, response_class=HTMLResponse)
    def show_login(request: Request, next: str = "/") -> Response:
        if session_user(request) is not None:
            return RedirectResponse(_safe_next(next), status_code=303)
        return form_page(request, next_path=next)

    @app.post(LOGIN_PATH)
    def do_login(request: Request, username: str = Form(""), password: str = Form(""),
                 next: str | None = Form(None), csrf_token: str | None = Form(None)) -> Response:
        """A browser form sends `next` and gets a redirect or the form again; API clients (gradio_client)
        send only the credentials and get JSON. Either way the session is a cookie. A browser must send
        the form's CSRF token (checked before the password, so a forged form learns nothing)."""
        browser = next is not None
        if _from_a_browser(request) and not forms.valid(request.cookies.get(LOGIN_CSRF_COOKIE), csrf_token):
            if browser:
                return form_page(request, next_path=next, error=FORM_EXPIRED, username=username, status_code=403)
            return JSONResponse({"detail": FORM_EXPIRED}, status_code=403)
        try:
            token = log_in(instance=instance, limiter=limiter, sessions=sessions, username=username, password=password,
                           client=request.client.host if request.client else "unknown")
        except (AuthError, RateLimited) as exc:
            status = 429 if isinstance(exc, RateLimited) else 401
            if browser:
                return form_page(request, next_path=next, error=str(exc), username=username, status_code=status)
            return JSONResponse({"detail": str(exc)}, status_code=status)
        response: Response = (RedirectResponse(_safe_next(next), status_code=303) if browser
                              else JSONResponse({"success": True}))
        response.set_cookie(SESSION_COOKIE, token, max_age=SESSION_SECONDS, httponly=True, samesite="lax",
                            secure=_over_https(request), path="/")
        return response

    @app.get(LOGOUT_PATH)
    def do_logout(request: Request) -> Response:
        log_out(instance=instance, sessions=sessions, token=request.cookies.get(SESSION_COOKIE))  # ends copies too
        response = RedirectResponse(LOGIN_PATH, status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.post(LOGOUT_EVERYWHERE_PATH)
    def do_logout_everywhere(request: Request) -> Response:
        """The page's "Log out everywhere" form: a POST, so another site cannot send it with the cookie."""
        log_out_everywhere(instance=instance, sessions=sessions, token=request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse(LOGIN_PATH, status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.get(PUBLIC_PATH)
    def to_public_page() -> Response:
        return RedirectResponse(PUBLIC_PATH + "/", status_code=307)

    # Each page keeps its files in a folder of its own under Gradio's temporary folder (which
    # `mimicsafe serve` puts under home, owner-only): the public page cannot serve the private folder at
    # all, and WebGuard serves either page's files only to the caller they were given to.
    private_dir, public_dir = page_folders()
    common = {"max_file_size": settings.max_upload_bytes, "allowed_paths": [],
              "app_kwargs": {"docs_url": None, "redoc_url": None, "openapi_url": None},
              "ssr_mode": False, "footer_links": _FOOTER, "run_history": False, "show_error": False}
    for blocks, folder in ((public, public_dir), (main, private_dir)):
        for block in blocks.blocks.values():
            block.GRADIO_CACHE = str(folder)  # where Gradio writes what a component shows
    gr.mount_gradio_app(app, public, path=PUBLIC_PATH, blocked_paths=[str(settings.home_dir), str(private_dir)],
                        **common)
    _mounted_app(app).uploaded_file_dir = str(public_dir)
    gr.mount_gradio_app(app, main, path="/", auth_dependency=session_user, blocked_paths=[str(settings.home_dir)],
                        **common)
    _mounted_app(app).uploaded_file_dir = str(private_dir)
    storage = counter_storage(settings)
    return WebGuard(  # an ASGI app in front of the FastAPI app
        app, mounts=[GuardedMount(PUBLIC_PATH, public=True, api_names=_api_names(public)),
                     GuardedMount("", public=False, api_names=_api_names(main))],
        user_of=lambda token: sessions.username_for(instance, token), session_cookie=SESSION_COOKIE,
        max_upload_bytes=settings.max_upload_bytes,
        upload_throttle=Throttle.per_hour("public-upload", settings.public_uploads_per_hour, storage),
        spool_dir=lambda: str(public_dir), secure=lambda scope: scope.get("scheme") == "https")


def _mounted_app(app: FastAPI) -> Any:
    """The Gradio app `gr.mount_gradio_app` has just mounted (the last route)."""
    mounted = app.routes[-1]
    assert isinstance(mounted, Mount)
    return mounted.app


def _api_names(blocks: gr.Blocks) -> set[str]:
    return {fn.api_name for fn in blocks.fns.values() if isinstance(fn.api_name, str)}


class WebApp:
    """Both pages and the login routes, served by uvicorn in a background thread.

    It answers the calls `mimicsafe serve` makes — `queue`, `launch`, `block_thread`, `close` — the
    way a single `gr.Blocks` would.
    """

    def __init__(self, instance: Instance, *, main: gr.Blocks, public: gr.Blocks) -> None:
        self.instance, self.main, self.public = instance, main, public
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.local_url: str | None = None

    def queue(self, *, default_concurrency_limit: int = 4) -> WebApp:
        """Every event goes through the queue and its concurrency limits: `api_open=False` closes
        Gradio's `/run/<name>` route, which would run an event at once, past every limit. The public
        queue holds at most `public_queue_size` waiting checks; more are refused (503)."""
        settings = self.instance.settings
        self.main.queue(default_concurrency_limit=default_concurrency_limit, api_open=False)
        self.public.queue(default_concurrency_limit=default_concurrency_limit, api_open=False,
                          max_size=settings.public_queue_size)
        return self

    def launch(self, *, server_name: str = "127.0.0.1", server_port: int = 7860, prevent_thread_lock: bool = False,
               show_error: bool = False, quiet: bool = False) -> None:
        """Start serving; return once the port answers (or at once block, without `prevent_thread_lock`).
        `show_error` and `quiet` are accepted for `gr.Blocks.launch` compatibility: refusals always show
        their message and unexpected errors never do; the server logs only warnings."""
        app = create_server(self.instance, main=self.main, public=self.public)
        # X-Forwarded-Proto/-For are believed only from the configured proxies (none: not at all), so
        # that behind a TLS proxy cookies are Secure and a client elsewhere cannot claim https.
        proxies = self.instance.settings.trusted_proxy_list
        config = uvicorn.Config(app, host=server_name, port=server_port, log_level="warning", lifespan="on",
                                proxy_headers=bool(proxies), forwarded_allow_ips=proxies or None)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="mimicsafe-web", daemon=True)
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise OSError(f"could not serve on {server_name}:{server_port} (is the port in use?)")
            time.sleep(0.05)
        self.local_url = f"http://{server_name}:{server_port}/"
        if not prevent_thread_lock:
            self.block_thread()

    def block_thread(self) -> None:
        try:
            while self._thread is not None and self._thread.is_alive():
                self._thread.join(0.5)
        except KeyboardInterrupt:
            self.close()

    def close(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None
