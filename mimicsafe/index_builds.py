"""Index builds under `<home>/index`: written by `mimicsafe index build` or the worker, opened by every process.

Layout:

    <home>/index/builds/<seq>-<id>/   one build (`ownership.index_store`): the index of every registered
                                      work as of audit entry <seq>, with `meta.json` written last
    <home>/index/current             a symlink to the build in use, replaced atomically (rename)
    <home>/index/build.lock          held by the one process writing a build

A build is written into `builds/.tmp-<id>`, fsynced, renamed into place, and only then is `current`
flipped; a process that dies halfway (or a writer that raises) leaves `current` on the previous build,
and its temporary directory is swept by the next build. The two newest builds are kept, so a process
that opened the previous one keeps reading files that exist (and mapped pages outlive an unlink anyway).

A process opens the build `current` names if it was written for the current PDQ settings and its
position is still in this database's audit log (the same sequence number with the same entry hash),
then replays the audit entries after that position (`mimicsafe.registry.Registry`).
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mimicsafe.db.models import AuditEntry
from mimicsafe.settings import Settings
from ownership.index import MatchIndex
from ownership.index_store import BuildError, BuildWriter, fsync_dir, open_build, read_meta

if TYPE_CHECKING:
    from mimicsafe.context import Instance

log = logging.getLogger(__name__)

KEEP_BUILDS = 2


def index_dir(settings: Settings) -> Path:
    return settings.home_dir / "index"


def current_build_name(settings: Settings) -> str | None:
    """The directory name of the build in use, or None: one readlink, cheap enough for every look-up."""
    try:
        return Path(os.readlink(index_dir(settings) / "current")).name
    except OSError:
        return None


def current_build(settings: Settings) -> Path | None:
    name = current_build_name(settings)
    return None if name is None else index_dir(settings) / "builds" / name


@dataclass(frozen=True)
class OpenedBuild:
    name: str
    index: MatchIndex
    position: tuple[int, str]  # the audit entry (seq, entry_hash) the build covers


def open_current_build(settings: Settings, session: Session, head: tuple[int, str]) -> OpenedBuild | None:
    """The current build as a MatchIndex, if it is usable for this session (`head`: its audit head);
    None (and a log line saying why) when the caller must load from the tables instead."""
    from mimicsafe.registry import index_thresholds  # registry imports this module

    path = current_build(settings)
    if path is None:
        return None
    try:
        meta = read_meta(path)
        seq, entry_hash = int(meta["position"]["seq"]), str(meta["position"]["entry_hash"])
        if seq > head[0]:
            log.info("index build %s is newer than this transaction's view of the log; loading the tables", path.name)
            return None
        if seq and session.scalar(select(AuditEntry.entry_hash).where(AuditEntry.seq == seq)) != entry_hash:
            log.warning("index build %s does not match this database's audit log; loading the tables", path.name)
            return None
        index = open_build(path, **index_thresholds(settings))
    except BuildError as exc:
        log.warning("%s; loading the tables", exc)
        return None
    return OpenedBuild(path.name, index, (seq, entry_hash))


@dataclass(frozen=True)
class BuildInfo:
    name: str
    path: Path
    position: int
    works: int
    descriptors: int
    bytes: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "build": self.name,
            "path": str(self.path),
            "position": self.position,
            "works": self.works,
            "descriptors": self.descriptors,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 2),
        }


@contextmanager
def _build_lock(root: Path) -> Iterator[None]:
    with open(root / "build.lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # one writer per home; released when the file is closed
        yield


def build_index(instance: Instance, *, writer: Callable[..., BuildWriter] = BuildWriter) -> BuildInfo:
    """Write a build of every registered work as of now, then make it current. Lookups elsewhere go on
    meanwhile (on the previous build, or the tables); only another build waits."""
    from mimicsafe.registry import add_row, head_of, registered_rows  # registry imports this module

    settings = instance.settings
    root = index_dir(settings)
    builds = root / "builds"
    builds.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with _build_lock(root):
        _sweep(builds, keep=current_build_name(settings))
        tmp = builds / f".tmp-{uuid.uuid4().hex}"
        try:
            with instance.reading() as session:  # one snapshot: the rows are those the position covers
                seq, entry_hash = head_of(session)
                out = writer(tmp, pdq_threshold=settings.pdq_threshold, min_pdq_quality=settings.pdq_min_quality)
                for row in registered_rows(session):
                    add_row(out, row)
                meta = out.finish({"seq": seq, "entry_hash": entry_hash})
            final = builds / f"{seq:012d}-{uuid.uuid4().hex[:8]}"
            os.rename(tmp, final)
            fsync_dir(builds)
            link = root / f".current-{uuid.uuid4().hex}"
            os.symlink(Path("builds") / final.name, link)
            os.replace(link, root / "current")  # atomic: readers see the old build or the new one
            fsync_dir(root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _sweep(builds, keep=final.name)
    size = sum(p.stat().st_size for p in final.iterdir())
    log.info(
        "index build %s: %d works as of audit entry %d, %.1f s",
        final.name,
        meta["works"],
        seq,
        time.monotonic() - started,
    )
    return BuildInfo(
        final.name, final, seq, int(meta["works"]), int(meta["descriptors"]), size, time.monotonic() - started
    )


def _sweep(builds: Path, *, keep: str | None) -> None:
    """Remove temporaries of builds that died (we hold the build lock: none is being written) and all
    but the KEEP_BUILDS newest builds, never the current one."""
    for tmp in builds.glob(".tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)
    done = sorted(p for p in builds.iterdir() if not p.name.startswith("."))
    for old in done[:-KEEP_BUILDS]:
        if old.name != keep:
            shutil.rmtree(old, ignore_errors=True)


def changes_since_build(settings: Settings, session: Session) -> int:
    """Registry changes logged after the current build's position (all of them when there is none)."""
    from mimicsafe.registry import REGISTRY_ACTIONS

    position = 0
    path = current_build(settings)
    if path is not None:
        try:
            position = int(read_meta(path)["position"]["seq"])
        except BuildError:
            position = 0
    return (
        session.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.seq > position, AuditEntry.action.in_(REGISTRY_ACTIONS))
        )
        or 0
    )


def build_age_s(settings: Settings) -> float | None:
    path = current_build(settings)
    try:
        return None if path is None else time.time() - (path / "meta.json").stat().st_mtime
    except OSError:
        return None


def rebuild_due(settings: Settings, session: Session) -> bool:
    """The worker's rule: `index_rebuild_changes` changes since the build, or any change once the build
    is `index_rebuild_minutes` old (or there is none)."""
    changes = changes_since_build(settings, session)
    if changes >= settings.index_rebuild_changes:
        return True
    age = build_age_s(settings)
    stale = age is None or (settings.index_rebuild_minutes > 0 and age >= 60 * settings.index_rebuild_minutes)
    return changes > 0 and stale


def keep_current(instance: Instance) -> BuildInfo | None:
    """Build if `rebuild_due`: the worker's periodic task."""
    with instance.reading() as session:
        due = rebuild_due(instance.settings, session)
    return build_index(instance) if due else None
