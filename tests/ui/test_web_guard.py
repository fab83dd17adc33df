"""What the app serves to whom beyond its callbacks (issue 17, §3, §4, §6; ui/webguard.py): files only to
the caller they were given to, queue results, cancels and page state only to the account that made the
session, the public upload within its limits, and unknown endpoints as a quiet 404.

Everything goes over real HTTP to the running app (tests/ui/conftest.py), as a browser or a script would.
"""

from __future__ import annotations

import io
import json
import logging
import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from gradio_client import handle_file
from PIL import Image

from tests.ui.conftest import PASSWORDS
from ui.app import HEAVY
from ui.server import PUBLIC_PATH
from ui.webguard import VISITOR_COOKIE, Bindings, Caller


@contextmanager
def logged_in(world, username: str) -> Iterator[httpx.Client]:
    http = httpx.Client(base_url=world.url, timeout=120)
    try:
        answer = http.post("/login", data={"username": username, "password": PASSWORDS[username]})
        assert answer.status_code == 200, answer.text
        yield http
    finally:
        http.close()


@contextmanager
def visitor(world, *, cookie: str | None = None) -> Iterator[httpx.Client]:
    """An anonymous browser on the public page: it keeps the visitor cookie the page sets (or `cookie`)."""
    http = httpx.Client(base_url=world.url + PUBLIC_PATH, timeout=120)
    if cookie is not None:
        http.cookies.set(VISITOR_COOKIE, cookie)
    try:
        yield http
    finally:
        http.close()


def call(http: httpx.Client, api_name: str, data: list) -> list:
    """Run an event the way `/gradio_api/call/` offers: the outputs of its `complete` message."""
    started = http.post(f"/gradio_api/call/{api_name}", json={"data": data})
    assert started.status_code == 200, started.text
    event_id = started.json()["event_id"]
    stream = http.get(f"/gradio_api/call/{api_name}/{event_id}")
    assert stream.status_code == 200, stream.text
    lines = stream.text.splitlines()
    for at, line in enumerate(lines):
        if line == "event: complete":
            return json.loads(lines[at + 1].removeprefix("data: "))
    raise AssertionError(f"{api_name} did not complete: {stream.text[:500]}")


def files_in(value: object) -> list[dict]:
    """Every FileData in an event's outputs."""
    if isinstance(value, dict):
        own = [value] if isinstance(value.get("path"), str) and value.get("url") else []
        return own + [f for v in value.values() for f in files_in(v)]
    if isinstance(value, list):
        return [f for v in value for f in files_in(v)]
    return []


def fn_index(http: httpx.Client, api_name: str) -> int:
    config = http.get("/config").json()
    return next(d["id"] for d in config["dependencies"] if d.get("api_name") == api_name)


# --- §3: private files only to their owner ---------------------------------------------------------


def alices_files(world) -> dict[str, dict]:
    with logged_in(world, "alice") as alice:
        (export,) = files_in(call(alice, "artist_model_download", [world.alice_model_id, "kohya"]))
        preview, *_ = files_in(call(alice, "artist_upload_show", [world.alice_upload_id]))
    return {"export": export, "preview": preview}


@pytest.mark.parametrize("what", ["export", "preview"])
def test_a_private_file_is_served_only_to_its_owner(world, what: str) -> None:
    file = alices_files(world)[what]
    path = "/gradio_api/file=" + file["path"]
    assert file["url"].endswith(path)
    if what == "export":
        assert file["path"].endswith(".safetensors")
    with httpx.Client(base_url=world.url) as anonymous:
        assert anonymous.get(PUBLIC_PATH + path).status_code == 404  # the public page never serves it
        assert anonymous.get(path).status_code == 401
    with visitor(world) as stranger:
        assert stranger.get(path).status_code == 404
    with logged_in(world, "bob") as bob:
        refused = bob.get(path)
        assert refused.status_code == 404 and refused.headers["x-content-type-options"] == "nosniff"
        assert bob.get(PUBLIC_PATH + path).status_code == 404
    with logged_in(world, "alice") as alice:
        served = alice.get(path)
        assert served.status_code == 200 and len(served.content) > 0
        assert served.headers["x-content-type-options"] == "nosniff"


def test_no_one_may_hand_a_callback_another_persons_upload(world) -> None:
    """An uploaded file's server path is a capability too: bob naming alice's as his input is refused."""
    with logged_in(world, "alice") as alice:
        picture = io.BytesIO()
        Image.new("RGB", (64, 64), (200, 30, 30)).save(picture, "PNG")
        stored = alice.post("/gradio_api/upload", files=[("files", ("mine.png", picture.getvalue(), "image/png"))])
        assert stored.status_code == 200
        (path,) = stored.json()
    as_input = {"path": path, "orig_name": "mine.png", "meta": {"_type": "gradio.FileData"}}
    with logged_in(world, "bob") as bob:
        taken = bob.post("/gradio_api/call/artist_uploads_submit", json={"data": [[as_input], []]})
        assert taken.status_code == 404
        spelt = json.dumps({"data": [[as_input], []]}).replace('"path"', '"p\\u0061th"')  # the same key
        assert json.loads(spelt) == {"data": [[as_input], []]}
        sneaked = bob.post(
            "/gradio_api/call/artist_uploads_submit", content=spelt, headers={"content-type": "application/json"}
        )
        assert sneaked.status_code == 404
        assert bob.get("/gradio_api/file=" + path).status_code == 404
    with logged_in(world, "alice") as alice:
        assert alice.get("/gradio_api/file=" + path).status_code == 200


