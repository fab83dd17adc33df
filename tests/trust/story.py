"""Steps the trust tests share: a work signed by someone who did not make it, and the owner arriving later."""

from __future__ import annotations

import numpy as np

from mimicsafe import portfolio, uploads
from mimicsafe.imaging import NamedFile
from mimicsafe.jobs import Queue
from mimicsafe.trust import rescan
from ownership.signatures import sign_manifest
from tests.gate_helpers import png_bytes
from tests.training.conftest import PALETTES, Studio, drain, palette_image


def original_work(seed: int = 500) -> np.ndarray:
    """alice's illustration (her palette, enough detail for the gate), 128 px."""
    return palette_image(PALETTES["alice"], seed, (128, 128))


def stolen_copy(rgb: np.ndarray) -> bytes:
    """What the thief uploads: the work slightly recoloured (other bytes, the same picture to PDQ)."""
    return png_bytes(np.clip(rgb.astype(np.int16) + 6, 0, 255).astype(np.uint8))


def upload_signed(studio: Studio, username: str, name: str, data: bytes) -> uploads.Outcome:
    """Upload one file signed with `username`'s own key: the signature proves who uploaded it, not who made it."""
    manifest = sign_manifest(private_key_path_or_bytes=studio.key_dir / username / "mimicsafe_ed25519",
                             artist=username, files=[(name, data)])
    instance = studio.instance
    with instance.transaction() as s:
        return uploads.upload_files(session=s, blobs=instance.blobs, registry=instance.registry,
                                    settings=instance.settings, username=username, files=[NamedFile(name, data)],
                                    signatures=[NamedFile("manifest.json", manifest)])[0]


def owner_verifies_portfolio(studio: Studio, queue: Queue, username: str, data: bytes) -> list[int]:
    """The owner joins later: submits the work, an admin verifies it, the re-scan job runs. Returns the
    verified item ids."""
    instance = studio.instance
    with instance.transaction() as s:
        portfolio.add_items(session=s, blobs=instance.blobs, settings=instance.settings, username=username,
                            files=[NamedFile("original.png", data)], evidence_url="https://example.org/first",
                            actor=username)
    with instance.transaction() as s:
        verified, refused = portfolio.verify_items(session=s, registry=instance.registry, username=username,
                                                   admin="root")
        assert not refused
        ids = [i.id for i in verified]
    rescan.dispatch(instance, queue)  # after the commit: verifying did not wait for the re-scan
    drain(queue)
    return ids
