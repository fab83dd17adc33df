"""Train one queued job on several GPUs or machines, data-parallel:

    accelerate launch --config_file configs/accelerate/multi-gpu.yaml -m mimicsafe.training.launch JOB_ID

(`torchrun --nproc_per_node N -m mimicsafe.training.launch JOB_ID` works the same way.) Every process
opens the same instance (same `MIMICSAFE_HOME` and `MIMICSAFE_DATABASE_URL`; on several machines the
home must be shared storage, as the checkpoint and cache live there). The main process claims the job
exactly as a worker does and owns the job row: progress, checkpoints, samples, the model and the audit
entry. The others (followers) check the same manifest themselves — a follower never trains on data the
loader did not verify — train their share of every step and write nothing.

If any process dies, the launcher stops the others; the job stays `running` with a dead worker and a
worker's start-up recovery (`recover_interrupted_jobs`) queues it again to resume from its checkpoint.
A job meant for this launcher should be submitted while no `mimicsafe worker` serves the queue, or the
worker may claim it first (then it simply trains on one device).
"""

from __future__ import annotations

import argparse
import sys

import torch
from accelerate import PartialState
from accelerate.utils import broadcast_object_list

from mimicsafe.context import open_instance
from mimicsafe.settings import load_settings
from mimicsafe.training.errors import DatasetRefused, TrainingCancelled, TrainingFailed
from mimicsafe.training.runner import claim, run_claimed_job, train_job, worker_id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mimicsafe.training.launch", description=__doc__.split("\n")[0])
    parser.add_argument("job_id", type=int)
    args = parser.parse_args(argv)
    state = PartialState(cpu=not torch.cuda.is_available())  # on CPUs: several processes over gloo
    instance = open_instance(load_settings(), upgrade=state.is_main_process)
    try:
        claimed = [claim(instance, args.job_id, worker_id()) if state.is_main_process else None]
        broadcast_object_list(claimed)  # followers wait here until the main process has claimed (or not)
        if not claimed[0]:
            if state.is_main_process:
                print(f"job {args.job_id} is not queued (finished, cancelled or claimed by another worker)",
                      file=sys.stderr)
            return 1
        device = str(state.device)  # this process's own GPU (cuda:N), or the CPU
        if state.is_main_process:
            outcome = run_claimed_job(instance, args.job_id, device=device)
            print(outcome, flush=True)
            return 0 if outcome["status"] == "completed" else 1
        try:
            train_job(instance, args.job_id, device, follower=True)
        except TrainingCancelled:
            pass  # the main process records the cancel
        except (DatasetRefused, TrainingFailed) as exc:
            print(f"process {state.process_index}: {exc}", file=sys.stderr)
            return 1
        return 0
    finally:
        instance.close()


if __name__ == "__main__":
    sys.exit(main())
