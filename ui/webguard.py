"""What every request to a Gradio page passes before Gradio sees it (SECURITY.md, "The web app's surface").

Gradio keys a visitor's queue, results, cancels and page state by a *session hash* the browser makes
up and sends in URLs and bodies, and serves any file in its temporary folders to whoever names the
path. Both are capabilities that leak (logs, history, a shared link), so this ASGI middleware binds
them to the caller:

- **Session hashes and event ids** belong to the first caller that uses them: the logged-in account on
  `/`, the visitor on `/public/` (a random cookie, or the client address for clients that keep no
  cookies). Anyone else naming them — on the queue, results, cancel, heartbeat, stream or state
  routes — gets 404, as if they did not exist. Deep links (another session's page state), the proxy
  route and screen-recording processing (ffmpeg on an anonymous upload) are off: nothing here uses them.
- **Files** are served only to a caller the app gave them to: a path is granted when it appears in a
  response to that caller (an upload's answer, a result) and `/file=` serves nothing else. A request
  may name as input only files granted to its caller, so no one can feed another person's upload to
  a callback either.
- **The public upload** takes one file within `MIMICSAFE_MAX_UPLOAD_BYTES` per request, within
  `MIMICSAFE_PUBLIC_UPLOADS_PER_HOUR` per client; the body is spooled to disk, never held in memory.
- **An unknown endpoint name** answers 404 with one log line, not a 500 and a traceback.
- Every response says `X-Content-Type-Options: nosniff`.

Bindings are held in this process's memory, bounded and forgotten after a day: Gradio's queue and
files live in one process too, so a page's requests must reach the same server (sticky sessions).
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import tempfile
import threading
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio.to_thread

from ui.throttle import Throttle

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

VISITOR_COOKIE = "mimicsafe_visitor"
BINDING_SECONDS = 24 * 3600
MAX_BINDINGS = 200_000
MAX_JSON_BODY = 4 * 1024 * 1024  # event inputs are JSON with file *references*; files go to /upload
_UPLOAD_OVERHEAD = 64 * 1024  # multipart headers around the one file
_PATH_FIELD = re.compile(rb'"path"\s*:\s*"((?:[^"\\]|\\.)*)"')
_EVENT_FIELD = re.compile(rb'"event_id"\s*:\s*"([^"\\]{1,128})"')
_SCAN_TAIL = 16 * 1024  # bytes of one chunk kept to find a field cut in two by the next chunk
_NOT_FOUND = b'{"detail":"Not Found"}'


class Bindings:
    """Who may use what: (kind, value) -> the owners, forgotten after `ttl` seconds unused, at most `limit`
    values kept. A file shown to two accounts (an upload an admin reviews) has two owners."""

    def __init__(
        self, *, ttl: float = BINDING_SECONDS, limit: int = MAX_BINDINGS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl, self._limit, self._clock = ttl, limit, clock
        self._owners: OrderedDict[tuple[str, str], tuple[frozenset[str], float]] = OrderedDict()
        self._lock = threading.Lock()

    def claim(self, kind: str, value: str, caller: Caller) -> bool:
        """Whether `caller` may use `value`: it is theirs, or no one's yet (then it becomes theirs)."""
        with self._lock:
            held = self._get(kind, value)
            if held and caller.who not in held:
                return False
            self._put(kind, value, held | caller.names)
            return True

    def owns(self, kind: str, value: str, caller: Caller | str) -> bool:
        who = caller if isinstance(caller, str) else caller.who
        with self._lock:
            held = self._get(kind, value)
            if who not in held:
                return False
            self._put(kind, value, held if isinstance(caller, str) else held | caller.names)
            return True

    def grant(self, kind: str, value: str, caller: Caller) -> None:
        with self._lock:
            self._put(kind, value, self._get(kind, value) | caller.names)

    def _get(self, kind: str, value: str) -> frozenset[str]:
        entry = self._owners.get((kind, value))
        if entry is None:
            return frozenset()
        if self._clock() - entry[1] > self._ttl:
            del self._owners[(kind, value)]
            return frozenset()
        return entry[0]

    def _put(self, kind: str, value: str, owners: frozenset[str]) -> None:
        self._owners[(kind, value)] = (owners, self._clock())
        self._owners.move_to_end((kind, value))
        while len(self._owners) > self._limit:
            self._owners.popitem(last=False)


@dataclass(frozen=True)
class Caller:
    """Who is asking: `who` ("user:alice", "visitor:<cookie>", "address:<ip>"). A visitor's first request,
    before it has the cookie it is being given, is `address:…` with the new cookie's name in `also`, so
    that what it is granted is still theirs once the cookie comes back."""

    who: str
    also: str | None = None

    @property
    def names(self) -> frozenset[str]:
        return frozenset(n for n in (self.who, self.also) if n)


