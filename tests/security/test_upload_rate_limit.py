"""Uploads are rate-limited per account (`MIMICSAFE_UPLOADS_PER_HOUR`), counted from the stored uploads so
that every server, the CLI and the API share one limit; a refused batch stores nothing."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from typer.testing import CliRunner

from mimicsafe.cli import EXIT_REFUSED, exit_status_for
from mimicsafe.context import open_instance
from mimicsafe.db.models import AuditEntry, Upload
from mimicsafe.errors import RateLimited
from mimicsafe.imaging import NamedFile
from mimicsafe.settings import load_settings
from mimicsafe.uploads import upload
from tests.reliability.helpers import make_people, work
from ui.cli import app


def _counts(instance) -> tuple[int, int]:
    with instance.reading() as session:
        rows = session.scalar(select(func.count()).select_from(Upload)) or 0
        audited = session.scalar(select(func.count()).select_from(AuditEntry)
                                 .where(AuditEntry.action.like("upload.%"))) or 0
    return rows, audited


def _files(*indices: int) -> list[NamedFile]:
    return [NamedFile(f"work-{i}.png", work(21, i)) for i in indices]


def test_a_batch_past_the_hourly_limit_is_refused_and_stores_nothing(home: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIMICSAFE_UPLOADS_PER_HOUR", "3")
    instance = open_instance(load_settings(home=home))
    make_people(instance, {"alice": "artist", "bob": "artist"})

    assert len(upload(instance=instance, username="alice", files=_files(1, 2))) == 2  # unsigned: rejected, counted
    with pytest.raises(RateLimited, match=r"3 files per hour.*2 in the last hour, 1 left, 2 sent"):
        upload(instance=instance, username="alice", files=_files(3, 4))
    assert _counts(instance) == (2, 2)  # nothing of the refused batch

    assert len(upload(instance=instance, username="alice", files=_files(3))) == 1  # the one left
    assert len(upload(instance=instance, username="bob", files=_files(5, 6, 7))) == 3  # each account its own

    with instance.transaction() as session:  # an hour later the window has moved on
        session.execute(update(Upload).values(created_at=Upload.created_at - timedelta(minutes=61)))
    assert len(upload(instance=instance, username="alice", files=_files(8, 9, 10))) == 3
    instance.close()


def test_the_cli_reports_the_limit_as_a_refusal(home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MIMICSAFE_UPLOADS_PER_HOUR", "1")
    instance = open_instance(load_settings(home=home))
    make_people(instance, {"alice": "artist"})
    paths = []
    for file in _files(1, 2):
        paths.append(tmp_path / file.name)
        paths[-1].write_bytes(file.data)

    result = CliRunner().invoke(app, ["--home", str(home), "upload", "alice", *map(str, paths)])

    # `mimicsafe` (ui.cli:main → mimicsafe.cli.run) turns the error into its message and this status.
    assert exit_status_for(result.exception) == EXIT_REFUSED
    assert "upload limit reached: 1 files per hour" in str(result.exception)
    assert _counts(instance) == (0, 0)
    instance.close()
