"""The Huey task that re-scans, and the start-up hook that resumes re-scans left unfinished."""

from __future__ import annotations

import logging
from typing import Any

from huey import Huey
from huey.api import TaskWrapper

from mimicsafe.context import Instance
from mimicsafe.trust import rescan

log = logging.getLogger(__name__)


def register_trust_tasks(huey: Huey, instance: Instance) -> dict[str, TaskWrapper]:
    @huey.task(name=rescan.RESCAN_TASK)
    def trust_rescan(rescan_id: int) -> dict[str, Any]:
        """Re-scan the accepted uploads against the works of one `Rescan` row (resumes where it stopped)."""
        return rescan.run(instance, rescan_id)

    @huey.on_startup(name="recover_rescans")
    def recover_rescans() -> None:
        for rescan_id in rescan.recover(instance):
            log.info("re-scan %d is unfinished; queued to resume", rescan_id)
            trust_rescan(rescan_id)

    return {rescan.RESCAN_TASK: trust_rescan}
