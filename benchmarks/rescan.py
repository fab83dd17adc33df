"""Benchmark: the re-scan when works become protected, against re-checking every upload through the gate.

Run: `python -m benchmarks.rescan [--uploads N] [--works 50] [--copies 20]` (about 2 minutes per 1000
uploads on 2 busy CPU cores, most of it making the instance).

An instance (SQLite, blobs under a temporary home) holds N accepted uploads of 20 artists: their own
synthetic artworks (`benchmarks.synthetic_art`, the gate's evaluation corpus, scaled to 384 px), plus
`--copies` altered copies (crop, mirror, recolour, rescale) of works by a 21st artist who joins late and
has `--works` portfolio works verified in one admin action.
Uploads are recorded directly with the fingerprint the gate computes (the gate has its own benchmarks).

Measured side by side, with the same registry:
- **re-scan**: from the verification's commit to the end of the re-scan job (`mimicsafe.trust.rescan.run`:
  candidates from the accepted-uploads index, each confirmed by the gate's own registry search). The
  index is built once per process and then follows the audit log, like the gate's registry; its build
  time is printed separately (and included in a second figure).
- **brute force**: every accepted upload re-checked through the gate: read the blob, decode,
  fingerprint, search the registry; a match is a newly verified work of someone else. Also the
  cheaper brute force that re-searches each upload's stored fingerprint (no decode).
The two must find the same (upload, work) matches. Target: the re-scan >= 50x faster than brute force.

`--clones K` adds K synthesised rows per real upload (not per copy): the same fingerprint and blob under
another key, so the instance is (K+1) times larger without making (K+1) times more images. The brute
force is then timed on the real uploads only and its per-upload time applied to all rows (its cost is
the same per row by construction); the re-scan runs over all of them.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy import select

from benchmarks import synthetic_art as art
from mimicsafe import accounts, portfolio
from mimicsafe.context import Instance, open_instance
from mimicsafe.db.models import PortfolioItem, Rescan, Suspension, Upload
from mimicsafe.imaging import NamedFile, decode_limits, fingerprint_of
from mimicsafe.settings import load_settings
from mimicsafe.trust import rescan
from ownership.decode import decode_image
from ownership.fingerprint import Fingerprint

ARTISTS = 20
SIDE = 384


def artwork(artist: art.ArtistStyle, seed: int) -> np.ndarray:
    rgb = art.make_artwork(artist, seed)
    h, w = rgb.shape[:2]
    scale = SIDE / max(h, w)
    small = Image.fromarray(rgb).resize((round(w * scale), round(h * scale)), Image.Resampling.LANCZOS)
    return np.ascontiguousarray(np.asarray(small))


def png(rgb: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="PNG")
    return out.getvalue()


def altered(rgb: np.ndarray, kind: int) -> np.ndarray:
    """A copy someone might upload: cropped, mirrored, recoloured or rescaled."""
    h, w = rgb.shape[:2]
    if kind == 0:
        out = rgb[h // 10: h - h // 10, w // 10: w - w // 10]
    elif kind == 1:
        out = rgb[:, ::-1]
    elif kind == 2:
        out = np.clip(rgb.astype(np.int16) * 9 // 10 + 20, 0, 255).astype(np.uint8)
    else:
        out = np.asarray(Image.fromarray(rgb).resize((w * 3 // 4, h * 3 // 4), Image.Resampling.LANCZOS))
    return np.ascontiguousarray(out)


def populate(instance: Instance, *, uploads: int, works: int, copies: int, clones: int = 0
             ) -> tuple[list[int], float]:
    """Users, the pending portfolio works, and the accepted uploads (copies included). Returns the work ids
    and the seconds it took."""
    start = time.perf_counter()
    settings = instance.settings
    with instance.transaction() as s:
        accounts.create_user(session=s, username="root", role="admin", password="benchmark password")
        accounts.create_user(session=s, username="late", role="artist", password="benchmark password")
        for a in range(ARTISTS):
            accounts.create_user(session=s, username=f"artist{a}", role="artist", password="benchmark password")
    late = art.make_artist(99)
    originals = [artwork(late, 10_000 + i) for i in range(works)]
    with instance.transaction() as s:
        items = portfolio.add_items(session=s, blobs=instance.blobs, settings=settings, username="late",
                                    files=[NamedFile(f"work{i}.png", png(r)) for i, r in enumerate(originals)],
                                    evidence_url=None, actor="late")
        work_ids = [i.id for i in items]
        user_ids = {u.username: u.id for u in accounts.list_users(session=s)}
    rng = np.random.default_rng(0)
    styles = [art.make_artist(a) for a in range(ARTISTS)]
    pictures = [(f"u{i}.png", artwork(styles[i % ARTISTS], i)) for i in range(uploads)]
    for c in range(copies):
        pictures.insert(int(rng.integers(0, len(pictures) + 1)), (f"copy{c}.png", altered(originals[c % works], c % 4)))
    batch: list[Upload] = []
    for n, (name, rgb) in enumerate(pictures):
        data = png(rgb)
        sha256 = instance.blobs.put(data)
        fingerprint = fingerprint_of(decode_image(data, decode_limits(settings)), settings)
        batch.append(Upload(user_id=user_ids[f"artist{n % ARTISTS}"], sha256=sha256, file_name=name,
                            size_bytes=len(data), decision="accepted", policy_version="bench",
                            verdict={"decision": "accepted", "reasons": [{"code": "valid_signature", "detail": ""}],
                                     "matches": []}, fingerprint=fingerprint.to_bytes()))
        if not name.startswith("copy"):
            batch += [Upload(user_id=user_ids[f"artist{(n + k + 1) % ARTISTS}"], sha256=f"{sha256[:56]}{k:08x}",
                             file_name=f"clone{k}-{name}", size_bytes=len(data), decision="accepted",
                             policy_version="bench", verdict=batch[-1].verdict, fingerprint=batch[-1].fingerprint)
                      for k in range(clones)]
        if len(batch) >= 200 or n == len(pictures) - 1:
            with instance.transaction() as s:
                s.add_all(batch)
            batch = []
    return work_ids, time.perf_counter() - start


def brute_force(instance: Instance, work_shas: set[str], *, decode: bool) -> tuple[set[tuple[int, str]], float, int]:
    """Every accepted upload through the gate's search again: (upload id, work sha256) matches, seconds, uploads."""
    settings = instance.settings
    start = time.perf_counter()
    found: set[tuple[int, str]] = set()
    with instance.reading() as s:
        rows = list(s.execute(select(Upload.id, Upload.sha256, Upload.user_id, Upload.fingerprint)
                              .where(Upload.decision == "accepted", Upload.file_name.not_like("clone%"))))
        owners = {u.id: u.username for u in accounts.list_users(session=s)}
        for upload_id, sha256, user_id, blob in rows:
            if decode:
                image = decode_image(instance.blobs.get(sha256), decode_limits(settings))
                fingerprint = fingerprint_of(image, settings)
            else:
                fingerprint = Fingerprint.from_bytes(blob)
            for match in instance.registry.search(s, fingerprint, sha256=sha256):
                if match.item_sha256 in work_shas and match.owner != owners[user_id]:
                    found.add((upload_id, match.item_sha256))
    return found, time.perf_counter() - start, len(rows)


