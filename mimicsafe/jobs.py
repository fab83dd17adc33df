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

from huey import Huey, RedisHuey, SqliteHuey, crontab
from huey.api import TaskWrapper

from mimicsafe import index_builds
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

    @huey.periodic_task(crontab(minute="*"), name="index.keep_current")
    def keep_index_current() -> None:
        """Every minute: rebuild the index build when `index_rebuild_changes`/`_minutes` say it is due.
        Several workers may run it; the build lock makes the others wait, then find nothing due."""
        built = index_builds.keep_current(instance)
        if built is not None:
            log.info("index rebuilt: %s", built.as_dict())

    @huey.task(name="index.build")
    def build_index() -> dict[str, Any]:
        """Rebuild the index build now (e.g. after a bulk import)."""
        return index_builds.build_index(instance).as_dict()

    return Queue(huey=huey, tasks={"ping": ping, "index.build": build_index,
                                   **register_training_tasks(huey, instance), **register_trust_tasks(huey, instance)})


def run_worker(queue: Queue, *, workers: int = 1) -> None:
    """Run a consumer in the foreground until SIGINT/SIGTERM (handled gracefully by Huey). Periodic tasks
    run too: the index build is kept current (`index.keep_current`)."""
    consumer = queue.huey.create_consumer(workers=workers, worker_type="thread", periodic=True)
    consumer.run()
