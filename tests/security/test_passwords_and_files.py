"""Password hashing parameters, file permissions of what the instance keeps secret, and no path
traversal through a file name a person chose."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from mimicsafe import accounts, uploads
from mimicsafe.blobs import BlobStore
from mimicsafe.context import Instance, open_instance
from mimicsafe.db.models import Upload, User
from mimicsafe.imaging import NamedFile, display_name
from mimicsafe.provenance.credentials import ensure_credentials
from mimicsafe.settings import load_settings
from ownership.signatures import write_keypair
from tests.reliability.helpers import PASSWORD, make_people, work

_ARGON2 = re.compile(r"^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$")


def test_passwords_use_argon2id_at_rfc9106_strength(instance: Instance) -> None:
    """RFC 9106's second recommended option (64 MiB, 3 passes): well above OWASP's argon2id minimum."""
    make_people(instance, {"alice": "artist"})
    with instance.transaction() as session:
        stored = session.scalar(select(User.password_hash).where(User.username == "alice"))
    assert stored is not None
    match = _ARGON2.match(stored)
    assert match, stored[:30]
    memory_kib, passes, lanes = map(int, match.groups())
    assert memory_kib >= 64 * 1024 and passes >= 3 and lanes >= 1


def test_a_weaker_old_hash_is_upgraded_at_the_next_login(instance: Instance) -> None:
    make_people(instance, {"alice": "artist"})
    weak = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash(PASSWORD)
    with instance.transaction() as session:
        session.scalars(select(User).where(User.username == "alice")).one().password_hash = weak
    with instance.transaction() as session:
        accounts.authenticate(session=session, username="alice", password=PASSWORD)
    with instance.transaction() as session:
        upgraded = session.scalar(select(User.password_hash).where(User.username == "alice"))
    assert upgraded != weak and int(_ARGON2.match(upgraded or "").group(1)) >= 64 * 1024  # type: ignore[union-attr]


def test_secret_files_are_readable_only_by_the_owner(tmp_path: Path) -> None:
    """The home (database, blobs), the first admin's password, signing keys, the instance's C2PA keys."""
    home = tmp_path / "home"
    instance = open_instance(load_settings(home=home))
    try:
        with instance.transaction() as session:
            assert accounts.ensure_initial_admin(session=session, home=home, password=None)
    finally:
        instance.close()
    ensure_credentials(home)
    write_keypair(tmp_path / "keys")

    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    secret_files = [p for p in [*home.rglob("*"), *(tmp_path / "keys").iterdir()] if p.is_file()
                    and (b"PRIVATE KEY" in p.read_bytes() or p.name == accounts.INITIAL_PASSWORD_FILE)]
    assert len(secret_files) >= 4  # admin password, CA key, signer key, artist key
    loose = {str(p): oct(stat.S_IMODE(p.stat().st_mode)) for p in secret_files if p.stat().st_mode & 0o077}
    assert loose == {}


HOSTILE_NAMES = ["../../../escaped.png", "/tmp/absolute.png", "..\\..\\windows.png", "a/../../b.png",
                 "nul\x00byte.png", "x" * 1000 + ".png", "~/home.png", "%2e%2e%2fencoded.png"]


@pytest.mark.server_backends  # PostgreSQL refuses some text SQLite keeps (NUL)
def test_no_path_traversal_through_upload_names(instance: Instance, tmp_path: Path) -> None:
    """A name is only a label: files are stored by their hash, whatever a browser calls them."""
    make_people(instance, {"alice": "artist"})
    files = [NamedFile(name, work(4, i)) for i, name in enumerate(HOSTILE_NAMES)]
    assert not Path("/tmp/absolute.png").exists()
    with instance.transaction() as session:
        outcomes = uploads.upload_files(session=session, blobs=instance.blobs, registry=instance.registry,
                                        settings=instance.settings, username="alice", files=files)
    assert len(outcomes) == len(files)

    with instance.transaction() as session:
        rows = session.scalars(select(Upload).order_by(Upload.id)).all()
    assert [r.file_name for r in rows] == [display_name(name) for name in HOSTILE_NAMES]
    assert rows[4].file_name == "nul\ufffdbyte.png" and len(rows[5].file_name) == 255
    stored = [p for p in instance.blobs.root.rglob("*") if p.is_file()]
    assert sorted(p.name for p in stored) == sorted({r.sha256 for r in rows})
    home = instance.settings.home_dir
    outside = [p for p in tmp_path.rglob("*") if p.is_file() and not p.is_relative_to(home)]
    assert outside == []
    assert not Path("/tmp/absolute.png").exists()


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "ab/../../cd", "A" * 64, "0" * 63 + "/"])
def test_the_blob_store_takes_only_hashes_as_names(tmp_path: Path, name: str) -> None:
    store = BlobStore(tmp_path / "blobs")
    for call in (store.path_for, store.get, store.exists, store.delete):
        with pytest.raises(ValueError, match="sha256"):
            call(name)