def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as directory:
        instance = open_instance(load_settings(home=Path(directory) / "home"))
        work_ids, made = populate(instance, uploads=args.uploads, works=args.works, copies=args.copies,
                                  clones=args.clones)
        total = args.uploads * (args.clones + 1) + args.copies
        print(f"instance: {total} accepted uploads ({args.copies} altered copies of the works"
              + (f", {args.uploads * args.clones} synthesised rows" if args.clones else "")
              + f"), {args.works} works to verify; made in {made:.0f} s")
        # Both indexes as a running server holds them (built at start, then following the audit log).
        start = time.perf_counter()
        with instance.reading() as s:
            instance.registry.rebuild(s)
        registry_build = time.perf_counter() - start
        start = time.perf_counter()
        with instance.reading() as s:
            instance.accepted.rebuild(s)
        index_build = time.perf_counter() - start
        print(f"start-up: registry {registry_build:.1f} s, accepted-uploads index {index_build:.1f} s "
              "(once per process)")

        start = time.perf_counter()
        with instance.transaction() as s:
            verified, refused = portfolio.verify_items(session=s, registry=instance.registry, username="late",
                                                       admin="root")
        assert len(verified) == args.works and not refused, refused
        verify_s = time.perf_counter() - start
        start = time.perf_counter()
        with instance.reading() as s:
            rescan_id = s.scalars(select(Rescan.id)).one()
        progress = rescan.run(instance, rescan_id)
        rescan_s = time.perf_counter() - start
        with instance.reading() as s:
            shas = dict(s.execute(select(PortfolioItem.id, PortfolioItem.sha256)).all())
            rescan_found = {(u, shas[w]) for u, w in s.execute(select(Suspension.upload_id, Suspension.protected_id))}
        work_shas = set(shas[i] for i in work_ids)
        print(f"verification of {args.works} works: {verify_s:.2f} s (it queues the re-scan and returns)")

        stored, stored_s, count = brute_force(instance, work_shas, decode=False)
        gate, gate_s, _ = brute_force(instance, work_shas, decode=True)
        if count < total:  # timed on the real rows; the synthesised ones cost the same each
            print(f"brute force timed on the {count} real uploads, scaled to all {total}")
            stored_s, gate_s = stored_s * total / count, gate_s * total / count
        ms = 1000.0 / total
        print()
        print("| method | time | per upload | matches | speed-up of the re-scan |")
        print("| --- | --- | --- | --- | --- |")
        print(f"| re-scan job (index warm) | {rescan_s:.2f} s | {rescan_s * ms:.3f} ms | {len(rescan_found)} | - |")
        with_build = rescan_s + index_build
        found = len(rescan_found)
        print(f"| re-scan job + index build | {with_build:.2f} s | {with_build * ms:.3f} ms | {found} | - |")
        print(f"| brute force: every upload through the gate (decode, fingerprint, search) | {gate_s:.1f} s | "
              f"{gate_s * ms:.2f} ms | {len(gate)} | {gate_s / rescan_s:.0f}x (with build: "
              f"{gate_s / (rescan_s + index_build):.0f}x) |")
        print(f"| brute force: every stored fingerprint searched again | {stored_s:.1f} s | {stored_s * ms:.2f} ms | "
              f"{len(stored)} | {stored_s / rescan_s:.0f}x |")
        print()
        with instance.reading() as s:
            copy_ids = set(s.scalars(select(Upload.id).where(Upload.file_name.like("copy%"))))
        for label, pairs in (("re-scan", rescan_found), ("brute force (gate)", gate), ("brute force (stored)", stored)):
            print(f"altered copies found by {label}: {len({u for u, _ in pairs} & copy_ids)}/{len(copy_ids)}; "
                  f"other matches: {len({u for u, _ in pairs} - copy_ids)}")
        same = rescan_found == gate == stored
        print(f"same matches: {same} (re-scan {len(rescan_found)}, gate {len(gate)}, stored {len(stored)}); "
              f"re-scan progress: {progress['position']}/{progress['total']}, {progress['suspended']} suspended")
        if not same:
            print(f"  only brute force: {sorted(gate - rescan_found)}; only re-scan: {sorted(rescan_found - gate)}")
        speedup = gate_s / rescan_s
        print(f"target >= 50x faster than brute force: {'met' if speedup >= 50 else 'NOT met'} ({speedup:.0f}x)")
        instance.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--uploads", type=int, default=1000, help="distinct accepted uploads (default 1000)")
    parser.add_argument("--works", type=int, default=50, help="works verified at once (default 50)")
    parser.add_argument("--copies", type=int, default=20, help="altered copies of the works among the uploads")
    parser.add_argument("--clones", type=int, default=0, help="synthesised rows per real upload (default 0)")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
