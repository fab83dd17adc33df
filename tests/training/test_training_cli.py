"""`mimicsafe train USERNAME --wait` end to end, with a worker draining the queue beside it."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from mimicsafe.errors import NotFoundError
from ui.cli import app


def test_train_wait_then_export(studio, background_worker, tmp_path) -> None:
    studio.upload("alice", 1)
    home = str(studio.instance.settings.home_dir)
    runner = CliRunner()
    result = runner.invoke(app, ["--home", home, "--json", "train", "alice", "--preset", "tiny", "--steps", "2",
                                 "--wait"])
    assert result.exit_code == 0, result.output
    view = json.loads(result.stdout)
    assert view["status"] == "completed" and view["step"] == 2 and view["model_id"] is not None
    listed = runner.invoke(app, ["--home", home, "--json", "lora", "list", "alice"])
    assert json.loads(listed.stdout)["models"][0]["model_id"] == view["model_id"]
    exported = runner.invoke(app, ["--home", home, "lora", "export", "alice", str(view["model_id"]),
                                   "--format", "kohya", "--out", str(tmp_path)])
    assert exported.exit_code == 0, exported.output
    assert list(tmp_path.glob("*-kohya.safetensors"))
    refused = runner.invoke(app, ["--home", home, "jobs", "show", "bob", str(view["job_id"])])
    assert refused.exit_code != 0 and isinstance(refused.exception, NotFoundError)  # `run()` maps it to exit 2


def _job(status: str, step: int = 0) -> dict:
    return {"job_id": 7, "artist": "alice", "status": status, "step": step, "total_steps": 3, "loss": None,
            "eta_seconds": None, "queue_position": 1 if status == "queued" else None, "model_id": None, "error": None}


def test_train_wait_warns_once_when_no_worker_claims_the_job() -> None:
    from mimicsafe import cli_train

    now = [0.0]
    views = iter([_job("queued"), _job("queued"), _job("queued"), _job("running", 1), _job("completed", 3)])
    said: list[tuple[float, str]] = []

    def sleep(seconds: float) -> None:
        now[0] += cli_train.NO_WORKER_WARN_S / 2  # each poll: half the patience

    final = cli_train.follow(_job("queued"), lambda: next(views), echo=lambda text: said.append((now[0], text)),
                             clock=lambda: now[0], sleep=sleep)
    assert final["status"] == "completed"
    warnings = [(at, line) for at, line in said if line.startswith("warning: no worker")]
    assert len(warnings) == 1 and "mimicsafe worker" in warnings[0][1]
    assert warnings[0][0] == cli_train.NO_WORKER_WARN_S  # not before the patience ran out, and at once after it


def test_train_wait_says_nothing_of_workers_when_one_starts_the_job_in_time() -> None:
    from mimicsafe import cli_train

    views = iter([_job("running", 1), _job("completed", 3)])
    said: list[str] = []
    cli_train.follow(_job("queued"), lambda: next(views), echo=said.append, clock=lambda: 0.0, sleep=lambda _: None)
    assert not [line for line in said if "worker" in line]
