"""Does honest flat art pass the gate as the registry grows? Real clip art, icons, pictograms, emoji.

    python -m benchmarks.flat_art                        # registries of 1k and 10k works
    python -m benchmarks.flat_art --sizes 1000,3000,10000,13000 --queries 1000

Needs Debian packages of free flat art (`benchmarks.flat_art_data` lists them; the benchmark prints
how to install them and skips when they are absent; it is not run in CI). Drawings are shuffled
(seeded) and split: `--queries` of them are never registered and are uploaded by newcomers; the
others are registered, as verified works of their authors, in registries that grow to each size in
`--sizes`. Side by side in one run, on the same index, with the same candidates:

* old rule: the fixed thresholds alone (`VerifyParams.passes`, i.e. `max_nfa = inf`), the rule
  before issue 15;
* new rule: the fixed thresholds and the a-contrario test over the registry (`VerifyParams.accepts`).

It prints, per registry size:

1. per-upload false matches: the share of unregistered drawings refused because they match a
   registered one: all of them, those whose matched work has another name, those by local features,
   and those by local features with a drawing of *another source package* (another team of authors:
   nothing in common by design). Within one package many drawings are variants of one drawing or
   share a template (emoji skin tones, one road shield in many sizes, a theme's folder icons): such
   a match is right to refuse, and its evidence kind says which it is;
2. the catch rate of attacked copies of registered drawings (crop, rotation, recolouring,
   screenshots, as in `gate_evasion`), and black-and-white versions (a variant: it must be caught
   and reported as such);
3. honest portfolio submissions (a newcomer's works of one source folder, five at a time) refused at
   verification because one matches another artist's work, with the evidence kind of each refusal;

then the background the a-contrario test assumes (`cell_chance`): how many cells agree in the
alignments of unrelated drawings that reach the alignment step, and an extrapolation to 100k works.

Registering 100k works needs ~60 KB each in today's in-memory index and a drawing pool this size;
the installed packages hold ~13k distinct drawings, so larger registries are extrapolated (said so).
"""

from __future__ import annotations

import argparse
import hashlib
import math
import multiprocessing as mp
import os
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from benchmarks import flat_art_data as data
from benchmarks.synthetic_art import attacks, grayscale
from ownership import fingerprint as fingerprint_module
from ownership import local_features
from ownership.fingerprint import Fingerprint, compute_fingerprint
from ownership.index import MatchIndex
from ownership.local_features import VerifyParams, verify, verify_views
from ownership.types import DecodedImage, Match

ATTACKS = ("crop_corner_20", "crop_center_35", "rotate_10_cropped", "rotate_15", "hue_shift_30", "grayscale",
           "saturation_0.3", "screenshot", "screenshot_small", "caption_bar_15", "flip+crop15+gray",
           "rot7+border+jpeg70")
VARIANT = "black_and_white"
PORTFOLIO = 5