def _png(size: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), (10, 120, 200)).save(out, "PNG")
    return out.getvalue()


def test_the_public_upload_takes_one_file_within_the_limits(world) -> None:
    limit = world.instance.settings.max_upload_bytes
    with visitor(world, cookie=secrets.token_urlsafe(24)) as http:
        one = http.post("/gradio_api/upload", files=[("files", ("a.png", _png(32), "image/png"))])
        assert one.status_code == 200 and len(one.json()) == 1
        many = http.post("/gradio_api/upload", files=[("files", (f"{i}.png", _png(8), "image/png")) for i in range(5)])
        assert many.status_code == 413
        too_big = http.post("/gradio_api/upload", files=[("files", ("big.png", b"\0" * (limit + 1), "image/png"))])
        assert too_big.status_code == 413
        (path,) = one.json()
        own = http.get("/gradio_api/file=" + path)  # the visitor's own upload
        assert own.status_code == 200 and own.headers["x-content-type-options"] == "nosniff"
    with visitor(world, cookie=secrets.token_urlsafe(24)) as other:
        assert other.get("/gradio_api/file=" + path).status_code == 404


def test_the_public_upload_quota_is_per_visitor(world) -> None:
    quota = world.instance.settings.public_uploads_per_hour
    small = _png(8)
    with visitor(world, cookie=secrets.token_urlsafe(24)) as http:
        answers = [
            http.post("/gradio_api/upload", files=[("files", ("x.png", small, "image/png"))]).status_code
            for _ in range(quota + 1)
        ]
    assert answers[:quota] == [200] * quota and answers[quota] == 429
    with visitor(world, cookie=secrets.token_urlsafe(24)) as fresh:
        assert fresh.post("/gradio_api/upload", files=[("files", ("x.png", small, "image/png"))]).status_code == 200


# --- §4: sessions bound to the account that made them ---------------------------------------------


def join(http: httpx.Client, api_name: str, session_hash: str, data: list | None = None) -> str:
    joined = http.post(
        "/gradio_api/queue/join",
        json={
            "data": data or [],
            "fn_index": fn_index(http, api_name),
            "session_hash": session_hash,
            "event_data": None,
            "trigger_id": None,
        },
    )
    assert joined.status_code == 200, joined.text
    return str(joined.json()["event_id"])


def read_until_done(http: httpx.Client, session_hash: str) -> str:
    with http.stream("GET", "/gradio_api/queue/data", params={"session_hash": session_hash}) as stream:
        assert stream.status_code == 200
        text = ""
        for line in stream.iter_lines():
            text += line + "\n"
            if '"process_completed"' in line:
                return text
    raise AssertionError(f"the stream ended without a result: {text[:500]}")


def test_another_account_gets_nothing_of_a_session(world) -> None:
    session_hash = uuid.uuid4().hex[:11]
    with logged_in(world, "alice") as alice, logged_in(world, "bob") as bob:
        event_id = join(alice, "page_load", session_hash)
        # bob, with alice's session hash: no results, no heartbeat, no page state, no cancel
        assert bob.get("/gradio_api/queue/data", params={"session_hash": session_hash}).status_code == 404
        assert bob.get(f"/gradio_api/heartbeat/{session_hash}").status_code == 404
        assert bob.get(f"/gradio_api/call/page_load/{event_id}").status_code == 404
        assert bob.get("/gradio_api/deep_link", params={"session_hash": session_hash}).status_code == 404
        cancel = {"session_hash": session_hash, "fn_index": fn_index(bob, "page_load"), "event_id": event_id}
        assert bob.post("/gradio_api/cancel", json=cancel).status_code == 404
        # nor by naming alice's event from a session of his own
        own = {**cancel, "session_hash": uuid.uuid4().hex[:11]}
        assert bob.post("/gradio_api/cancel", json=own).status_code == 404
        assert (
            bob.post(
                "/gradio_api/queue/join",
                json={"data": [], "fn_index": cancel["fn_index"], "session_hash": session_hash},
            ).status_code
            == 404
        )
        # alice still gets her own page
        assert "signed in as **alice**" in read_until_done(alice, session_hash)


