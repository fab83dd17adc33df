"""`training.latest_job`, what the Training tab shows when no job number is given: the artist's newest job,
none before the first, and the same owner check as `list_jobs`."""

from __future__ import annotations

import pytest

from mimicsafe import accounts
from mimicsafe.errors import NotFoundError
from mimicsafe.training import service as training
from tests.lora_rows import add_finished_model


def test_latest_job_is_the_newest_of_the_artists_own_jobs(instance) -> None:
    with instance.transaction() as session:
        for name, role in (("alice", "artist"), ("bob", "artist"), ("root", "admin")):
            accounts.create_user(session=session, username=name, role=role, password=f"{name}-password-123")
    with instance.reading() as session:
        assert training.latest_job(session=session, username="alice", actor="alice") is None
    first, _ = add_finished_model(instance, "alice", weights=b"first")
    second, _ = add_finished_model(instance, "alice", weights=b"second")
    bobs, _ = add_finished_model(instance, "bob", weights=b"bob's")
    assert first < second < bobs
    with instance.reading() as session:
        newest = training.latest_job(session=session, username="alice", actor="alice")
        assert newest is not None and newest.job.id == second
        assert newest == training.list_jobs(session=session, username="alice", actor="alice")[0]
        by_admin = training.latest_job(session=session, username="alice", actor="root")
        assert by_admin is not None and by_admin.job.id == second
        with pytest.raises(NotFoundError):
            training.latest_job(session=session, username="alice", actor="bob")