def black_and_white(rgb: np.ndarray) -> np.ndarray:
    """A black-and-white version of a drawing: grey, then Otsu's threshold (a variant, not a recolouring)."""
    grey = cv2.cvtColor(grayscale(rgb), cv2.COLOR_RGB2GRAY)
    _, bw = cv2.threshold(grey, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    return np.ascontiguousarray(np.repeat(bw[:, :, None], 3, axis=2))


# ---------------------------------------------------------------------------------------------
# Fingerprints, cached: they depend only on the drawing and the extraction code


def _extraction_version() -> str:
    """A digest of the code that makes fingerprints (not the verification code, which this measures)."""
    lf = Path(local_features.__file__).read_text()
    extraction = lf.split("# Verifying one query against one registered work")[0]
    return hashlib.sha256((Path(fingerprint_module.__file__).read_text() + extraction).encode()).hexdigest()[:16]


def _fp_path(key: str, version: str) -> Path:
    return data.cache_dir() / f"fp-{version}" / key[:2] / f"{key}.bin"


def _fingerprint(rgb: np.ndarray) -> Fingerprint:
    return compute_fingerprint(DecodedImage(rgb=np.ascontiguousarray(rgb), format="PNG"))


def _fingerprint_task(task: tuple[data.Drawing, str]) -> tuple[str, str | None]:
    """(key, digest of the rendered pixels) once the fingerprint is cached; None if it does not render."""
    d, version = task
    path = _fp_path(d.key, version)
    if path.exists():
        return d.key, path.read_bytes()[:64].decode()
    rgb = data.load(d)
    if rgb is None:
        return d.key, None
    digest = hashlib.sha256(rgb.tobytes()).hexdigest()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(digest.encode() + _fingerprint(rgb).to_bytes())
    tmp.replace(path)
    return d.key, digest


def _cached(d: data.Drawing, version: str) -> Fingerprint:
    return Fingerprint.from_bytes(_fp_path(d.key, version).read_bytes()[64:])


def prepare(items: list[data.Drawing], jobs: int, version: str) -> list[data.Drawing]:
    """Fingerprint (and render) every drawing, in `jobs` processes; the distinct ones, in order."""
    tasks = [(d, version) for d in items]
    if jobs > 1:
        with mp.get_context("spawn").Pool(jobs) as pool:
            results = dict(pool.imap_unordered(_fingerprint_task, tasks, chunksize=16))
    else:
        results = dict(map(_fingerprint_task, tasks))
    seen: set[str] = set()
    out = []
    for d in items:
        digest = results[d.key]
        if digest is not None and digest not in seen:
            seen.add(digest)
            out.append(d)
    return out


# ---------------------------------------------------------------------------------------------
# One measurement


@dataclass(frozen=True)
class Found:
    """What one look-up found under one rule: refusals (matches with other owners) and their kinds."""

    keys: tuple[str, ...]
    kinds: tuple[str, ...]
    methods: tuple[str, ...]


RULES = {"old": replace(VerifyParams(), max_nfa=math.inf), "new": VerifyParams()}


@dataclass(frozen=True)
class LookUp:
    """One look-up: its matches under the old rule, and the evidence (cells judged, cells agreeing,
    works compared) of each local-feature match, from which any a-contrario rule is decided."""

    matches: tuple[Match, ...]
    evidence: tuple[tuple[int, int, int] | None, ...]  # per match; None for SHA-256 and PDQ matches

    def under(self, rule: str, params: VerifyParams | None = None) -> Found:
        p = params or RULES[rule]
        kept = [m for m, e in zip(self.matches, self.evidence, strict=True)
                if rule == "old" or e is None
                or p.log10_nfa(cells=e[0], agree=e[1], compared=e[2]) <= math.log10(p.max_nfa)]
        return Found(tuple(m.item_sha256 for m in kept), tuple(m.kind for m in kept), tuple(m.method for m in kept))


def look_up(index: MatchIndex, fp: Fingerprint) -> LookUp:
    """Search once under the old rule (the new one only adds a condition), and read each local-feature
    match's evidence again from its verification."""
    index.verify_params = RULES["old"]
    matches = index.search(fp)
    evidence: list[tuple[int, int, int] | None] = []
    for m in matches:
        if m.method != "local_features":
            evidence.append(None)
            continue
        slot = index._by_key[m.item_sha256]
        entry = index._entry(slot)
        assert entry.robust is not None
        v = verify(fp.robust, entry.robust.registered(index._votes.codes(slot)), RULES["old"], compared=len(index))
        evidence.append((v.cells, round(v.coverage * v.cells), len(index)))
    return LookUp(tuple(matches), tuple(evidence))


def _pct(x: float) -> str:
    return f"{100 * x:6.2f}%"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.flat_art", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000", help="registry sizes, comma-separated, increasing")
    parser.add_argument("--queries", type=int, default=1000, help="unregistered drawings uploaded")
    parser.add_argument("--copies", type=int, default=60, help="registered drawings attacked")
    parser.add_argument("--jobs", type=int, default=2, help="processes that render and fingerprint")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dump", type=Path, default=None, help="write every refused pair side by side here")
    args = parser.parse_args(argv)
    sizes = sorted(int(s) for s in args.sizes.split(",") if s.strip())

    absent = data.missing()
    if absent:
        print(f"flat_art: skipped, not installed: {', '.join(absent)}.\n  Install them with:  {data.INSTALL}\n"
              "  (Debian packages of free clip art, map pictograms, icon themes and emoji; rsvg-convert renders them.)")
        return 0
    t0 = time.perf_counter()
    version = _extraction_version()
    pool = data.drawings()
    order = np.random.default_rng(args.seed).permutation(len(pool))
    shuffled = [pool[i] for i in order]
    wanted = args.queries + sizes[-1]
    # fingerprint a little more than needed: some drawings do not render, some render alike
    drawings = prepare(shuffled[: int(wanted * 1.1) + 100], args.jobs, version)
    queries, registry = drawings[: args.queries], drawings[args.queries:]
    if len(registry) < sizes[-1]:
        print(f"note: only {len(registry)} distinct drawings are left to register; sizes above are cut to it")
        sizes = sorted({min(s, len(registry)) for s in sizes})
    print(f"flat_art: {len(pool)} drawings installed ({dict(Counter(d.source for d in pool))}); "
          f"{len(queries)} uploaded by newcomers, up to {sizes[-1]} registered; "
          f"{len({d.artist for d in drawings})} source folders ('artists'); prepared in "
          f"{time.perf_counter() - t0:.0f}s")

    query_fps = [_cached(d, version) for d in queries]
    copies = registry[: min(args.copies, sizes[0])]
    specs = {s.name: s for s in attacks()}
    attacked: list[tuple[str, int, Fingerprint]] = []
    for i, d in enumerate(copies):
        rgb = data.load(d)
        assert rgb is not None
        for name in ATTACKS:
            img = specs[name].apply(rgb, np.random.default_rng(1_000_003 * i + len(attacked)))
            attacked.append((name, i, _fingerprint(img)))
        attacked.append((VARIANT, i, _fingerprint(black_and_white(rgb))))

    index = MatchIndex()
    owner_of: dict[str, data.Drawing] = {}
    added = 0
    curve = []
    for size in sizes:
        t = time.perf_counter()
        for d in registry[added:size]:
            index.add(item_sha256=d.key, owner=f"reg:{d.artist}", fingerprint=_cached(d, version))
            owner_of[d.key] = d
        added = size
        t_add = time.perf_counter() - t
        t = time.perf_counter()
        uploads = [look_up(index, fp) for fp in query_fps]
        copy_found = [look_up(index, fp) for _, _, fp in attacked]
        t_look = time.perf_counter() - t
        curve.append(_report(size, queries, uploads, attacked, copies, copy_found, owner_of, args.dump))
        print(f"  ({size} works: registered in {t_add:.0f}s, {len(uploads) + len(copy_found)} look-ups x 2 rules "
              f"in {t_look:.0f}s)")
        if size == sizes[0]:
            _background(index, query_fps)
    _summary(curve)
    print(f"\ntotal {time.perf_counter() - t0:.0f}s")
    return 0


