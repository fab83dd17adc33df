"""The persistent index build: opened by another process with the same verdicts, crash-safe, replayed past."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from benchmarks import synthetic_art as art
from mimicsafe import accounts, audit, index_builds, portfolio
from mimicsafe.context import Instance
from mimicsafe.db.models import PortfolioItem
from mimicsafe.imaging import NamedFile
from mimicsafe.registry import PORTFOLIO_WITHDRAWN, Registry
from mimicsafe.settings import REPO_ROOT, Settings
from ownership.fingerprint import compute_fingerprint
from ownership.index_store import BuildWriter
from ownership.types import DecodedImage
from tests.gate_helpers import artwork, jpeg_bytes, png_bytes

# 3 artists x 8 works: ~12k descriptors, above the 8192 from which the index buckets by a vocabulary
# tree, so a build holds mapped inverted lists (below, a build is loaded into memory)
ARTISTS, WORKS = (1, 2, 3), 8


def _register(instance: Instance, name: str, works: list[np.ndarray], *, create: bool = True) -> None:
    with instance.transaction() as s:
        if create:
            accounts.create_user(session=s, username=name, role="artist", password="a long password")
        portfolio.add_items(
            session=s,
            blobs=instance.blobs,
            settings=instance.settings,
            username=name,
            files=[NamedFile(f"{name}-{i}.png", png_bytes(w)) for i, w in enumerate(works)],
            evidence_url="https://example.org/gallery",
            actor=name,
        )
    with instance.transaction() as s:
        verified, _ = portfolio.verify_items(session=s, registry=instance.registry, username=name, admin="root")
        assert len(verified) == len(works)


@pytest.fixture
def registered(instance: Instance) -> dict[str, list[np.ndarray]]:
    with instance.transaction() as s:
        accounts.create_user(session=s, username="root", role="admin", password="a long password")
    works = {f"artist{a}": [artwork(a, k) for k in range(WORKS)] for a in ARTISTS}
    for name, ws in works.items():
        _register(instance, name, ws)
    return works


def _queries(works: dict[str, list[np.ndarray]]) -> list[np.ndarray]:
    """Attacked copies (caught by local features or PDQ), and new works of the same artists (not copies)."""
    out = []
    for a in ARTISTS:
        ws = works[f"artist{a}"]
        out += [
            art.crop(ws[0], 0.2, "corner"),
            art.crop(ws[1], 0.35, "center"),
            ws[2][:, ::-1].copy(),
            art.make_artwork(art.make_artist(a), 50),
        ]
    return out


def _verdicts(registry: Registry, instance: Instance, images: list[np.ndarray]) -> list[list[list[object]]]:
    out = []
    with instance.reading() as s:
        for image in images:
            fp = compute_fingerprint(DecodedImage(rgb=np.ascontiguousarray(image), format="PNG"))
            out.append([[m.owner, m.item_sha256, m.method, m.score] for m in registry.search(s, fp)])
    return out


SECOND_PROCESS = """
import json, sys
import numpy as np
from mimicsafe.context import open_instance
from mimicsafe.settings import load_settings
from tests.test_index_builds import _verdicts
images = [np.asarray(a) for a in np.load(sys.argv[1], allow_pickle=False).values()]
instance = open_instance(load_settings())
registry = instance.registry
print(json.dumps({"verdicts": _verdicts(registry, instance, images), "opened_from": registry.opened_from}))
"""


def _in_second_process(settings: Settings, images: list[np.ndarray], tmp_path: Path) -> dict[str, object]:
    path = tmp_path / "queries.npz"
    np.savez(path, *images)
    done = subprocess.run(
        [sys.executable, "-c", SECOND_PROCESS, str(path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        env={**_env(), "MIMICSAFE_HOME": str(settings.home_dir), "PYTHONPATH": str(REPO_ROOT)},
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("MIMICSAFE_HOME")}


def test_a_build_opened_by_another_process_gives_the_in_memory_verdicts(
    instance: Instance, settings: Settings, registered: dict[str, list[np.ndarray]], tmp_path: Path
) -> None:
    queries = _queries(registered)
    from_tables = Registry(settings)
    expected = _verdicts(from_tables, instance, queries)
    assert from_tables.opened_from == "tables"
    caught = [v for v in expected if v]
    assert len(caught) >= 3 * len(ARTISTS)  # the copies are caught: the comparison below means something

    info = index_builds.build_index(instance)
    assert info.works == len(ARTISTS) * WORKS and info.descriptors > 8192
    other = _in_second_process(settings, queries, tmp_path)
    assert other["opened_from"] == f"build {info.name}"
    assert other["verdicts"] == expected
    # a process that loaded the tables moves to the build at its next look-up, with the same answers
    assert _verdicts(from_tables, instance, queries[:2]) == expected[:2]
    assert from_tables.opened_from == f"build {info.name}"


def test_a_build_that_fails_halfway_leaves_the_previous_one_in_use(
    instance: Instance, settings: Settings, registered: dict[str, list[np.ndarray]]
) -> None:
    first = index_builds.build_index(instance)
    _register(instance, "late", [artwork(7, 0)])

    class Crashing(BuildWriter):
        def finish(self, position: dict[str, object]) -> dict[str, object]:
            raise OSError("disk full (simulated)")

    with pytest.raises(OSError, match="simulated"):
        index_builds.build_index(instance, writer=Crashing)
    assert index_builds.current_build_name(settings) == first.name
    builds = settings.home_dir / "index" / "builds"
    assert [p.name for p in builds.iterdir()] == [first.name]  # the half-written one was removed

    fresh = Registry(settings)
    copy = art.crop(artwork(7, 0), 0.15, "corner")
    verdicts = _verdicts(fresh, instance, [copy])
    assert fresh.opened_from == f"build {first.name}"
    assert [m[0] for m in verdicts[0]] == ["late"]  # verified after the build: replayed from the log


def test_entries_after_the_build_are_replayed(
    instance: Instance, settings: Settings, registered: dict[str, list[np.ndarray]]
) -> None:
    index_builds.build_index(instance)
    gone = registered["artist1"][3]
    with instance.transaction() as s:
        item = s.scalars(select(PortfolioItem).where(PortfolioItem.file_name == "artist1-3.png")).one()
        item.status = "withdrawn"
        audit.append(s, actor="root", action=PORTFOLIO_WITHDRAWN, subject="artist1", details={"sha256": item.sha256})
    _register(instance, "newcomer", [artwork(8, 1)])

    fresh = Registry(settings)
    gone_copy, new_copy, kept_copy = (
        art.crop(gone, 0.15, "corner"),
        jpeg_copy(artwork(8, 1)),
        art.crop(registered["artist1"][4], 0.15, "corner"),
    )
    verdicts = _verdicts(fresh, instance, [gone_copy, new_copy, kept_copy])
    assert fresh.opened_from is not None and fresh.opened_from.startswith("build ")
    assert verdicts[0] == []
    assert [m[0] for m in verdicts[1]] == ["newcomer"]
    assert [m[0] for m in verdicts[2]] == ["artist1"]
    with instance.reading() as s:
        assert fresh.size(s) == len(ARTISTS) * WORKS  # one withdrawn, one added


def jpeg_copy(image: np.ndarray) -> np.ndarray:
    from io import BytesIO

    from PIL import Image

    return np.asarray(Image.open(BytesIO(jpeg_bytes(image, 70))).convert("RGB"))


def test_the_worker_rebuilds_when_enough_changed(
    instance: Instance, settings: Settings, registered: dict[str, list[np.ndarray]]
) -> None:
    due = settings.model_copy(update={"index_rebuild_changes": 2, "index_rebuild_minutes": 0})
    assert index_builds.keep_current(instance) is not None  # no build yet and works registered: due
    with instance.reading() as s:
        assert not index_builds.rebuild_due(due, s)
    _register(instance, "one", [artwork(9, 0)])
    with instance.reading() as s:
        assert index_builds.changes_since_build(due, s) == 1
        assert not index_builds.rebuild_due(due, s)
    _register(instance, "two", [artwork(9, 1)])
    with instance.reading() as s:
        assert index_builds.rebuild_due(due, s)


def test_index_build_from_the_command_line(
    instance: Instance, settings: Settings, tmp_path: Path, registered: dict[str, list[np.ndarray]]
) -> None:
    from ui.cli import app

    runner = CliRunner()
    home = str(settings.home_dir)
    status = runner.invoke(app, ["--home", home, "--json", "index", "status"])
    assert status.exit_code == 0 and json.loads(status.output)["build"] is None
    built = runner.invoke(app, ["--home", home, "--json", "index", "build"])
    assert built.exit_code == 0, built.output
    payload = json.loads(built.output)
    assert payload["works"] == len(ARTISTS) * WORKS
    assert index_builds.current_build_name(settings) == payload["build"]
    status = json.loads(runner.invoke(app, ["--home", home, "--json", "index", "status"]).output)
    assert status == {
        "build": payload["build"],
        "changes_since": 0,
        "position": payload["position"],
        "works": len(ARTISTS) * WORKS,
    }

    stolen = tmp_path / "stolen.jpg"
    stolen.write_bytes(jpeg_bytes(art.crop(registered["artist2"][5], 0.15, "corner"), 80))
    with instance.transaction() as s:
        accounts.create_user(session=s, username="mallory", role="artist", password="a long password")
    checked = runner.invoke(app, ["--home", home, "--json", "check", "mallory", str(stolen)])
    assert checked.exit_code in (0, 1), checked.output
    assert "matches_other_artist" in checked.output  # the command opened the build and replayed nothing
