"""The gate at registry scale: memory per work, time to first verdict, look-up latency, recall.

    python -m benchmarks.gate_scale --sizes 10000,30000,100000 [--tables-up-to 10000]

For each size, a fresh home whose database holds that many verified works in the real format
(`PortfolioItem.fingerprint` blobs as `Registry` reads them): a few dozen real synthetic artworks
(`synthetic_art`, fingerprinted for real: the planted originals) among synthesised distractors, each
with its own descriptors (real ORB descriptors of other artworks with random bit flips), its own
keypoints, PDQ hashes and its own grey copy (a PNG of its own pixels, not one shared image).
Then, side by side:

* `build`: `mimicsafe index build`, then two fresh processes at once, each opening the build,
  answering a first verdict, then every query (crops and rotations of the planted works);
* `tables` (the old path, only up to `--tables-up-to` works, it takes minutes): one fresh process
  without a build, loading every blob into memory as before.

Reported per process: wall time from spawn to first verdict (and CPU), robust look-up median/p90
(over a second pass of the queries; the first pass's median is in the JSON line as `cold_median_ms`),
recall of the planted works, and memory from /proc/self/smaps_rollup after the look-ups, minus an
empty instance's: RSS, PSS (shared pages split between the processes mapping them) and USS (pages
only this process holds), per registered work. A linear fit over the sizes extrapolates to 1M and
10M works.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

PLANTED_ARTISTS = 10
PLANTED_PER_ARTIST = 2


def _fingerprint(rgb: np.ndarray) -> Any:
    from ownership.fingerprint import compute_fingerprint
    from ownership.types import DecodedImage

    return compute_fingerprint(DecodedImage(rgb=np.ascontiguousarray(rgb), format="PNG"))


def _planted() -> tuple[list[np.ndarray], list[bytes], list[np.ndarray]]:
    from benchmarks import synthetic_art as art

    works = [art.make_artwork(art.make_artist(a), k) for a in range(PLANTED_ARTISTS) for k in range(PLANTED_PER_ARTIST)]
    blobs = [_fingerprint(w).to_bytes() for w in works]
    queries = []
    for w in works:
        queries += [art.crop(w, 0.15, "tl"), art.rotate(w, 8, crop_inside=True)]
    return works, blobs, queries


def _distractor(rng: np.random.Generator, pool: np.ndarray) -> bytes:
    """A fingerprint blob of its own: ORB-like descriptors (pool descriptors with ~10 % of bits
    flipped), keypoints, PDQ hashes and a 320-px grey copy made of its own random pixels."""
    from ownership.fingerprint import Fingerprint
    from ownership.local_features import Keypoints, LocalFeatures

    def keypoints(n: int) -> Keypoints:
        desc = pool[rng.integers(0, len(pool), n)]
        flips = np.packbits(rng.random((n, 256)) < 0.1, axis=1)
        pts = (rng.random((n, 2)) * (512, 384)).astype(np.float32)
        return Keypoints(pts, np.ascontiguousarray(desc ^ flips))

    small = rng.integers(0, 256, (12 + int(rng.integers(0, 12)), 16 + int(rng.integers(0, 12))), np.uint8)
    # flat areas of a few grey levels with edges, as illustrations have (PNG of 6-28 KB, not noise)
    gray = (cv2.resize(small, (320, 240), interpolation=cv2.INTER_CUBIC) // 40 * 40).astype(np.uint8)
    cv2.line(
        gray,
        tuple(int(v) for v in rng.integers(0, 240, 2)),
        tuple(int(v) for v in rng.integers(0, 240, 2)),
        int(rng.integers(0, 256)),
        3,
    )
    robust = LocalFeatures(width=512, height=384, view=keypoints(500), mirror=keypoints(500), gray=gray)
    hashes = tuple(rng.integers(0, 256, 32, np.uint8).tobytes() for _ in range(8))
    return Fingerprint(pdq=hashes[0], pdq_quality=80, pdq_dihedral=hashes, robust=robust, low_detail=False).to_bytes()


def populate(home: Path, size: int, planted: list[bytes], seed: int = 0) -> float:
    """A home with `size` verified works (the planted ones among them); returns seconds taken."""
    from sqlalchemy import insert

    from mimicsafe import accounts
    from mimicsafe.context import open_instance
    from mimicsafe.db.models import PortfolioItem, User
    from mimicsafe.settings import load_settings

    started = time.monotonic()
    instance = open_instance(load_settings(home=home))
    with instance.transaction() as s:
        for a in range(PLANTED_ARTISTS):
            accounts.create_user(session=s, username=f"artist{a}", role="artist", password="a long password")
        accounts.create_user(session=s, username="crowd", role="artist", password="a long password")
    with instance.transaction() as s:
        users = {u.username: u.id for u in s.query(User)}
    if size == 0:
        instance.close()
        return time.monotonic() - started
    pool = np.concatenate([_fingerprint_pool(b) for b in planted])
    rng = np.random.default_rng(seed)
    where = set(rng.choice(size, len(planted), replace=False).tolist())
    planted_iter = iter(enumerate(planted))
    batch: list[dict[str, Any]] = []
    for i in range(size):
        if i in where:
            k, blob = next(planted_iter)
            user = users[f"artist{k // PLANTED_PER_ARTIST}"]
        else:
            blob, user = _distractor(rng, pool), users["crowd"]
        batch.append(
            {"user_id": user, "sha256": f"{i:064x}", "file_name": f"{i}.png", "status": "verified", "fingerprint": blob}
        )
        if len(batch) == 1000 or i == size - 1:
            with instance.transaction() as s:
                s.execute(insert(PortfolioItem), batch)
            batch = []
    instance.close()
    return time.monotonic() - started


def _fingerprint_pool(blob: bytes) -> np.ndarray:
    from ownership.fingerprint import Fingerprint

    return Fingerprint.from_bytes(blob).robust.view.descriptors


# one serving process ---------------------------------------------------------------------------
def _smaps() -> dict[str, int]:
    out = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        out[name] = int(value.split()[0]) * 1024
    return out


def child(home: str, queries_path: str, mode: str, out: str, barrier: str, peers: int) -> None:
    started = time.time()
    from mimicsafe import index_builds
    from mimicsafe.context import open_instance
    from mimicsafe.settings import load_settings

    if mode == "tables":
        index_builds.current_build_name = lambda settings: None  # type: ignore[assignment]  # the old path
    queries = list(np.load(queries_path).values())
    instance = open_instance(load_settings(home=Path(home)))
    t0 = time.time()
    with instance.reading() as s:
        first = instance.registry.search(s, _fingerprint(queries[0]))
    first_at = time.time()
    cpu_first = time.process_time()
    fps = [_fingerprint(q) for q in queries]
    cold, times, hits = [], [], 0
    with instance.reading() as s:
        for i, fp in enumerate(fps + fps):  # the second pass: pages the first touched are mapped
            t = time.perf_counter()
            matches = instance.registry.search(s, fp)
            (cold if i < len(fps) else times).append(time.perf_counter() - t)
            if i < len(fps):
                hits += any(m.owner == f"artist{(i // 2) // PLANTED_PER_ARTIST}" for m in matches)
    Path(f"{barrier}.{os.getpid()}").touch()
    deadline = time.time() + 600
    while len(list(Path(barrier).parent.glob(Path(barrier).name + ".*"))) < peers and time.time() < deadline:
        time.sleep(0.2)
    mem = _smaps()
    time.sleep(1.0)  # the peer reads its own figures while this one still maps the build
    Path(out).write_text(
        json.dumps(
            {
                "first_verdict_s": first_at - started,
                "open_and_first_s": first_at - t0,
                "cpu_first_s": cpu_first,
                "first_matches": len(first),
                "median_ms": 1000 * float(np.median(times)),
                "p90_ms": 1000 * float(np.percentile(times, 90)),
                "cold_median_ms": 1000 * float(np.median(cold)),
                "recall": hits / len(fps),
                "opened_from": instance.registry.opened_from,
                "rss": mem["Rss"],
                "pss": mem["Pss"],
                "uss": mem["Private_Clean"] + mem["Private_Dirty"],
                "anon": mem.get("Anonymous", 0),
            }
        )
    )


def _run_children(home: Path, queries: Path, mode: str, n: int, work: Path) -> list[dict[str, Any]]:
    barrier = work / f"barrier-{mode}-{time.time_ns()}"
    outs = [work / f"{mode}-{i}-{time.time_ns()}.json" for i in range(n)]
    procs = []
    for i, o in enumerate(outs):  # one after the other: each measured alone, all mapping the build at the end
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.gate_scale",
                    "--child",
                    str(home),
                    str(queries),
                    mode,
                    str(o),
                    str(barrier),
                    str(n),
                ]
            )
        )
        while len(list(work.glob(barrier.name + ".*"))) <= i and procs[-1].poll() is None:
            time.sleep(0.2)
    for p in procs:
        if p.wait() != 0:
            raise SystemExit(f"a {mode} process failed")
    return [json.loads(o.read_text()) for o in outs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000", help="comma-separated, e.g. 10000,30000,100000")
    parser.add_argument("--tables-up-to", type=int, default=10000, help="run the old in-memory path up to this size")
    parser.add_argument("--work", type=Path, default=None, help="scratch directory (default: a temporary one)")
    parser.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        home, queries, mode, out, barrier, peers = args.child
        child(home, queries, mode, out, barrier, int(peers))
        return
    from mimicsafe.context import open_instance
    from mimicsafe.index_builds import build_index
    from mimicsafe.settings import load_settings

    work = args.work or Path(tempfile.mkdtemp(prefix="gate-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    _, planted, queries = _planted()
    qpath = work / "queries.npz"
    np.savez(qpath, *queries)
    empty = work / "empty"
    populate(empty, 0, planted)
    base = _run_children(empty, qpath, "tables", 1, work)[0]
    print(
        f"empty instance: RSS {base['rss'] / 1e6:.0f} MB, PSS {base['pss'] / 1e6:.0f} MB, "
        f"USS {base['uss'] / 1e6:.0f} MB",
        flush=True,
    )
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        home = work / f"home-{size}"
        shutil.rmtree(home, ignore_errors=True)
        fill = populate(home, size, planted)
        db = (home / "mimicsafe.db").stat().st_size
        instance = open_instance(load_settings(home=home))
        info = build_index(instance)
        instance.close()
        served = _run_children(home, qpath, "build", 2, work)
        row: dict[str, Any] = {
            "size": size,
            "fill_s": fill,
            "db_bytes": db,
            "build_s": info.seconds,
            "build_bytes": info.bytes,
            "build": served,
        }
        if size <= args.tables_up_to:
            row["tables"] = _run_children(home, qpath, "tables", 1, work)[0]
        rows.append(row)
        print(json.dumps(row), flush=True)
        shutil.rmtree(home / "blobs", ignore_errors=True)
    _report(rows, base)


def _per_work(value: float, base: float, size: int) -> float:
    return (value - base) / size / 1024


def _report(rows: list[dict[str, Any]], base: dict[str, Any]) -> None:
    print(
        "\nper serving process, after the look-ups; memory per registered work net of an empty instance "
        f"(RSS {base['rss'] / 1e6:.0f} MB)"
    )
    print(
        "| works | path | RSS KB/work | PSS KB/work | USS KB/work | first verdict s (CPU) | median ms | p90 ms "
        "| recall | build s | build MB |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        n = r["size"]
        paths = [("build (2 processes)", p) for p in r["build"]]
        paths += [("tables (old)", r["tables"])] if "tables" in r else []
        for name, p in paths:
            print(
                f"| {n:,} | {name} | {_per_work(p['rss'], base['rss'], n):.1f} "
                f"| {_per_work(p['pss'], base['pss'], n):.1f} | {_per_work(p['uss'], base['uss'], n):.1f} "
                f"| {p['first_verdict_s']:.1f} ({p['cpu_first_s']:.1f}) "
                f"| {p['median_ms']:.0f} | {p['p90_ms']:.0f} | {p['recall']:.2f} "
                f"| {r['build_s']:.0f} | {r['build_bytes'] / 1e6:.0f} |"
            )
        if "tables" in r:
            b, t = r["build"][0], r["tables"]
            print(
                f"| {n:,} | ratio old/build | {_ratio(t['rss'] - base['rss'], b['rss'] - base['rss'])} "
                f"| {_ratio(t['pss'] - base['pss'], b['pss'] - base['pss'])} "
                f"| {_ratio(t['uss'] - base['uss'], b['uss'] - base['uss'])} "
                f"| {_ratio(t['first_verdict_s'], b['first_verdict_s'])} | {_ratio(t['median_ms'], b['median_ms'])} "
                f"| {_ratio(t['p90_ms'], b['p90_ms'])} | | | |"
            )
    if len(rows) >= 2:
        sizes = np.array([r["size"] for r in rows], float)
        print("\nlinear fit over the sizes measured (value = a + b × works), build path:")
        for key in ("rss", "pss", "uss"):
            values = np.array([np.mean([p[key] for p in r["build"]]) for r in rows])
            b, a = np.polyfit(sizes, values, 1)
            print(
                f"  {key.upper()}: {b / 1024:.2f} KB/work + {a / 1e6:.0f} MB → 1M: {(a + b * 1e6) / 1e9:.1f} GB, "
                f"10M: {(a + b * 1e7) / 1e9:.1f} GB"
            )
        first = np.array([np.mean([p["first_verdict_s"] for p in r["build"]]) for r in rows])
        b, a = np.polyfit(sizes, first, 1)
        print(
            f"  first verdict: {a:.1f} s + {b * 1e6:.1f} s per 1M works → 1M: {a + b * 1e6:.1f} s, "
            f"10M: {a + b * 1e7:.1f} s"
        )
        build = np.array([r["build_s"] for r in rows])
        b, a = np.polyfit(sizes, build, 1)
        print(f"  build: {b * 1e6 / 60:.0f} min per 1M works → 10M: {(a + b * 1e7) / 3600:.1f} h")


def _ratio(old: float, new: float) -> str:
    return f"{old / new:.1f}×" if new > 0 else "—"


if __name__ == "__main__":
    main()