EVERYONE = Caller("*")  # what the page's own config names (files shown to every caller of that page)


@dataclass
class Mount:
    """One Gradio app as the guard sees it: its path prefix and its endpoint names."""

    prefix: str  # "" for the app at "/", "/public" for the public page
    public: bool
    api_names: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class _Route:
    kind: str  # what the request does, below
    name: str = ""  # the endpoint name (run, call) or the session hash / event id in the path


def _route(method: str, rest: str) -> _Route | None:
    """Classify a path relative to a mount; None for anything the guard lets through untouched."""
    if rest in ("/config", "/config/"):
        return _Route("config")
    if not rest.startswith("/gradio_api/"):
        return None
    tail = rest[len("/gradio_api/") :].rstrip("/")
    parts = tail.split("/")
    if tail.startswith(("file=", "file/")):
        return _Route("file")
    if tail.startswith("proxy=") or tail in ("deep_link", "process_recording"):  # unused here; work for anyone
        return _Route("off")
    if tail == "upload":
        return _Route("upload")
    if tail == "queue/join":
        return _Route("join")
    if tail == "queue/data":
        return _Route("data")
    if tail == "cancel":
        return _Route("cancel")
    if parts[0] == "heartbeat" and len(parts) == 2:
        return _Route("heartbeat", parts[1])
    if parts[0] in ("run", "api") and len(parts) == 2:
        return _Route("run", parts[1])
    if parts[0] == "call":
        named = parts[2:] if len(parts) > 1 and parts[1] == "v2" else parts[1:]
        if len(named) == 1:
            return _Route("call", named[0])
        if len(named) == 2:
            return _Route("results", named[0] + "/" + named[1])
        return _Route("off")
    if parts[0] == "stream" and len(parts) >= 2:
        return _Route("stream_event" if method == "POST" else "stream_session", parts[1])
    return None


