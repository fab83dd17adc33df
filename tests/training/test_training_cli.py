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
