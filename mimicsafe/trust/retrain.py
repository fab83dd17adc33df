"""Retrain without the suspended uploads: the artist's one step after a suspension is upheld (or while it
is open). The new job uses the suspended model's preset, steps and captions, on the artist's uploads
that are eligible now, which leaves out every suspended one."""

from __future__ import annotations

from typing import Any

from mimicsafe.accounts import get_user
from mimicsafe.context import Instance
from mimicsafe.db.models import Dataset, LoraModel, TrainingJob, User
from mimicsafe.errors import NotFoundError, ValidationFailed
from mimicsafe.training import service
from mimicsafe.trust import suspension


def retrain_without_suspended(*, instance: Instance, queue: Any, model_id: int, actor: str) -> TrainingJob:
    with instance.reading() as session:
        model = session.get(LoraModel, model_id)
        requester = get_user(session=session, username=actor)
        hidden = model is None or (requester.role != "admin" and requester.id != model.user_id)
        if model is None or hidden or model.deleted_at is not None:
            raise NotFoundError(f"model {model_id} does not exist")
        if not suspension.model_suspended_uploads(session, model):
            raise ValidationFailed(f"model {model_id} is not suspended; train again with `mimicsafe train` if you "
                                   "want a new one")
        job = session.get(TrainingJob, model.job_id)
        owner = session.get(User, model.user_id)
        dataset = session.get(Dataset, job.dataset_id) if job is not None else None
        if job is None or owner is None or dataset is None:
            raise NotFoundError(f"the training record of model {model_id} is missing")
        captions = {item["file_name"]: item["caption"] for item in dataset.manifest.get("items", [])
                    if item.get("caption")}
        preset, steps, username = job.preset, job.total_steps, owner.username
    return service.submit_training(instance=instance, queue=queue, username=username, actor=actor, preset=preset,
                                   steps=steps, captions=captions, retrain_of=model_id)
