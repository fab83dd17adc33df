"""The job queue (Huey): SQLite storage under home by default, Redis when MIMICSAFE_QUEUE_URL says so.

Tasks are registered on a queue built for one instance, so a task body reaches the database through
that instance rather than a module global. The worker is `mimicsafe worker`, or the consumer that
`mimicsafe serve` runs beside the app.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from typing import Any

from huey import Huey, RedisHuey, SqliteHuey
from huey.api import TaskWrapper

from mimicsafe.context import Instance
from mimicsafe.training.tasks import register_training_tasks
from mimicsafe.trust.tasks import register_trust_tasks

log = logging.getLogger(__name__)


@dataclass
class Queue:
    huey: Huey
    tasks: dict[str, TaskWrapper]

    def enqueue(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self.tasks[name](*args, **kwargs)

    def pending_count(self) -> int:
        return self.huey.pending_count()


def make_huey(url: str) -> Huey:
    if url.startswith(("redis://", "rediss://")):
        return RedisHuey("mimicsafe", url=url)
    return SqliteHuey("mimicsafe", filename=url.removeprefix("sqlite:///"))


def build_queue(instance: Instance) -> Queue:
    huey = make_huey(instance.settings.huey_url)

    @huey.task(name="ping")
    def ping(token: str) -> dict[str, Any]:
        """Health check: proves a worker is consuming this queue and can reach the database."""
        with instance.transaction() as session:
            session.connection()
        return {"token": token, "worker": f"{socket.gethostname()}:{os.getpid()}"}

    return Queue(huey=huey, tasks={"ping": ping, **register_training_tasks(huey, instance),
                                   **register_trust_tasks(huey, instance)})


def run_worker(queue: Queue, *, workers: int = 1) -> None:
    """Run a consumer in the foreground until SIGINT/SIGTERM (handled gracefully by Huey)."""
    consumer = queue.huey.create_consumer(workers=workers, worker_type="thread", periodic=False)
    consumer.run()
