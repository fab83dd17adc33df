"""Look-up latency with the index in 2 Ray shards against 1, on a local Ray cluster, side by side.

    python -m benchmarks.gate_shards [--size 3000]

The same works (planted real artworks among synthesised distractors, as `gate_scale` makes them) are
written as one build and as 2 shard builds; one Ray actor holds the single build, two hold the shards
(`mimicsafe.index_shards.ShardedIndex`), and every query (crops and rotations of the planted works)
goes to both, alternately. Reported: median and p90 per look-up, the ratio, and whether every
verdict was identical. Target: 2 shards no slower than 1.3 × one.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.gate_scale import PLANTED_PER_ARTIST, _distractor, _fingerprint, _fingerprint_pool, _planted


def main() -> None:
    import ray

    from mimicsafe.index_shards import ShardedIndex, write_shards
    from ownership.fingerprint import Fingerprint

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=3000)
    args = parser.parse_args()
    _, planted, queries = _planted()
    pool = np.concatenate([_fingerprint_pool(b) for b in planted])
    rng = np.random.default_rng(0)
    where = dict(zip(rng.choice(args.size, len(planted), replace=False).tolist(), range(len(planted)), strict=True))

    def rows() -> list[tuple[str, str, object]]:
        local = np.random.default_rng(1)
        out: list[tuple[str, str, object]] = []
        for i in range(args.size):
            k = where.get(i)
            blob = planted[k] if k is not None else _distractor(local, pool)
            owner = f"artist{k // PLANTED_PER_ARTIST}" if k is not None else "crowd"
            out.append((f"{i:064x}", owner, Fingerprint.from_bytes(blob)))
        return out

    work = Path(tempfile.mkdtemp(prefix="gate-shards-"))
    t = time.monotonic()
    single_build = write_shards(rows(), work / "one", 1)
    shard_builds = write_shards(rows(), work / "two", 2)
    print(f"{args.size:,} works: builds written in {time.monotonic() - t:.0f} s", flush=True)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        # three actors on a 2-CPU cluster: half a CPU each, or the third would wait for a free one
        one, two = ShardedIndex(single_build, cpus_per_shard=0.5), ShardedIndex(shard_builds, cpus_per_shard=0.5)
        assert len(one) == len(two) == args.size
        fps = [_fingerprint(q) for q in queries]
        one.search(fps[0])
        two.search(fps[0])
        t1, t2, same = [], [], 0
        for fp in fps:
            s = time.perf_counter()
            a = one.search(fp)
            t1.append(time.perf_counter() - s)
            s = time.perf_counter()
            b = two.search(fp)
            t2.append(time.perf_counter() - s)
            same += a == b
    finally:
        ray.shutdown()
    m1, m2 = 1000 * float(np.median(t1)), 1000 * float(np.median(t2))
    p1, p2 = 1000 * float(np.percentile(t1, 90)), 1000 * float(np.percentile(t2, 90))
    print("| shards | median ms | p90 ms | × one shard (median) | identical verdicts |")
    print("| --- | --- | --- | --- | --- |")
    print(f"| 1 | {m1:.1f} | {p1:.1f} | 1.00 | |")
    print(f"| 2 | {m2:.1f} | {p2:.1f} | {m2 / m1:.2f} (target ≤ 1.3) | {same}/{len(fps)} |")


if __name__ == "__main__":
    main()
