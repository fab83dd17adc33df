"""The Huey task that trains, and the start-up hook that re-queues jobs whose worker died."""

from __future__ import annotations

import logging
from typing import Any

from huey import Huey
from huey.api import TaskWrapper

from mimicsafe.context import Instance

log = logging.getLogger(__name__)

TRAIN_TASK = "train_lora"


def register_training_tasks(huey: Huey, instance: Instance) -> dict[str, TaskWrapper]:
    @huey.task(name=TRAIN_TASK)
    def train_lora(job_id: int) -> dict[str, Any]:
        """Train one queued job (imports the ML stack only here, in the worker)."""
        from mimicsafe.training.runner import run_job

        return run_job(instance, job_id)

    @huey.on_startup(name="recover_training_jobs")
    def recover_training_jobs() -> None:
        from mimicsafe.training.runner import recover_interrupted_jobs

        for job_id in recover_interrupted_jobs(instance):
            log.info("training job %d was interrupted (its worker is gone); queued again to resume", job_id)
            train_lora(job_id)

    return {TRAIN_TASK: train_lora}
