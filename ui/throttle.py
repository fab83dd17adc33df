"""Limits on anonymous work: how often one client may do something, and how much runs at once.

`Throttle` counts hits per client in a moving window with the maintained `limits` library. The counts
live where the job queue's Redis is when `MIMICSAFE_QUEUE_URL` names one (so every web server shares
them), otherwise in this process's memory. `Workload` bounds how many calls of a heavy handler run at
once in this process, whatever route called it; a call that cannot start within `wait_seconds` is
refused, so waiting callers cannot pile up without end.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from limits import RateLimitItem, RateLimitItemPerHour, RateLimitItemPerMinute
from limits.storage import MemoryStorage, Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

from mimicsafe.errors import RateLimited
from mimicsafe.settings import Settings

log = logging.getLogger(__name__)


def counter_storage(settings: Settings) -> Storage:
    """Redis when the job queue uses it (shared by every server), else this process's memory."""
    url = settings.queue_url
    if url and url.startswith(("redis://", "rediss://")):
        shared = storage_from_string(url)
        if isinstance(shared, Storage):
            return shared
    return MemoryStorage()


class Throttle:
    """At most `item` hits per key (a client address, a visitor) in a moving window."""

    def __init__(self, name: str, item: RateLimitItem, storage: Storage) -> None:
        self._name, self._item = name, item
        self._limiter = MovingWindowRateLimiter(storage)

    @classmethod
    def per_minute(cls, name: str, amount: int, storage: Storage) -> Throttle:
        return cls(name, RateLimitItemPerMinute(amount), storage)

    @classmethod
    def per_hour(cls, name: str, amount: int, storage: Storage) -> Throttle:
        return cls(name, RateLimitItemPerHour(amount), storage)

    def hit(self, key: str) -> bool:
        """Count one hit for `key`; False (nothing counted) when the window is full."""
        return bool(self._limiter.hit(self._item, "mimicsafe", self._name, key))

    def require(self, key: str, refusal: str) -> None:
        if not self.hit(key):
            log.info("%s: rate limit reached for a client", self._name)
            raise RateLimited(refusal)


class Workload:
    """At most `limit` calls at once in this process; others wait up to `wait_seconds`, then are refused."""

    def __init__(self, name: str, limit: int, *, wait_seconds: float = 60.0) -> None:
        self.name, self.limit, self.wait_seconds = name, limit, wait_seconds
        self._slots = threading.BoundedSemaphore(limit)

    @contextmanager
    def slot(self) -> Iterator[None]:
        if not self._slots.acquire(timeout=self.wait_seconds):
            raise RateLimited(f"{self.name} is busy; try again in a minute")
        try:
            yield
        finally:
            self._slots.release()
