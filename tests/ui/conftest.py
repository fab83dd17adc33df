"""The web app launched in-process on a free port, with a small world of accounts and works in it.

`world` (one for the whole ui suite, so tests add only their own accounts and files): artists alice and
bob and the admin root; alice has a registered key, a verified portfolio work, an accepted signed upload,
a rejected upload waiting for review, and a finished training job with its model. Tests log
in with `world.client(name)` (gradio_client) or talk HTTP to `world.url`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from gradio_client import Client

from mimicsafe import accounts, keys, portfolio, uploads
from mimicsafe.context import Instance, open_instance
from mimicsafe.imaging import NamedFile
from mimicsafe.settings import load_settings
from ownership.signatures import generate_keypair, sign_manifest
from tests.gate_helpers import artwork, png_bytes
from tests.lora_rows import add_finished_model
from tests.servers import free_port_number
from ui.app import build_app
from ui.server import PUBLIC_PATH, WebApp

PASSWORDS = {"alice": "alice-password-1", "bob": "bob-password-22", "carol": "carol-password-3",
             "root": "root-password-44"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Gradio's own per-event analytics table trips a pandas deprecation warning on every call.
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here):
            item.add_marker(pytest.mark.filterwarnings("ignore::DeprecationWarning:gradio.queueing"))
            item.add_marker(pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword).*"))


@dataclass
class World:
    instance: Instance
    app: WebApp
    url: str  # "http://127.0.0.1:PORT" without a trailing slash
    files: Path
    alice_key_private: bytes
    alice_public_key: bytes  # the OpenSSH line of her registered key
    alice_fingerprint: str
    alice_upload_id: int  # accepted (signed)
    alice_rejected_id: int  # rejected: no proof, pending review
    alice_portfolio_id: int
    alice_job_id: int  # a finished training job
    alice_model_id: int  # its model (placeholder weights: enough to list, export and refuse)
    alice_portfolio_png: Path  # verified: protected
    alice_signed_png: Path
    clients: dict[str, Client] = field(default_factory=dict)

    def client(self, username: str) -> Client:
        if username not in self.clients:
            self.clients[username] = Client(self.url + "/", auth=(username, PASSWORDS[username]), verbose=False)
        return self.clients[username]

    def public_client(self) -> Client:
        return Client(self.url + PUBLIC_PATH + "/", verbose=False)


def write_png(directory: Path, name: str, artist_seed: int, work_seed: int) -> Path:
    path = directory / name
    path.write_bytes(png_bytes(artwork(artist_seed, work_seed)))
    return path


def add_model(instance: Instance, username: str, *, weights: bytes, kohya: bytes = b"kohya weights") -> tuple[int, int]:
    """The rows and blobs a finished training leaves, with a kohya export: (job id, model id)."""
    return add_finished_model(instance, username, weights=weights, kohya=kohya)


def populate(instance: Instance, files: Path) -> dict:
    """Accounts and works made through the services, as the CLI would."""
    private, public = generate_keypair()
    portfolio_png = write_png(files, "alice-published.png", 1, 1)
    signed_png = write_png(files, "alice-new.png", 1, 2)
    unsigned_png = write_png(files, "alice-unsigned.png", 1, 3)
    manifest = files / "manifest.json"
    manifest.write_bytes(sign_manifest(private_key_path_or_bytes=private, artist="alice", files=[signed_png]))
    with instance.transaction() as session:
        for name in ("alice", "bob"):
            accounts.create_user(session=session, username=name, role="artist", password=PASSWORDS[name])
        accounts.create_user(session=session, username="root", role="admin", password=PASSWORDS["root"])
        fingerprint = keys.register_key(session=session, username="alice", public_key_text=public,
                                        actor="alice").fingerprint
        published = NamedFile(portfolio_png.name, portfolio_png.read_bytes())
        (work,) = portfolio.add_items(session=session, blobs=instance.blobs, settings=instance.settings,
                                      username="alice", files=[published],
                                      evidence_url="https://example.org/alice/first-post", actor="alice")
        portfolio.verify_items(session=session, registry=instance.registry, username="alice", admin="root")
        work_id = work.id
    with instance.transaction() as session:
        accepted, rejected = uploads.upload_files(
            session=session, blobs=instance.blobs, registry=instance.registry, settings=instance.settings,
            username="alice", files=[NamedFile(signed_png.name, signed_png.read_bytes()),
                                     NamedFile(unsigned_png.name, unsigned_png.read_bytes())],
            signatures=[NamedFile(manifest.name, manifest.read_bytes())])
    assert accepted.evidence.verdict.decision == "accepted", accepted.to_json()
    assert rejected.evidence.verdict.decision == "rejected" and rejected.review_state == "pending"
    job_id, model_id = add_model(instance, "alice", weights=b"alice weights")
    return {"alice_key_private": private, "alice_public_key": public, "alice_fingerprint": fingerprint,
            "alice_upload_id": accepted.upload_id, "alice_rejected_id": rejected.upload_id,
            "alice_portfolio_id": work_id, "alice_job_id": job_id, "alice_model_id": model_id,
            "alice_portfolio_png": portfolio_png, "alice_signed_png": signed_png}


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("ui")
    with pytest.MonkeyPatch.context() as env:
        for name in [n for n in os.environ if n.startswith("MIMICSAFE_")]:
            env.delenv(name)
        # A low login limit keeps the rate-limit test short; the value comes from the settings either way.
        settings = load_settings(home=root / "home", login_attempts_per_minute=3)
    instance = open_instance(settings)
    files = root / "files"
    files.mkdir()
    made = populate(instance, files)
    port = free_port_number()
    app = build_app(instance).queue(default_concurrency_limit=4)
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True)
    try:
        yield World(instance=instance, app=app, url=f"http://127.0.0.1:{port}", files=files, **made)
    finally:
        app.close()
        instance.close()
