"""How fast is the PDQ look-up, and does it find every near neighbour? (issue 3 §2)

    python -m benchmarks.gate_lookup                         # 100k, 1M and 10M registered hashes
    python -m benchmarks.gate_lookup --sizes 100000,1000000 --faiss-multihash

One check = the 8 dihedral PDQ hashes of an upload against every registered hash, Hamming <= 31.
Registered hashes are random 256-bit codes; for each check, true neighbours are planted at random
distances 0..31 from one of its 8 hashes, and near misses at 32..40 (which must not be returned).
Methods, side by side on the same data:

* `ownership.index.PdqMultiIndex` — multi-index hashing (11 disjoint substrings of 22 bits and 6
  sampled ones, 1 bit flip: exact up to distance 21, >= 99.5 % of neighbours at 31);
* brute force — a NumPy scan with np.bitwise_count, the reference;
* FAISS IndexBinaryFlat.range_search — FAISS's exact scan;
* FAISS IndexBinaryMultiHash (11 x 23 bits, nflip 2, exact) with --faiss-multihash (slow to build at
  10M; measured at 1M: 24 ms a check, 40 s to build, 1.5 GB).

Latency is the median over checks of one single-threaded check.
"""

from __future__ import annotations

import argparse
import time

import faiss
import numpy as np

from ownership.index import PdqMultiIndex, brute_force_search, hamming_words, hashes_to_words

THRESHOLD = 31


def _flip(h: np.ndarray, d: int, rng: np.random.Generator) -> np.ndarray:
    bits = np.unpackbits(h)
    bits[rng.choice(256, d, replace=False)] ^= 1
    return np.packbits(bits)


def _data(n: int, checks: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list[dict[int, int]]]:
    """Registered hashes, queries (checks, 8, 32) and, per check, {row: distance} of planted rows."""
    db = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    queries = rng.integers(0, 256, (checks, 8, 32), dtype=np.uint8)
    rows = rng.choice(n, checks * 6, replace=False).reshape(checks, 6)
    planted = []
    for c in range(checks):
        truth = {}
        for k, row in enumerate(rows[c]):
            d = int(rng.integers(0, THRESHOLD + 1)) if k < 3 else int(rng.integers(THRESHOLD + 1, 41))
            db[row] = _flip(queries[c, int(rng.integers(0, 8))], d, rng)
            if k < 3:
                truth[int(row)] = d
        planted.append(truth)
    return db, queries, planted


def _time(fn, reps: list) -> tuple[float, list]:
    times, out = [], []
    for arg in reps:
        t = time.perf_counter()
        out.append(fn(arg))
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times)), out


def _score(found: list[dict[int, int]], planted: list[dict[int, int]], words: np.ndarray,
           queries: np.ndarray) -> tuple[float, float, bool]:
    """Recall of the planted neighbours, recall of those at distance 22-31 (beyond the index's
    pigeonhole guarantee), and whether every returned row really is within the threshold."""
    hit = total = far_hit = far_total = 0
    exact = True
    for f, truth, q in zip(found, planted, queries, strict=False):
        total += len(truth)
        hit += sum(1 for row in truth if row in f)
        far = [row for row, d in truth.items() if d >= 22]
        far_total += len(far)
        far_hit += sum(1 for row in far if row in f)
        for row, d in f.items():
            true_d = int(hamming_words(words[row], hashes_to_words(q)).min())
            exact &= d == true_d <= THRESHOLD
    return hit / max(total, 1), far_hit / max(far_total, 1), exact


def run_size(n: int, checks: int, brute_checks: int, multihash: bool, rng: np.random.Generator) -> list[tuple]:
    db, queries, planted = _data(n, checks, rng)
    words = hashes_to_words(db)
    rows = []

    t = time.perf_counter()
    mih = PdqMultiIndex(THRESHOLD)
    mih.add(db)
    mih.seal()
    build = time.perf_counter() - t
    ms, found = _time(mih.search, list(queries))
    recall, far, exact = _score(found, planted, words, queries)
    rows.append(("PdqMultiIndex (MIH 11+6 x 22, 1 flip)", n, build, ms, recall, far, exact))

    ms, found = _time(lambda q: brute_force_search(words, q, THRESHOLD), list(queries[:brute_checks]))
    recall, far, exact = _score(found, planted[:brute_checks], words, queries[:brute_checks])
    rows.append(("brute force NumPy bitwise_count", n, 0.0, ms, recall, far, exact))

    t = time.perf_counter()
    flat = faiss.IndexBinaryFlat(256)
    flat.add(db)
    build = time.perf_counter() - t

    def faiss_range(index: faiss.IndexBinary):
        def search(q: np.ndarray) -> dict[int, int]:
            lims, dist, ids = index.range_search(np.ascontiguousarray(q), THRESHOLD + 1)
            out: dict[int, int] = {}
            for i, d in zip(ids.tolist(), dist.tolist(), strict=True):
                out[i] = min(out.get(i, 257), d)
            return out
        return search

    ms, found = _time(faiss_range(flat), list(queries[:brute_checks]))
    recall, far, exact = _score(found, planted[:brute_checks], words, queries[:brute_checks])
    rows.append(("FAISS IndexBinaryFlat range_search", n, build, ms, recall, far, exact))
    del flat

    if multihash:
        t = time.perf_counter()
        mh = faiss.IndexBinaryMultiHash(256, 11, 23)
        mh.nflip = 2
        mh.add(db)
        build = time.perf_counter() - t
        ms, found = _time(faiss_range(mh), list(queries))
        recall, far, exact = _score(found, planted, words, queries)
        rows.append(("FAISS IndexBinaryMultiHash 11x23 nflip 2", n, build, ms, recall, far, exact))
        del mh
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gate_lookup", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000,10000000", help="comma-separated registry sizes")
    parser.add_argument("--checks", type=int, default=50, help="checks (8 hashes each) for the index")
    parser.add_argument("--brute-checks", type=int, default=5, help="checks for the exact scans")
    parser.add_argument("--faiss-multihash", action="store_true", help="also FAISS IndexBinaryMultiHash")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(args.seed)
    print(f"gate_lookup: 8 dihedral PDQ hashes per check, Hamming <= {THRESHOLD}, single-threaded; "
          f"3 true neighbours (distance 0..31) and 3 near misses (32..40) planted per check")
    print(f"{'method':42s} {'registered':>11s} {'build s':>8s} {'median ms':>10s} {'x index':>8s} "
          f"{'recall':>7s} {'r 22-31':>8s} {'exact':>6s}")
    for n in (int(s) for s in args.sizes.split(",") if s.strip()):
        rows = run_size(n, args.checks, args.brute_checks, args.faiss_multihash, rng)
        base = rows[0][3]
        for name, size, build, ms, recall, far, exact in rows:
            print(f"{name:42s} {size:11,d} {build:8.1f} {ms:10.2f} {ms / base:8.1f} {recall:7.3f} {far:8.3f} "
                  f"{'yes' if exact else 'NO':>6s}")
    print("target: median <= 5 ms at 10M with recall >= 0.99")


if __name__ == "__main__":
    main()