def _report(size: int, queries: list[data.Drawing], uploads: list[LookUp],
            attacked: list[tuple[str, int, Fingerprint]], copies: list[data.Drawing],
            copy_found: list[LookUp], owner_of: dict[str, data.Drawing], dump: Path | None) -> dict:
    print(f"\n== registry of {size} works ==")
    row: dict = {"size": size, "uploads": len(uploads)}
    print(f"{'':34s} {'old rule':>18s} {'new rule':>18s}")
    for rule in RULES:
        found = [u.under(rule) for u in uploads]
        refused = [i for i, f in enumerate(found) if f.keys]
        other_name = [i for i in refused if any(owner_of[k].name != queries[i].name for k in found[i].keys)]
        local = [i for i in refused if "local_features" in found[i].methods]
        # another source package is another team of authors: no template or element in common by design
        cross = [i for i in refused if any(owner_of[k].source != queries[i].source
                                           for k, m in zip(found[i].keys, found[i].methods, strict=True)
                                           if m == "local_features")]
        row[rule] = {"refused": len(refused), "other_name": len(other_name), "local": len(local),
                     "cross": len(cross)}
        if dump is not None:
            _dump(dump / f"{size}-{rule}", queries, uploads, rule, owner_of)
    n = len(uploads)
    print(f"{'uploads refused (false matches)':34s} {_frac(row['old']['refused'], n):>18s} "
          f"{_frac(row['new']['refused'], n):>18s}")
    print(f"{'  of them, matched work named else':34s} {_frac(row['old']['other_name'], n):>18s} "
          f"{_frac(row['new']['other_name'], n):>18s}")
    print(f"{'  of them, by local features':34s} {_frac(row['old']['local'], n):>18s} "
          f"{_frac(row['new']['local'], n):>18s}")
    print(f"{'  ... with another source package':34s} {_frac(row['old']['cross'], n):>18s} "
          f"{_frac(row['new']['cross'], n):>18s}")
    for rule in RULES:
        kinds = Counter(k for u in uploads for k in u.under(rule).kinds)
        methods = Counter(m for u in uploads for m in u.under(rule).methods)
        row[rule]["kinds"] = dict(kinds)
        print(f"  {rule} rule: false-match evidence kinds {dict(kinds) or '{}'}, methods {dict(methods) or '{}'}")

    by_attack: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    variant_kinds: dict[str, Counter] = {rule: Counter() for rule in RULES}
    for (name, i, _), found in zip(attacked, copy_found, strict=True):
        for rule in RULES:
            hit = copies[i].key in found.under(rule).keys
            by_attack[name][rule].append(hit)
            if hit and name == VARIANT:
                variant_kinds[rule][found.under(rule).kinds[found.under(rule).keys.index(copies[i].key)]] += 1
    print(f"{'attacked copies caught':34s} {'old':>8s} {'new':>8s}")
    for name, rules in by_attack.items():
        print(f"  {name:32s} {_pct(float(np.mean(rules['old']))):>8s} {_pct(float(np.mean(rules['new']))):>8s}")
    for rule in RULES:
        hits = [h for name, rules in by_attack.items() if name != VARIANT for h in rules[rule]]
        row[rule]["caught"] = float(np.mean(hits))
        row[rule]["variant"] = float(np.mean(by_attack[VARIANT][rule]))
    print(f"  {'all attacks (' + str(len(copies)) + ' drawings)':32s} {_pct(row['old']['caught']):>8s} "
          f"{_pct(row['new']['caught']):>8s}")
    print(f"  black-and-white versions caught, reported as: old {dict(variant_kinds['old'])}, "
          f"new {dict(variant_kinds['new'])}")

    _sweep(uploads, copy_found, attacked, copies)

    portfolios: dict[str, list[int]] = defaultdict(list)
    for i, d in enumerate(queries):
        portfolios[d.artist].append(i)
    chunks = [ids[j: j + PORTFOLIO] for ids in portfolios.values() for j in range(0, len(ids), PORTFOLIO)]
    for rule in RULES:
        refused = [c for c in chunks if any(uploads[i].under(rule).keys for i in c)]
        kinds = Counter(uploads[i].under(rule).kinds[0] for c in refused for i in c if uploads[i].under(rule).keys)
        row[rule]["portfolios"] = len(refused) / len(chunks)
        print(f"  honest portfolios ({len(chunks)} of up to {PORTFOLIO} works) refused, {rule} rule: "
              f"{_frac(len(refused), len(chunks))}; refused works' evidence kinds {dict(kinds) or '{}'}")
    return row


