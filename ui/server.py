"""The web server: the logged-in app at `/`, the public page at `/public/`, and the login routes.

Gradio's own `auth=` puts a whole app behind one login form, which leaves no page for anonymous
visitors, keeps sessions only in server memory and cannot see the client's request. So the two Gradio
apps are mounted in one FastAPI app instead: `/login` checks the password (rate-limited, ui/auth.py)
and sets a signed session cookie; the logged-in app's `auth_dependency` turns that cookie into the
username every callback receives as `gr.Request.username`. See docs/ui.md.
"""

from __future__ import annotations

import threading
import time

import gradio as gr
import uvicorn
from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from mimicsafe.context import Instance
from mimicsafe.errors import AuthError, RateLimited
from ui.auth import SESSION_COOKIE, SESSION_SECONDS, LoginLimiter, Sessions, log_in
from ui.login_page import login_page

LOGIN_PATH = "/login"
LOGOUT_PATH = "/logout"
PUBLIC_PATH = "/public"
_FOOTER = ["api", "gradio", "settings"]


def _safe_next(target: str | None) -> str:
    """Only a path on this site may follow a login: no `//host`, no scheme, and no backslash, space or
    control character (browsers drop tabs and newlines, so `/<TAB>/host` would become `//host`)."""
    if (target and target.startswith("/") and not target.startswith("//")
            and not any(c == "\\" or c.isspace() or not c.isprintable() for c in target)):
        return target
    return "/"


def create_server(instance: Instance, *, main: gr.Blocks, public: gr.Blocks) -> FastAPI:
    settings = instance.settings
    sessions = Sessions(settings.secret_key.get_secret_value())
    limiter = LoginLimiter(settings.login_attempts_per_minute)
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

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
        return HTMLResponse(login_page(next_path=_safe_next(next), public_path=PUBLIC_PATH + "/"))

    @app.post(LOGIN_PATH)
    def do_login(request: Request, username: str = Form(""), password: str = Form(""),
                 next: str | None = Form(None)) -> Response:
        """A browser form sends `next` and gets a redirect or the form again; API clients (gradio_client)
        send only the credentials and get JSON. Either way the session is a cookie."""
        browser = next is not None
        try:
            token = log_in(instance=instance, limiter=limiter, sessions=sessions, username=username, password=password)
        except (AuthError, RateLimited) as exc:
            status = 429 if isinstance(exc, RateLimited) else 401
            if browser:
                return HTMLResponse(login_page(next_path=_safe_next(next), public_path=PUBLIC_PATH + "/",
                                               error=str(exc), username=username), status_code=status)
            return JSONResponse({"detail": str(exc)}, status_code=status)
        response: Response = (RedirectResponse(_safe_next(next), status_code=303) if browser
                              else JSONResponse({"success": True}))
        response.set_cookie(SESSION_COOKIE, token, max_age=SESSION_SECONDS, httponly=True, samesite="lax",
                            secure=request.url.scheme == "https", path="/")
        return response

    @app.get(LOGOUT_PATH)
    def do_logout() -> Response:
        response = RedirectResponse(LOGIN_PATH, status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.get(PUBLIC_PATH)
    def to_public_page() -> Response:
        return RedirectResponse(PUBLIC_PATH + "/", status_code=307)

    common = {"max_file_size": settings.max_upload_bytes, "allowed_paths": [],
              "blocked_paths": [str(settings.home_dir)],
              "app_kwargs": {"docs_url": None, "redoc_url": None, "openapi_url": None},
              "ssr_mode": False, "footer_links": _FOOTER, "run_history": False, "show_error": False}
    gr.mount_gradio_app(app, public, path=PUBLIC_PATH, **common)
    gr.mount_gradio_app(app, main, path="/", auth_dependency=session_user, **common)
    return app


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
        self.main.queue(default_concurrency_limit=default_concurrency_limit)
        self.public.queue(default_concurrency_limit=default_concurrency_limit)
        return self

    def launch(self, *, server_name: str = "127.0.0.1", server_port: int = 7860, prevent_thread_lock: bool = False,
               show_error: bool = False, quiet: bool = False) -> None:
        """Start serving; return once the port answers (or at once block, without `prevent_thread_lock`).
        `show_error` and `quiet` are accepted for `gr.Blocks.launch` compatibility: refusals always show
        their message and unexpected errors never do; the server logs only warnings."""
        app = create_server(self.instance, main=self.main, public=self.public)
        config = uvicorn.Config(app, host=server_name, port=server_port, log_level="warning", lifespan="on")
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