def test_anonymous_callers_cannot_cancel_or_follow_an_artists_job(world) -> None:
    session_hash = uuid.uuid4().hex[:11]
    with logged_in(world, "alice") as alice:
        index = fn_index(alice, "page_load")
        event_id = join(alice, "page_load", session_hash)
        with httpx.Client(base_url=world.url) as anonymous:
            cancel = {"session_hash": session_hash, "fn_index": index, "event_id": event_id}
            assert anonymous.post("/gradio_api/cancel", json=cancel).status_code == 401
            assert anonymous.get(f"/gradio_api/heartbeat/{session_hash}").status_code == 401
            assert anonymous.post(PUBLIC_PATH + "/gradio_api/cancel", json=cancel).status_code == 404
        assert "signed in as **alice**" in read_until_done(alice, session_hash)
        assert alice.post("/gradio_api/cancel", json=cancel).status_code == 200  # her own: allowed


def test_deep_links_are_off(world) -> None:
    with logged_in(world, "root") as root:
        assert root.get("/config", params={"deep_link": "anything"}).status_code == 404
        assert root.get("/gradio_api/deep_link", params={"session_hash": "x"}).status_code == 404
        assert root.get("/config").status_code == 200


def test_one_visitors_public_session_is_not_anothers(world) -> None:
    session_hash = uuid.uuid4().hex[:11]
    with (
        visitor(world, cookie=secrets.token_urlsafe(24)) as first,
        visitor(world, cookie=secrets.token_urlsafe(24)) as second,
    ):
        join(first, "status", session_hash)
        assert second.get("/gradio_api/queue/data", params={"session_hash": session_hash}).status_code == 404
        assert "Database: **up**" in read_until_done(first, session_hash)


def test_the_public_page_gives_a_browser_a_visitor_cookie(world) -> None:
    with visitor(world) as browser:
        first = browser.get("/config")
        assert first.status_code == 200
        (header,) = [h for h in first.headers.get_list("set-cookie") if h.startswith(VISITOR_COOKIE + "=")]
        assert "httponly" in header.lower() and "samesite=lax" in header.lower()
        again = browser.get("/config")  # a browser that keeps it is not given another
        assert not [h for h in again.headers.get_list("set-cookie") if h.startswith(VISITOR_COOKIE + "=")]


# --- §6: unknown endpoints and nosniff ---------------------------------------------------------------


def test_an_unknown_public_endpoint_is_a_quiet_404(
    world, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.INFO)
    with visitor(world) as http:
        for route in (
            "/gradio_api/call/no_such_thing",
            "/gradio_api/run/no_such_thing",
            "/gradio_api/call/v2/no_such_thing",
        ):
            answer = http.post(route, json={"data": []})
            assert answer.status_code == 404, route
    lines = [r for r in caplog.records if "no_such_thing" in r.getMessage() and not r.name.startswith("httpx")]
    assert len(lines) == 3 and all(r.exc_info is None for r in lines)
    assert "Traceback" not in capfd.readouterr().err


def test_direct_runs_are_closed_so_no_route_skips_the_queue(world) -> None:
    with visitor(world) as http:
        for name in ("status", "verify"):
            for route in ("run", "api"):
                assert http.post(f"/gradio_api/{route}/{name}", json={"data": [None]}).status_code == 404
        recording = http.post("/gradio_api/process_recording", files=[("video", ("v.mp4", b"x" * 64, "video/mp4"))])
        assert recording.status_code == 404  # ffmpeg on an anonymous upload: off
    with logged_in(world, "alice") as alice:
        names = {d.get("api_name") for d in alice.get("/config").json()["dependencies"]}
        assert HEAVY | {"artist_generate"} <= names  # real handlers, each refused below
        for name in ("page_load", "artist_generate", *HEAVY):
            for route in ("run", "api"):
                assert alice.post(f"/gradio_api/{route}/{name}", json={"data": []}).status_code == 404, name


def test_the_public_check_still_works_through_gradio_client(world) -> None:
    public = world.public_client()
    card = public.predict(handle_file(str(world.alice_signed_png)), api_name="/verify")
    assert "No record" in card


# --- the bindings themselves ---------------------------------------------------------------------------


def test_bindings_are_per_owner_shared_when_granted_and_forgotten_in_time() -> None:
    now = [0.0]
    bindings = Bindings(ttl=100, limit=3, clock=lambda: now[0])
    alice, bob, root = Caller("user:alice"), Caller("user:bob"), Caller("user:root")
    assert bindings.claim("session", "h1", alice) and bindings.claim("session", "h1", alice)
    assert not bindings.claim("session", "h1", bob) and not bindings.owns("session", "h1", bob)
    bindings.grant("file", "/f", alice)
    bindings.grant("file", "/f", root)  # shown to an admin too: both may read it
    assert bindings.owns("file", "/f", alice) and bindings.owns("file", "/f", root)
    assert not bindings.owns("file", "/f", bob)
    first = Caller("address:203.0.113.5", "visitor:new")  # before its cookie comes back
    bindings.grant("file", "/g", first)
    assert bindings.owns("file", "/g", Caller("visitor:new")) and bindings.owns("file", "/g", first)
    now[0] = 101.0  # unused for longer than the ttl: forgotten, free to claim
    assert bindings.claim("session", "h1", bob)
    for n in range(5):  # never more than `limit` values
        bindings.grant("file", f"/many/{n}", bob)
    assert not bindings.owns("file", "/many/0", bob) and bindings.owns("file", "/many/4", bob)
