"""Real flat illustrations by many authors, from Debian packages under free licences, rendered to PNG.

Why: the synthetic artists of `benchmarks.synthetic_art` do not show the failure issue 15 found on
real flat art (clip art, icons, pictograms, emoji), where unrelated drawings in one flat style
matched by local features. Nothing is downloaded at run time: the art comes from system packages,
installed once with

    apt-get install librsvg2-bin openclipart-svg openstreetmap-carto-common tango-icon-theme \\
        elementary-icon-theme breeze-icon-theme ruby-gemojione

Sources (each is many authors' work; the licences are the packages' own):

| source | package | what | licence |
| --- | --- | --- | --- |
| openclipart | openclipart-svg | clip art by hundreds of contributors | public domain (CC0) |
| osm | openstreetmap-carto-common | map pictograms (shops, amenities, ...) | CC0 |
| tango | tango-icon-theme | desktop icons | public domain |
| elementary | elementary-icon-theme | desktop icons | GPL-3 |
| breeze | breeze-icon-theme | desktop icons (many monochrome pictograms) | LGPL-3 |
| emoji | ruby-gemojione | EmojiOne emoji | CC BY 4.0 |

Each icon is taken once (its largest drawing, for themes that draw one icon at several sizes), files
with identical bytes or identical rendered pixels once, and rendered with rsvg-convert onto white,
the longer side `SIDE` pixels. The "artist" of a drawing is its source and first folder (an
openclipart category, a theme's context, an OSM category), for portfolios; `name` is the icon's file
name without its extension and size, so that one icon drawn by two themes can be told apart from
unrelated drawings when a match is looked at.

Rendered PNGs are cached under `cache_dir()`; a second run renders nothing.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

SIDE = 512
INSTALL = ("apt-get install librsvg2-bin openclipart-svg openstreetmap-carto-common tango-icon-theme "
           "elementary-icon-theme breeze-icon-theme ruby-gemojione")


@dataclass(frozen=True)
class Source:
    name: str
    package: str
    root: Path
    pattern: str  # glob below root
    sized: bool  # an icon theme: the same icon at several sizes, keep the largest


SOURCES = (
    Source("openclipart", "openclipart-svg", Path("/usr/share/openclipart/svg"), "**/*.svg", False),
    Source("osm", "openstreetmap-carto-common", Path("/usr/share/openstreetmap-carto-common/symbols"), "**/*.svg",
           False),
    Source("tango", "tango-icon-theme", Path("/usr/share/icons/Tango/scalable"), "**/*.svg", False),
    Source("elementary", "elementary-icon-theme", Path("/usr/share/icons/elementary"), "**/*.svg", True),
    Source("breeze", "breeze-icon-theme", Path("/usr/share/icons/breeze"), "**/*.svg", True),
    Source("emoji", "ruby-gemojione", Path("/usr/share/rubygems-integration/all/gems/gemojione-3.3.0/assets/svg"),
           "*.svg", False),
)


@dataclass(frozen=True)
class Drawing:
    source: str
    artist: str  # source/first folder
    name: str  # file stem, lower case, size and "-symbolic" removed
    path: Path
    key: str  # SHA-256 of the SVG bytes


def missing() -> list[str]:
    """What is not installed, as package names (empty when everything is there)."""
    out = [] if shutil.which("rsvg-convert") else ["librsvg2-bin"]
    return out + [s.package for s in SOURCES if not s.root.is_dir()]


def cache_dir() -> Path:
    return Path.home() / ".cache" / "mimicsafe" / "flat_art"


def _size_of(path: Path) -> int:
    """The drawing size a theme's folder names (16, 22, 48@2x -> 96, scalable -> 1000)."""
    best = 0
    for part in path.parts:
        m = re.fullmatch(r"(\d+)(?:x\d+)?(?:@(\d)x)?", part)
        if m:
            best = max(best, int(m.group(1)) * int(m.group(2) or 1))
        elif part == "scalable":
            best = max(best, 1000)
    return best


def _name(path: Path) -> str:
    stem = path.stem.lower().removesuffix("-symbolic")
    return re.sub(r"[_-]?\d+$", "", stem) or stem


def drawings() -> list[Drawing]:
    """Every drawing of every installed source, once, sorted by key (a fixed order for a fixed install)."""
    chosen: dict[str, Drawing] = {}
    for src in SOURCES:
        if not src.root.is_dir():
            continue
        best: dict[tuple[str, str], tuple[int, Path]] = {}
        for path in sorted(src.root.glob(src.pattern)):
            if path.is_symlink() or not path.is_file():
                continue
            rel = path.relative_to(src.root)
            context = next((p for p in rel.parts[:-1] if not re.match(r"^\d", p) and p != "scalable"), "")
            context = context.split("@")[0]
            ident = (context, path.stem) if src.sized else ("/".join(rel.parts[:-1]), path.stem)
            size = _size_of(rel)
            if ident not in best or size > best[ident][0]:
                best[ident] = (size, path)
        for (context, _), (_, path) in sorted(best.items()):
            data = path.read_bytes()
            key = hashlib.sha256(data).hexdigest()
            first = "/".join(context.split("/")[:2]) or src.name
            chosen.setdefault(key, Drawing(src.name, f"{src.name}/{first}", _name(path), path, key))
    return sorted(chosen.values(), key=lambda d: d.key)


def _render(drawing: Drawing, out: Path) -> bool:
    tmp = out.with_suffix(f".{os.getpid()}.tmp.png")  # several processes may render one drawing
    try:
        subprocess.run(["rsvg-convert", "-w", str(SIDE), "-h", str(SIDE), "-a", "-b", "white", "-f", "png",
                        "-o", str(tmp), str(drawing.path)], check=True, capture_output=True, timeout=60)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        tmp.unlink(missing_ok=True)
        return False
    tmp.replace(out)
    return True


def load(drawing: Drawing) -> np.ndarray | None:
    """The drawing rendered as RGB (rendered once, then read from the cache); None if it cannot be."""
    out = cache_dir() / drawing.key[:2] / f"{drawing.key}.png"
    bad = out.with_suffix(".bad")
    if bad.exists():
        return None
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        if not _render(drawing, out):
            bad.touch()
            return None
    bgr = cv2.imread(str(out), cv2.IMREAD_COLOR)
    if bgr is None or min(bgr.shape[:2]) < 16:
        return None
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def rendered(items: list[Drawing]) -> Iterator[tuple[Drawing, np.ndarray]]:
    """The drawings that render, each once by pixels (two files of one drawing count once)."""
    seen: set[str] = set()
    for d in items:
        rgb = load(d)
        if rgb is None:
            continue
        digest = hashlib.sha256(rgb.tobytes()).hexdigest()
        if digest in seen:
            continue
        seen.add(digest)
        yield d, rgb


def _render_task(d: Drawing) -> bool:
    return load(d) is not None


def main() -> None:
    """Render the whole pool into the cache, on two processes: `python -m benchmarks.flat_art_data`."""
    import multiprocessing as mp

    if missing():
        print(f"missing: {', '.join(missing())}; install with: {INSTALL}")
        return
    items = drawings()
    with mp.get_context("spawn").Pool(2) as pool:
        ok = sum(pool.imap_unordered(_render_task, items, chunksize=32))
    print(f"{len(items)} drawings, {ok} rendered into {cache_dir()}")


if __name__ == "__main__":
    main()
