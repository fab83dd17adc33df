"""The rows and blobs a finished training leaves (Dataset → TrainingJob → LoraModel), written directly.

For tests that need a model to list, export, generate with or refuse, without training one first (the
trainer has its own tests). The provenance keys match what `mimicsafe.training.runner` records.
"""

from __future__ import annotations

from datetime import UTC, datetime

from mimicsafe import accounts
from mimicsafe.context import Instance
from mimicsafe.db.models import Dataset, LoraModel, TrainingJob
from mimicsafe.training.manifest import manifest_sha256


def add_finished_model(instance: Instance, username: str, *, weights: bytes, name: str | None = None,
                       kohya: bytes | None = None) -> tuple[int, int]:
    """Store `weights` (and `kohya`, its kohya-format export, if given) as `username`'s model of a completed
    job; `name` defaults to the trainer's "<artist> style (job N)". Returns (job id, model id)."""
    weights_sha256 = instance.blobs.put(weights)
    with instance.transaction() as session:
        user = accounts.get_user(session=session, username=username)
        manifest = {"artist": username, "weights": weights_sha256, "name": name}
        dataset = Dataset(user_id=user.id, manifest=manifest, item_count=1, policy_version="1",
                          manifest_sha256=manifest_sha256(manifest))
        session.add(dataset)
        session.flush()
        job = TrainingJob(user_id=user.id, dataset_id=dataset.id, preset="tiny", config={}, status="completed",
                          step=10, total_steps=10, finished_at=datetime.now(UTC))
        session.add(job)
        session.flush()
        provenance = {"mimicsafe.dataset_manifest_sha256": dataset.manifest_sha256, "mimicsafe.item_count": "1"}
        if kohya is not None:
            provenance["kohya_blob_sha256"] = instance.blobs.put(kohya)
        model = LoraModel(user_id=user.id, job_id=job.id, name=name or f"{username} style (job {job.id})",
                          blob_sha256=weights_sha256, provenance=provenance)
        session.add(model)
        session.flush()
        return job.id, model.id
