"""Fixtures for training tests: artists whose uploads really passed the gate, and a queue drained in-process."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from mimicsafe import accounts, keys, uploads
from mimicsafe.context import Instance
from mimicsafe.imaging import NamedFile
from mimicsafe.jobs import Queue, build_queue
from ownership.signatures import sign_manifest, write_keypair
from tests.gate_helpers import png_bytes

PALETTES = {
    "alice": [(200, 30, 40), (240, 90, 60), (120, 10, 20), (250, 170, 150)],  # reds
    "bob": [(20, 60, 200), (60, 160, 230), (10, 20, 90), (150, 200, 250)],  # blues
}


def palette_image(palette: list[tuple[int, int, int]], seed: int, size: tuple[int, int] = (96, 96)) -> np.ndarray:
    """A detailed image in one palette: random blocks and stripes (enough detail for the gate's PDQ check)."""
    rng = np.random.default_rng(seed)
    width, height = size
    cells = rng.integers(0, len(palette), (height // 8, width // 8))
    colours = np.array(palette, dtype=np.int16)[cells]
    image = np.kron(colours, np.ones((8, 8, 1), dtype=np.int16))
    image = image + rng.integers(-12, 13, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


@dataclass
class Studio:
    """alice and bob (artists, each with a registered key) and root (admin) on one instance."""

    instance: Instance
    key_dir: Path
    images: dict[str, list[bytes]] = field(default_factory=dict)

    def upload(self, username: str, count: int, *, seed: int = 0, size: tuple[int, int] = (96, 96)) -> list[int]:
        files = [NamedFile(f"{username}-{seed + i}.png", png_bytes(palette_image(PALETTES[username], seed + i, size)))
                 for i in range(count)]
        manifest = sign_manifest(private_key_path_or_bytes=self.key_dir / username / "mimicsafe_ed25519",
                                 artist=username, files=[(f.name, f.data) for f in files])
        with self.instance.transaction() as s:
            outcomes = uploads.upload_files(session=s, blobs=self.instance.blobs, registry=self.instance.registry,
                                            settings=self.instance.settings, username=username, files=files,
                                            signatures=[NamedFile("manifest.json", manifest)])
        assert all(o.evidence.verdict.decision == "accepted" for o in outcomes), [o.to_json() for o in outcomes]
        self.images.setdefault(username, []).extend(f.data for f in files)
        return [o.upload_id for o in outcomes if o.upload_id is not None]


def _make_studio(instance: Instance, root: Path) -> Studio:
    with instance.transaction() as s:
        for name, role in [("alice", "artist"), ("bob", "artist"), ("root", "admin")]:
            accounts.create_user(session=s, username=name, role=role, password="a long password")
    for name in ("alice", "bob"):
        _, public = write_keypair(root / "keys" / name)
        with instance.transaction() as s:
            keys.register_key(session=s, username=name, public_key_text=public.read_bytes(), actor=name)
    return Studio(instance, root / "keys")


@pytest.fixture
def studio(instance: Instance, tmp_path: Path) -> Studio:
    return _make_studio(instance, tmp_path)


@pytest.fixture
def queue(instance: Instance) -> Queue:
    return build_queue(instance)


def drain(queue: Queue) -> int:
    """Run every queued task in this thread (what a worker would do); returns how many ran."""
    ran = 0
    while (task := queue.huey.dequeue()) is not None:
        queue.huey.execute(task)
        ran += 1
    return ran


@pytest.fixture
def background_worker(queue: Queue) -> Iterator[threading.Event]:
    """A thread that keeps draining the queue until the test ends (set the event to stop it)."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            if drain(queue) == 0:
                stop.wait(0.1)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield stop
    stop.set()
    thread.join(timeout=120)


@dataclass
class Trained:
    """alice and bob, each with two accepted uploads and one finished 3-step job (built once per module)."""

    studio: Studio
    queue: Queue
    jobs: dict[str, int]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    from mimicsafe.context import open_instance
    from mimicsafe.settings import load_settings
    from mimicsafe.training import service

    root = tmp_path_factory.mktemp("trained")
    instance = open_instance(load_settings(home=root / "home"))
    studio = _make_studio(instance, root)
    queue = build_queue(instance)
    jobs = {}
    for name, seed in (("alice", 0), ("bob", 10)):
        studio.upload(name, 2, seed=seed)
        jobs[name] = service.submit_training(instance=instance, queue=queue, username=name, actor=name,
                                             preset="tiny", steps=3).id
    drain(queue)
    yield Trained(studio, queue, jobs)
    instance.close()