def _sweep(uploads: list[LookUp], copy_found: list[LookUp], attacked: list[tuple[str, int, Fingerprint]],
           copies: list[data.Drawing]) -> None:
    """What other settings of the a-contrario test would have done, on the same look-ups."""
    print("  sweep (cell_chance, max_nfa): uploads refused by local features / attacked copies caught (any method)")
    for chance in (0.25, 0.35, 0.45):
        cells = []
        for nfa in (1.0, 1e-2, 1e-3, 1e-4):
            p = replace(VerifyParams(), cell_chance=chance, max_nfa=nfa)
            false = sum("local_features" in u.under("new", p).methods for u in uploads)
            caught = [copies[i].key in f.under("new", p).keys
                      for (name, i, _), f in zip(attacked, copy_found, strict=True) if name != VARIANT]
            cells.append(f"{nfa:g}: {false:3d} / {_pct(float(np.mean(caught))).strip()}")
        print(f"    {chance:.2f}  " + "   ".join(cells))


def _frac(k: int, n: int) -> str:
    return f"{k}/{n} = {100 * k / max(n, 1):.2f}%"


def _dump(folder: Path, queries: list[data.Drawing], uploads: list[LookUp], rule: str,
          owner_of: dict[str, data.Drawing]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, u in enumerate(uploads):
        for key, kind in zip(u.under(rule).keys, u.under(rule).kinds, strict=True):
            a, b = data.load(queries[i]), data.load(owner_of[key])
            if a is None or b is None:
                continue
            h = 256
            pair = [cv2.resize(x, (max(1, x.shape[1] * h // x.shape[0]), h)) for x in (a, b)]
            name = f"{i:04d}-{kind}-{queries[i].name[:30]}--{owner_of[key].name[:30]}.png".replace("/", "_")
            cv2.imwrite(str(folder / name), cv2.cvtColor(np.hstack(pair), cv2.COLOR_RGB2BGR))


def _background(index: MatchIndex, query_fps: list[Fingerprint]) -> None:
    """How many detailed cells agree by chance: unrelated drawings against their verified candidates."""
    relaxed = replace(VerifyParams(), min_cells=0, min_coverage=0.0, min_area=0.0, max_nfa=math.inf)
    cells = agree = 0
    coverages = []
    for fp in query_fps:
        for slot, views in index._candidates(fp, exclude=set()):
            entry = index._entry(slot)
            assert entry.robust is not None
            registered = entry.robust.registered(index._votes.codes(slot))
            for v in verify_views(fp.robust, registered, relaxed, views):
                if v.cells:
                    cells += v.cells
                    agree += round(v.coverage * v.cells)
                    coverages.append(v.coverage)
    if not coverages:
        return
    c = np.array(coverages)
    print(f"\nbackground: {len(c)} alignments of unrelated drawings with their candidates: {agree} of {cells} "
          f"detailed cells agree ({100 * agree / cells:.1f}%; cell_chance is {VerifyParams().cell_chance}); "
          f"coverage median {np.median(c):.2f}, p90 {np.percentile(c, 90):.2f}, p99 {np.percentile(c, 99):.2f}")


def _summary(curve: list[dict]) -> None:
    print("\nCurve: registry size x per-upload false matches (all / matched work named else) x catch rate")
    print(f"{'works':>7s} {'uploads':>7s} | {'old: false':>10s} {'by local':>8s} {'cross':>6s} {'caught':>8s} "
          f"{'b&w':>7s} | {'new: false':>10s} {'by local':>8s} {'cross':>6s} {'caught':>8s} {'b&w':>7s}")
    for r in curve:
        cells = []
        for rule in RULES:
            x = r[rule]
            cells.append(f"{x['refused']:>10d} {x['local']:>8d} {x['cross']:>6d} {_pct(x['caught']):>8s} "
                         f"{_pct(x['variant']):>7s}")
        print(f"{r['size']:>7d} {r['uploads']:>7d} | {cells[0]} | {cells[1]}")
    last = curve[-1]
    for rule in RULES:
        k = last[rule]["cross"]
        # false matches per upload grow about linearly with the registry (each work one more chance)
        rate = k / last["uploads"] * 100_000 / last["size"]
        print(f"  {rule} rule, local-feature false matches across sources extrapolated linearly to 100k works: "
              f"~{100 * min(1.0, rate):.2f}% of uploads ({k} of {last['uploads']} uploads at {last['size']})")


if __name__ == "__main__":
    raise SystemExit(main())