class WebGuard:
    """The ASGI middleware (see the module's docstring). `user_of(cookie)` is the logged-in username or
    None; `upload_dir` is where a public upload's body is spooled."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        mounts: list[Mount],
        user_of: Callable[[str | None], str | None],
        session_cookie: str,
        max_upload_bytes: int,
        upload_throttle: Throttle,
        spool_dir: Callable[[], str],
        secure: Callable[[Scope], bool],
    ) -> None:
        self.app = app
        self.mounts = sorted(mounts, key=lambda m: len(m.prefix), reverse=True)
        self.user_of = user_of
        self.session_cookie = session_cookie
        self.max_upload_bytes = max_upload_bytes
        self.upload_throttle = upload_throttle
        self.spool_dir = spool_dir
        self.secure = secure
        self.bindings = Bindings()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "OPTIONS":  # CORS preflights: the app refuses them
            await self.app(scope, receive, send)
            return
        send = _with_nosniff(send)
        path: str = scope["path"]
        mount = next(
            (m for m in self.mounts if m.prefix == "" or path == m.prefix or path.startswith(m.prefix + "/")), None
        )
        route = None if mount is None else _route(scope["method"], path[len(mount.prefix) :])
        if mount is None or route is None:
            await self.app(scope, receive, send)
            return
        cookies = _cookies(scope)
        new_visitor = None
        if mount.public:
            visitor = cookies.get(VISITOR_COOKIE, "")
            if not (20 <= len(visitor) <= 64 and visitor.replace("-", "").replace("_", "").isalnum()):
                new_visitor = secrets.token_urlsafe(24)
                visitor = ""
            client = scope.get("client") or ("?", 0)
            owner = (
                Caller(f"visitor:{visitor}") if visitor else Caller(f"address:{client[0]}", f"visitor:{new_visitor}")
            )
        else:
            # A database read: in a worker thread, never on the event loop every request shares.
            user = await anyio.to_thread.run_sync(self.user_of, cookies.get(self.session_cookie))
            if user is None:
                await _answer(send, 401, b'{"detail":"Not authenticated"}')
                return
            owner = Caller(f"user:{user}")
        if new_visitor is not None:
            send = _with_cookie(
                send,
                f"{VISITOR_COOKIE}={new_visitor}; Path={mount.prefix or '/'}; HttpOnly; "
                f"SameSite=Lax; Max-Age={BINDING_SECONDS}" + ("; Secure" if self.secure(scope) else ""),
            )
        await self._guarded(mount, route, owner, scope, receive, send)

    async def _guarded(
        self, mount: Mount, route: _Route, owner: Caller, scope: Scope, receive: Receive, send: Send
    ) -> None:
        ns = mount.prefix or "/"
        query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
        kind = route.kind

        def mine(what: str, value: str | None, *, new_ok: bool) -> bool:
            if not value:
                return True
            key = f"{ns}:{what}"
            return self.bindings.claim(key, value, owner) if new_ok else self.bindings.owns(key, value, owner)

        if kind == "off" or (kind == "config" and query.get("deep_link")):
            await _answer(send, 404, _NOT_FOUND)
            return
        if kind == "config":
            await self.app(scope, receive, self._granting(send, ns, EVERYONE))
            return
        if kind in ("run", "call") and route.name not in mount.api_names:
            log.warning("unknown endpoint %r on %s", route.name[:64], ns)
            await _answer(send, 404, _NOT_FOUND)
            return
        if kind == "results":
            api_name, event_id = route.name.split("/", 1)
            if api_name not in mount.api_names or not mine("event", event_id, new_ok=False):
                await _answer(send, 404, _NOT_FOUND)
                return
            await self.app(scope, receive, self._granting(send, ns, owner))
            return
        if kind == "file":
            if not self._may_read(ns, owner, _file_path(scope["path"])):
                await _answer(send, 404, _NOT_FOUND)
                return
            await self.app(scope, receive, send)
            return
        if kind in ("heartbeat", "stream_session", "data"):
            named = route.name if kind != "data" else next(iter(query.get("session_hash") or []), "")
            if not mine("session", named, new_ok=True):
                await _answer(send, 404, _NOT_FOUND)
                return
            await self.app(scope, receive, self._granting(send, ns, owner) if kind == "data" else send)
            return
        if kind == "stream_event":
            if not mine("event", route.name, new_ok=False):
                await _answer(send, 404, _NOT_FOUND)
                return
            await self.app(scope, receive, send)
            return
        if kind == "upload":
            await self._upload(mount, ns, owner, scope, receive, send)
            return
        # join, run, call, cancel: a JSON body naming a session hash, perhaps an event id and files.
        body = await _read_body(receive, MAX_JSON_BODY)
        if body is None:
            await _answer(send, 413, b'{"detail":"Request too large"}')
            return
        try:
            parsed = json.loads(body) if body else {}
        except ValueError:
            parsed = {}
        fields = parsed if isinstance(parsed, dict) else {}
        named_hash, named_event = fields.get("session_hash"), fields.get("event_id")
        if (
            not isinstance(named_hash, str | None)
            or not isinstance(named_event, str | None)
            or not mine("session", named_hash, new_ok=True)
            or (kind == "cancel" and not mine("event", named_event, new_ok=False))
        ):
            await _answer(send, 404, _NOT_FOUND)
            return
        if kind != "cancel":
            inputs = _paths_in(parsed)  # parsed, not searched: a key may be spelt with escapes
            if body and not isinstance(parsed, dict) or not all(self._may_read(ns, owner, p) for p in inputs):
                log.warning("a request on %s named a file not given to its caller", ns)
                await _answer(send, 404, b'{"detail":"File not found"}')
                return
        await self.app(scope, _replay(body, receive), self._granting(send, ns, owner))

    def _may_read(self, ns: str, owner: Caller, path: object) -> bool:
        if not isinstance(path, str) or not path:
            return False
        real = _real(path)
        return self.bindings.owns(f"{ns}:file", real, owner) or self.bindings.owns(f"{ns}:file", real, EVERYONE.who)

    async def _upload(self, mount: Mount, ns: str, owner: Caller, scope: Scope, receive: Receive, send: Send) -> None:
        if not mount.public or scope["method"] != "POST":
            await self.app(scope, receive, self._granting(send, ns, owner))
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length", b"").decode("latin-1")
        match = re.search(r'boundary="?([^";]{1,200})"?', headers.get(b"content-type", b"").decode("latin-1"))
        if not length.isdigit():
            await _answer(send, 411, b'{"detail":"Content-Length required"}')
            return
        if int(length) > self.max_upload_bytes + _UPLOAD_OVERHEAD:
            await _answer(send, 413, b'{"detail":"File too large"}')
            return
        if match is None:
            await _answer(send, 400, b'{"detail":"Expected a multipart upload"}')
            return
        if not await anyio.to_thread.run_sync(self.upload_throttle.hit, owner.who):  # Redis, perhaps
            await _answer(send, 429, b'{"detail":"Too many uploads from this client; try again later"}')
            return
        delimiter = b"--" + match.group(1).encode("latin-1")
        with tempfile.SpooledTemporaryFile(max_size=1024 * 1024, dir=self.spool_dir()) as spool:
            seen, total, tail = 0, 0, b""
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                total += len(chunk)
                if total > int(length) or total > self.max_upload_bytes + _UPLOAD_OVERHEAD:
                    await _answer(send, 413, b'{"detail":"File too large"}')
                    return
                window = tail + chunk
                seen += window.count(delimiter) - tail.count(delimiter)
                tail = window[-(len(delimiter) - 1) :] if len(delimiter) > 1 else b""
                spool.write(chunk)
                if not message.get("more_body", False):
                    break
            if seen > 2:  # "--B" before the one part and "--B--" after it
                await _answer(send, 413, b'{"detail":"One file per upload on this page"}')
                return
            spool.seek(0)
            await self.app(scope, _replay_file(spool, total, receive), self._granting(send, ns, owner))

    def _granting(self, send: Send, ns: str, owner: Caller) -> Send:
        """`send`, granting `owner` every file path and event id the response names."""
        tail = b""
        upload_answer = bytearray()
        is_json = False

        async def granting(message: Message) -> None:
            nonlocal tail, is_json
            if message["type"] == "http.response.start":
                content_type = dict(message.get("headers") or []).get(b"content-type", b"")
                is_json = content_type.startswith(b"application/json")
            elif message["type"] == "http.response.body":
                chunk = message.get("body", b"")
                window = tail + chunk
                for found in _PATH_FIELD.findall(window):
                    self.bindings.grant(f"{ns}:file", _real(_unescape(found)), owner)
                for found in _EVENT_FIELD.findall(window):
                    self.bindings.grant(f"{ns}:event", found.decode(), owner)
                tail = window[-_SCAN_TAIL:]
                if is_json and len(upload_answer) < MAX_JSON_BODY:
                    upload_answer.extend(chunk)
                if is_json and not message.get("more_body", False):
                    self._grant_listed(bytes(upload_answer), ns, owner)
            await send(message)

        return granting

    def _grant_listed(self, body: bytes, ns: str, owner: Caller) -> None:
        """An upload answers with a JSON list of the stored paths."""
        try:
            listed = json.loads(body)
        except ValueError:
            return
        if isinstance(listed, list):
            for item in listed:
                if isinstance(item, str) and item.startswith("/"):
                    self.bindings.grant(f"{ns}:file", _real(item), owner)


def _paths_in(value: object) -> list[object]:
    """The value of every "path" key in a parsed JSON body, at any depth."""
    if isinstance(value, dict):
        own = [value["path"]] if "path" in value else []
        return own + [p for v in value.values() for p in _paths_in(v)]
    if isinstance(value, list):
        return [p for v in value for p in _paths_in(v)]
    return []


def _real(path: str) -> str:
    try:
        return str(Path(path).resolve())
    except (OSError, ValueError):
        return path


def _unescape(raw: bytes) -> str:
    try:
        return str(json.loads(b'"' + raw + b'"'))
    except ValueError:
        return ""


def _file_path(path: str) -> str | None:
    for marker in ("/gradio_api/file=", "/gradio_api/file/"):
        at = path.find(marker)
        if at >= 0:
            return path[at + len(marker) :]
    return None


def _cookies(scope: Scope) -> dict[str, str]:
    jar: dict[str, str] = {}
    for name, value in scope.get("headers") or []:
        if name == b"cookie":
            for part in value.decode("latin-1").split(";"):
                key, _, val = part.strip().partition("=")
                jar.setdefault(key, val)
    return jar


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body read already, then whatever the client sends next (its disconnect)."""
    sent = False

    async def replaying() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replaying


def _replay_file(spool: Any, size: int, receive: Receive) -> Receive:
    async def replaying() -> Message:
        if spool.tell() >= size and getattr(replaying, "done", False):
            return await receive()
        chunk = spool.read(256 * 1024)
        more = spool.tell() < size
        replaying.done = not more  # type: ignore[attr-defined]
        return {"type": "http.request", "body": chunk, "more_body": more}

    return replaying


def _with_nosniff(send: Send) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [h for h in message.get("headers") or [] if h[0].lower() != b"x-content-type-options"]
            message["headers"] = [*headers, (b"x-content-type-options", b"nosniff")]
        await send(message)

    return sending


def _with_cookie(send: Send, cookie: str) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*(message.get("headers") or []), (b"set-cookie", cookie.encode("latin-1"))]
        await send(message)

    return sending


async def _answer(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
