"""Anonymous work on the public page is bounded whatever route it takes (issue 17, §2): the image check
runs at most `public_concurrency` at once — through the queue, `/call/` or `/run/` — with the excess
waiting or refused and the server's memory bounded; one client address gets `public_checks_per_minute`
checks (the address as MIMICSAFE_TRUSTED_PROXIES allows it to be claimed); images over
`public_max_pixels` are refused before decoding.

The real app (ui/app.py) is served by uvicorn on loopback, as `mimicsafe serve` does; the checks are
real `verify_image` calls on real images, counted (not replaced) to see how many run at once.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

import ui.tabs.verify
from mimicsafe.context import Instance
from tests.servers import SQLITE_ONLY, free_port_number
from ui.app import build_app

pytestmark = SQLITE_ONLY
MIB = 1024 * 1024


@contextmanager
def public_page(instance: Instance, **settings: object) -> Iterator[str]:
    """The whole app on a free loopback port with `settings` changed; yields the public page's URL."""
    changed = Instance(
        settings=instance.settings.model_copy(update=settings),
        engine=instance.engine,
        sessions=instance.sessions,
        blobs=instance.blobs,
    )
    app = build_app(changed).queue()
    port = free_port_number()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True)
    try:
        yield f"http://127.0.0.1:{port}/public"
    finally:
        app.close()


class Counted:
    """Wraps the real `verify_image`: how many calls ran at once, at most."""

    def __init__(self, real: Callable) -> None:
        self.real, self.running, self.most, self.calls = real, 0, 0, 0
        self.lock = threading.Lock()

    def __call__(self, **kwargs: object) -> object:
        with self.lock:
            self.running += 1
            self.calls += 1
            self.most = max(self.most, self.running)
        try:
            return self.real(**kwargs)
        finally:
            with self.lock:
                self.running -= 1


class PeakRss:
    """The server process's resident memory, sampled while the block runs (the server is this process)."""

    def __init__(self) -> None:
        self.start = self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, _rss())

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())

    @property
    def growth(self) -> int:
        return self.peak - self.start


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


def noisy_png(path: Path, side: int, seed: int = 0) -> Path:
    """A detailed image that compresses well (8×8 blocks of noise): cheap to send, full cost to check."""
    blocks = np.random.default_rng(seed).integers(0, 255, (side // 8, side // 8, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(blocks.repeat(8, 0).repeat(8, 1)).save(out, "PNG")
    path.write_bytes(out.getvalue())
    return path


def uploaded(http: httpx.Client, path: Path) -> dict:
    answer = http.post("/gradio_api/upload", files=[("files", (path.name, path.read_bytes(), "image/png"))])
    assert answer.status_code == 200, answer.text
    (stored,) = answer.json()
    return {"path": stored, "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}


def through_queue(url: str, image: Path) -> str:
    try:
        card = Client(url + "/", verbose=False).predict(handle_file(str(image)), api_name="/verify")
    except Exception as exc:  # refused: the queue is full (gradio_client's own error types vary)
        return f"refused: {exc}" if isinstance(exc, AppError) or "full" in str(exc).lower() else f"unexpected: {exc}"
    return "done" if "### " in card else f"unexpected: {card[:200]}"


def through_call(url: str, image: Path) -> str:
    with httpx.Client(base_url=url, timeout=600) as http:
        started = http.post("/gradio_api/call/verify", json={"data": [uploaded(http, image)]})
        if started.status_code == 503:
            return "refused: queue full"
        assert started.status_code == 200, started.text
        result = http.get(f"/gradio_api/call/verify/{started.json()['event_id']}").text
    if "event: complete" in result and "### " in result:
        return "done"
    return f"refused: {result[-200:]}" if "event: error" in result else f"unexpected: {result[-200:]}"


def through_run(url: str, image: Path) -> str:
    with httpx.Client(base_url=url, timeout=600) as http:
        answer = http.post("/gradio_api/run/verify", json={"data": [uploaded(http, image)]})
    if answer.status_code == 404:
        return "refused: no direct runs"
    return "done" if answer.status_code == 200 and "### " in answer.text else f"unexpected: {answer.text[:200]}"


def test_anonymous_checks_are_bounded_whatever_the_route(
    instance: Instance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counted = Counted(ui.tabs.verify.verify_image)
    monkeypatch.setattr(ui.tabs.verify, "verify_image", counted)
    images = [noisy_png(tmp_path / f"check-{i}.png", 2000, seed=i) for i in range(16)]
    limit = 2
    with public_page(instance, public_concurrency=limit, public_queue_size=6, public_checks_per_minute=1000) as url:
        with PeakRss() as one:  # what a single check costs this process (first call: generous, it warms up)
            assert through_queue(url, noisy_png(tmp_path / "warm.png", 2000, seed=99)) == "done"
        routes = [through_queue] * 4 + [through_call] * 4 + [through_run] * 8
        with PeakRss() as burst, ThreadPoolExecutor(len(routes)) as pool:
            outcomes = list(pool.map(lambda job: job[0](url, job[1]), zip(routes, images, strict=True)))
    print(
        f"one check: +{one.growth / MIB:.0f} MiB; 16 at once: +{burst.growth / MIB:.0f} MiB, "
        f"{counted.most} running at most; {outcomes}"
    )
    assert not [o for o in outcomes if o.startswith("unexpected")], outcomes
    assert outcomes[8:] == ["refused: no direct runs"] * 8  # /run cannot skip the queue
    done = outcomes.count("done")
    assert done >= limit and done == counted.calls - 1  # the excess waited its turn (or was refused)
    assert counted.most <= limit, f"{counted.most} checks ran at once"
    # Memory: a generous bound from what one check cost when it ran alone (its first run, so warming up
    # too); sixteen at once cost several times that.
    bound = (limit + 1) * max(one.growth, 32 * MIB) + 64 * MIB
    assert burst.growth <= bound, f"grew {burst.growth / MIB:.0f} MiB (one check: {one.growth / MIB:.0f} MiB)"


def _check(url: str, image: Path, address: str) -> str:
    client = Client(url + "/", verbose=False, headers={"X-Forwarded-For": address})
    try:
        return str(client.predict(handle_file(str(image)), api_name="/verify"))
    except AppError as exc:
        return f"refused: {exc}"


def test_one_client_address_gets_a_few_checks_a_minute(instance: Instance, tmp_path: Path) -> None:
    image = noisy_png(tmp_path / "small.png", 64)
    with public_page(instance, public_checks_per_minute=3) as url:
        first = [_check(url, image, "198.51.100.7") for _ in range(4)]
        assert all("### " in card for card in first[:3]), first
        assert first[3].startswith("refused") and "Too many checks" in first[3]
        assert "### " in _check(url, image, "198.51.100.8")  # another client (via the trusted proxy)


def test_an_untrusted_client_cannot_claim_other_addresses(instance: Instance, tmp_path: Path) -> None:
    image = noisy_png(tmp_path / "small.png", 64)
    with public_page(instance, public_checks_per_minute=2, trusted_proxies="") as url:
        results = [_check(url, image, f"203.0.113.{i}") for i in range(3)]  # all are this one client
    assert "### " in results[0] and "### " in results[1] and "Too many checks" in results[2]


def test_the_public_check_decodes_fewer_pixels(instance: Instance, tmp_path: Path) -> None:
    image = noisy_png(tmp_path / "large.png", 1200)  # 1.44 MP: under the upload limit, over the public one
    with public_page(instance, public_max_pixels=1_000_000) as url:
        refused = _check(url, image, "198.51.100.20")
    assert refused.startswith("refused") and "1,000,000" in refused, refused
