"""The trainer's per-step hook reads the cancel flag without the write lock and writes only when it must:
when the job was cancelled (the step it stopped at), at the final step, or once per progress interval."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
from sqlalchemy.orm import Session

from mimicsafe import accounts
from mimicsafe.context import Instance
from mimicsafe.db.engine import transaction
from mimicsafe.db.models import TrainingJob
from mimicsafe.training import runner
from mimicsafe.training.errors import TrainingCancelled
from tests.lora_rows import add_finished_model


def _report(step: int, total: int = 10) -> SimpleNamespace:
    return SimpleNamespace(step=step, total=total, loss=0.1 * step, seconds_per_step=2.0)


@pytest.fixture
def job(instance: Instance) -> int:
    with instance.transaction() as session:
        accounts.create_user(session=session, username="alice", role="artist", password="a long enough password")
    job_id, _ = add_finished_model(instance, "alice", weights=b"weights")
    with instance.transaction() as session:
        row = session.get(TrainingJob, job_id)
        assert row is not None
        row.status, row.step, row.finished_at = "running", 0, None
    return job_id


@pytest.fixture
def writes(instance: Instance, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the write transactions the instance opens from here on."""
    opened: list[int] = []
    real = instance.transaction

    @contextmanager
    def counted() -> Iterator[Session]:
        opened.append(1)
        with real() as session:
            yield session

    monkeypatch.setattr(instance, "transaction", counted)
    return opened


def _row(instance: Instance, job_id: int) -> TrainingJob:
    with instance.reading() as session:
        row = session.get(TrainingJob, job_id)
        assert row is not None
        session.expunge(row)
        return row


def test_steps_between_progress_writes_take_no_write_lock(instance: Instance, job: int, writes: list[int],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "PROGRESS_INTERVAL_S", 1e12)  # never due: only cancel and the end write
    progress = runner._Progress(instance, job)
    for step in (1, 2, 3):
        progress.on_step(_report(step))
    assert writes == [] and _row(instance, job).step == 0
    progress.on_step(_report(10))  # the final step is always recorded
    assert len(writes) == 1
    row = _row(instance, job)
    assert row.step == 10 and row.eta_seconds == 0 and row.heartbeat_at is not None


def test_a_cancel_records_the_step_it_stopped_at(instance: Instance, job: int, writes: list[int],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "PROGRESS_INTERVAL_S", 1e12)
    progress = runner._Progress(instance, job)
    progress.on_step(_report(1))
    with transaction(instance.sessions) as session:  # as cancel_job would (not counted: not the hook's)
        row = session.get(TrainingJob, job)
        assert row is not None
        row.cancel_requested = True
    with pytest.raises(TrainingCancelled):
        progress.on_step(_report(4))
    assert len(writes) == 1
    row = _row(instance, job)
    assert row.step == 4 and row.eta_seconds == 12.0


def test_progress_is_written_once_the_interval_has_passed(instance: Instance, job: int, writes: list[int],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "PROGRESS_INTERVAL_S", 0.0)  # always due
    progress = runner._Progress(instance, job)
    for step in (1, 2):
        progress.on_step(_report(step))
    assert len(writes) == 2
    row = _row(instance, job)
    assert row.step == 2 and row.loss == pytest.approx(0.15)  # the mean of the recent losses
