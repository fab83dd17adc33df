import stat

import pytest

from mimicsafe import accounts
from mimicsafe.context import Instance
from mimicsafe.errors import AuthError, ValidationFailed


def test_passwords_are_argon2id_hashed(instance: Instance) -> None:
    with instance.transaction() as session:
        user = accounts.create_user(session=session, username="alice", role="artist", password="correct horse")
        assert user.password_hash.startswith("$argon2id$")
        assert "correct horse" not in user.password_hash


def test_authenticate(instance: Instance) -> None:
    with instance.transaction() as session:
        accounts.create_user(session=session, username="alice", role="artist", password="correct horse")
    with instance.transaction() as session:
        assert accounts.authenticate(session=session, username="alice", password="correct horse").role == "artist"
        with pytest.raises(AuthError):
            accounts.authenticate(session=session, username="alice", password="wrong horse!")
        with pytest.raises(AuthError):
            accounts.authenticate(session=session, username="nobody", password="correct horse")


def test_disabled_user_cannot_log_in_and_can_be_enabled(instance: Instance) -> None:
    with instance.transaction() as session:
        accounts.create_user(session=session, username="alice", role="artist", password="correct horse")
        accounts.set_disabled(session=session, username="alice", disabled=True, actor="admin")
    with instance.transaction() as session, pytest.raises(AuthError):
        accounts.authenticate(session=session, username="alice", password="correct horse")
    with instance.transaction() as session:
        accounts.set_disabled(session=session, username="alice", disabled=False, actor="admin")
        assert accounts.authenticate(session=session, username="alice", password="correct horse")


@pytest.mark.parametrize("name", ["A", "Alice", "../x", "optout", "generated", "x" * 40, ""])
def test_bad_usernames(instance: Instance, name: str) -> None:
    with instance.transaction() as session, pytest.raises(ValidationFailed, match="username"):
        accounts.create_user(session=session, username=name, role="artist", password="correct horse")


def test_duplicate_username_and_bad_role(instance: Instance) -> None:
    with instance.transaction() as session:
        accounts.create_user(session=session, username="alice", role="artist", password="correct horse")
    with instance.transaction() as session, pytest.raises(ValidationFailed, match="taken"):
        accounts.create_user(session=session, username="alice", role="artist", password="correct horse")
    with instance.transaction() as session, pytest.raises(ValidationFailed, match="role"):
        accounts.create_user(session=session, username="bob", role="root", password="correct horse")  # type: ignore[arg-type]


def test_initial_admin_with_random_password(instance: Instance) -> None:
    home = instance.settings.home_dir
    with instance.transaction() as session:
        password = accounts.ensure_initial_admin(session=session, home=home, password=None)
    assert password
    path = home / accounts.INITIAL_PASSWORD_FILE
    assert path.read_text().strip() == password
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with instance.transaction() as session:
        assert accounts.authenticate(session=session, username="admin", password=password).role == "admin"
        # Second start: nothing new is created or printed.
        assert accounts.ensure_initial_admin(session=session, home=home, password=None) is None


def test_initial_admin_from_setting_writes_no_file(instance: Instance) -> None:
    home = instance.settings.home_dir
    with instance.transaction() as session:
        assert accounts.ensure_initial_admin(session=session, home=home, password="from-the-env-123") is None
    assert not (home / accounts.INITIAL_PASSWORD_FILE).exists()
    with instance.transaction() as session:
        assert accounts.authenticate(session=session, username="admin", password="from-the-env-123")
