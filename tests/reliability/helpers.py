"""People, works and views of the registry for the fault tests."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from mimicsafe import accounts, keys, portfolio
from mimicsafe.context import Instance
from mimicsafe.db.models import PortfolioItem, User
from mimicsafe.imaging import NamedFile
from mimicsafe.registry import Registry
from ownership.fingerprint import Fingerprint
from tests.gate_helpers import artwork, png_bytes

PASSWORD = "a long password"


def make_people(instance: Instance, people: dict[str, str]) -> None:
    """Accounts by name → role."""
    with instance.transaction() as session:
        for name, role in people.items():
            accounts.create_user(session=session, username=name, role=role, password=PASSWORD)  # type: ignore[arg-type]


@functools.cache
def work(artist: int, index: int) -> bytes:
    """A PNG artwork of `artist` (a seed), built in code and cached for the session."""
    return png_bytes(artwork(artist, index))


def submit_portfolio(instance: Instance, username: str, files: list[bytes]) -> list[int]:
    with instance.transaction() as session:
        items = portfolio.add_items(session=session, blobs=instance.blobs, settings=instance.settings,
                                    username=username, evidence_url="https://example.org/gallery", actor=username,
                                    files=[NamedFile(f"{username}{i}.png", data) for i, data in enumerate(files)])
        return [item.id for item in items]


def register_key(instance: Instance, username: str, public_key: Path) -> None:
    with instance.transaction() as session:
        keys.register_key(session=session, username=username, public_key_text=public_key.read_bytes(), actor=username)


def indexed_portfolio(instance: Instance, registry: Registry) -> set[tuple[str, str]]:
    """(owner, sha256) of every portfolio work, in any state, that `registry` finds by its exact bytes."""
    found = set()
    with instance.transaction() as session:
        for item in session.scalars(select(PortfolioItem)):
            matches = registry.search(session, Fingerprint.from_bytes(item.fingerprint or b""), sha256=item.sha256)
            found |= {(m.owner, m.item_sha256) for m in matches if m.method == "sha256"}
    return found


def verified_in_database(instance: Instance) -> set[tuple[str, str]]:
    with instance.transaction() as session:
        rows = session.execute(select(User.username, PortfolioItem.sha256)
                               .join(User, User.id == PortfolioItem.user_id)
                               .where(PortfolioItem.status == "verified"))
        return {(name, sha) for name, sha in rows}


def child_env(instance: Instance) -> dict[str, str]:
    """The environment for a child process using the same instance (home, and servers if any)."""
    return {**os.environ, "MIMICSAFE_HOME": str(instance.settings.home_dir)}


def start_child(instance: Instance, code: str) -> subprocess.Popen[str]:
    """A Python child that runs `code` with `instance` opened as `inst` (settings from the environment)."""
    prelude = ("from mimicsafe.context import open_instance\nfrom mimicsafe.settings import load_settings\n"
               "inst = open_instance(load_settings())\n")
    return subprocess.Popen([sys.executable, "-c", prelude + code], env=child_env(instance),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
