"""A job trained by two processes (`torchrun`, the CPU's gloo backend standing in for GPUs): each
process takes its own share of every step, and the job ends with one model, stored once."""

from __future__ import annotations

import os
import subprocess
import sys

from safetensors import safe_open
from sqlalchemy import func, select

from mimicsafe.db.models import AuditEntry, LoraModel, TrainingJob
from mimicsafe.training import service


def _launch(home, job_id: int) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MIMICSAFE_HOME": str(home), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "mimicsafe.training.launch", str(job_id)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, check=False)


def test_two_processes_share_every_step_and_store_one_model(studio, queue) -> None:
    instance = studio.instance
    studio.upload("alice", 4)
    job = service.submit_training(instance=instance, queue=queue, username="alice", actor="alice",
                                  preset="tiny", steps=4)

    done = _launch(instance.settings.home_dir, job.id)

    assert done.returncode == 0, done.stderr[-4000:]
    with instance.transaction() as s:
        row = s.get(TrainingJob, job.id)
        assert row is not None and row.status == "completed" and row.step == 4
        models = s.scalars(select(LoraModel).where(LoraModel.job_id == job.id)).all()
        completions = s.scalar(select(func.count()).select_from(AuditEntry)
                               .where(AuditEntry.action == "training.complete"))
    assert len(models) == 1 and completions == 1
    with safe_open(str(instance.blobs.path_for(models[0].blob_sha256)), framework="pt") as f:
        metadata = f.metadata()
    # 4 steps x 2 processes x batch 1 = 8 batches over 4 images: two epochs (one process would see one).
    assert metadata["ss_num_epochs"] == "2"
    assert metadata["mimicsafe.job_id"] == str(job.id)


def test_a_job_that_is_not_queued_is_refused_by_every_process(studio, queue) -> None:
    instance = studio.instance
    studio.upload("alice", 2)
    job = service.submit_training(instance=instance, queue=queue, username="alice", actor="alice",
                                  preset="tiny", steps=2)
    with instance.transaction() as s:
        service.cancel_job(session=s, job_id=job.id, actor="alice")

    done = _launch(instance.settings.home_dir, job.id)

    assert done.returncode != 0
    assert f"job {job.id} is not queued" in done.stderr
