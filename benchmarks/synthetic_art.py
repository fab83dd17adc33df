"""Illustration-like artworks and the copy attacks made on them, generated in code.

Why: the gate must be measured on images that look like what artists post (flat colours, line art,
gradients, panels, lettering, a signature in the corner), not on photos, and nothing may be
downloaded. Each synthetic artist has a style that all their works share (palette, background,
stroke width, a recurring character, the same signature, for comics the same panel layouts), so
that "two distinct works by the same artist" is a hard negative, as it is in real portfolios.

Everything is seeded: the same seed gives the same pixels. Images are RGB uint8 arrays.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class ArtistStyle:
    """What an artist's works have in common."""

    name: str
    palette: tuple[RGB, ...]
    line_color: RGB
    stroke: int  # outline width in pixels at 1000 px canvas width
    background: str  # "flat", "vgradient", "radial", "paper"
    layout: str  # "scene", "character", "comic", "pattern", "lineart"
    aspect: float  # width / height
    base_size: int  # longer side in pixels
    signature_seed: int
    signature_corner: str  # "br", "bl", "tr", "tl"


LAYOUTS = ("scene", "character", "comic", "pattern", "lineart")
BACKGROUNDS = ("flat", "vgradient", "radial", "paper")


def make_artist(seed: int, name: str | None = None) -> ArtistStyle:
    """A distinct style; layouts cycle with the seed so a handful of artists covers every kind."""
    rng = np.random.default_rng(10_000 + seed)
    base_hue = rng.uniform(0, 180)
    palette = []
    for i in range(6):
        hue = (base_hue + i * rng.uniform(15, 45)) % 180
        sat = rng.uniform(60, 230)
        val = rng.uniform(90, 250)
        hsv = np.uint8([[[hue, sat, val]]])
        palette.append(tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0]))
    dark = tuple(int(c) for c in rng.integers(0, 70, 3))
    return ArtistStyle(
        name=name or f"artist{seed:02d}",
        palette=tuple(palette),
        line_color=dark,  # type: ignore[arg-type]
        stroke=int(rng.integers(2, 7)),
        background=BACKGROUNDS[int(rng.integers(0, len(BACKGROUNDS)))],
        layout=LAYOUTS[seed % len(LAYOUTS)],
        aspect=float(rng.choice([1.0, 0.75, 0.7, 1.33, 1.78])),
        base_size=int(rng.integers(700, 1100)),
        signature_seed=int(rng.integers(0, 2**31)),
        signature_corner=str(rng.choice(["br", "bl", "tr", "tl"])),
    )


# ---------------------------------------------------------------------------------------------
# Drawing primitives (cv2 draws in place on a BGR-agnostic uint8 array; we keep RGB throughout).


def _bezier(points: np.ndarray, n: int = 40) -> np.ndarray:
    t = np.linspace(0, 1, n)[:, None]
    p0, p1, p2, p3 = points
    curve = (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3
    return curve.astype(np.int32)


def _background(style: ArtistStyle, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    a = np.array(style.palette[int(rng.integers(0, 6))], np.float32)
    b = np.array(style.palette[int(rng.integers(0, 6))], np.float32)
    if style.background == "flat":
        img = np.broadcast_to(a, (h, w, 3)).copy()
    elif style.background == "vgradient":
        t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
        img = np.broadcast_to(a * (1 - t) + b * t, (h, w, 3)).copy()
    elif style.background == "radial":
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
        t = np.clip(np.hypot(xx - cx, yy - cy) / max(h, w), 0, 1)[..., None]
        img = a * (1 - t) + b * t
    else:  # paper: a light flat colour with soft, low-amplitude grain
        grain = cv2.GaussianBlur(rng.normal(0, 6, (h, w)).astype(np.float32), (0, 0), 1.5)
        img = np.broadcast_to(np.maximum(a, 200), (h, w, 3)) + grain[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


def _color(style: ArtistStyle, rng: np.random.Generator) -> tuple[int, int, int]:
    base = np.array(style.palette[int(rng.integers(0, len(style.palette)))], np.int32)
    jitter = rng.integers(-12, 13, 3)
    return tuple(int(c) for c in np.clip(base + jitter, 0, 255))  # type: ignore[return-value]


def _shape(img: np.ndarray, style: ArtistStyle, rng: np.random.Generator, box: tuple[int, int, int, int],
           lw: int) -> None:
    x0, y0, x1, y1 = box
    kind = rng.integers(0, 4)
    col = _color(style, rng)
    line = style.line_color
    cx, cy = int(rng.uniform(x0, x1)), int(rng.uniform(y0, y1))
    size = max(8, int(rng.uniform(0.08, 0.3) * max(x1 - x0, y1 - y0)))
    if kind == 0:
        axes = (size, max(4, int(size * rng.uniform(0.4, 1.0))))
        ang = float(rng.uniform(0, 180))
        cv2.ellipse(img, (cx, cy), axes, ang, 0, 360, col, -1, cv2.LINE_AA)
        cv2.ellipse(img, (cx, cy), axes, ang, 0, 360, line, lw, cv2.LINE_AA)
    elif kind == 1:
        n = int(rng.integers(3, 8))
        ang = np.sort(rng.uniform(0, 2 * np.pi, n))
        rad = size * rng.uniform(0.5, 1.0, n)
        pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1).astype(np.int32)
        cv2.fillPoly(img, [pts], col, cv2.LINE_AA)
        cv2.polylines(img, [pts], True, line, lw, cv2.LINE_AA)
    elif kind == 2:  # star
        n = int(rng.integers(4, 8))
        ang = np.linspace(0, 2 * np.pi, 2 * n, endpoint=False) + rng.uniform(0, np.pi)
        rad = np.where(np.arange(2 * n) % 2 == 0, size, size * 0.45)
        pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1).astype(np.int32)
        cv2.fillPoly(img, [pts], col, cv2.LINE_AA)
        cv2.polylines(img, [pts], True, line, lw, cv2.LINE_AA)
    else:
        w, h = size, int(size * rng.uniform(0.3, 1.2))
        cv2.rectangle(img, (cx - w // 2, cy - h // 2), (cx + w // 2, cy + h // 2), col, -1)
        cv2.rectangle(img, (cx - w // 2, cy - h // 2), (cx + w // 2, cy + h // 2), line, lw)


def _strokes(img: np.ndarray, style: ArtistStyle, rng: np.random.Generator, box: tuple[int, int, int, int],
             n: int, lw: int) -> None:
    x0, y0, x1, y1 = box
    for _ in range(n):
        pts = np.stack([rng.uniform(x0, x1, 4), rng.uniform(y0, y1, 4)], 1)
        col = style.line_color if rng.random() < 0.6 else _color(style, rng)
        cv2.polylines(img, [_bezier(pts)], False, col, max(1, int(lw * rng.uniform(0.5, 1.5))), cv2.LINE_AA)


def _hatching(img: np.ndarray, style: ArtistStyle, rng: np.random.Generator, box: tuple[int, int, int, int],
              lw: int) -> None:
    x0, y0, x1, y1 = box
    bx0, by0 = int(rng.uniform(x0, x1 - 40)), int(rng.uniform(y0, y1 - 40))
    bw, bh = int(rng.uniform(40, max(41, (x1 - x0) / 3))), int(rng.uniform(40, max(41, (y1 - y0) / 3)))
    step = int(rng.integers(6, 16))
    col = style.line_color
    for k in range(-bh, bw, step):
        cv2.line(img, (bx0 + k, by0), (bx0 + k + bh, by0 + bh), col, max(1, lw // 2), cv2.LINE_AA)


def _lettering(img: np.ndarray, style: ArtistStyle, rng: np.random.Generator, box: tuple[int, int, int, int],
               scale: float) -> None:
    x0, y0, x1, y1 = box
    text = "".join(rng.choice(list(string.ascii_uppercase + "!?"), int(rng.integers(3, 9))))
    org = (int(rng.uniform(x0, max(x0 + 1, x1 - 200 * scale))), int(rng.uniform(y0 + 30 * scale, y1)))
    font = [cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_TRIPLEX][int(rng.integers(0, 3))]
    cv2.putText(img, text, org, font, scale * rng.uniform(0.8, 1.6), style.line_color,
                max(1, int(2 * scale)), cv2.LINE_AA)


def _character(img: np.ndarray, style: ArtistStyle, rng: np.random.Generator, cx: int, cy: int, r: int,
               lw: int) -> None:
    """The artist's recurring character, redrawn in a new pose.

    The design (head shape, hair, body, colours) is fixed per artist; each work redraws it with its
    own position, size, head tilt, arm angles, expression and the small differences in proportion
    of a drawing made again by hand, rather than pasted.
    """
    sig = np.random.default_rng(style.signature_seed)  # the character's fixed design
    skin = style.palette[int(sig.integers(0, 6))]
    hair = style.palette[int(sig.integers(0, 6))]
    cloth = style.palette[int(sig.integers(0, 6))]
    head_kind = int(sig.integers(0, 3))  # circle, wide ellipse, rounded square
    hair_kind = int(sig.integers(0, 3))  # spikes, bob, buns
    body_kind = int(sig.integers(0, 3))  # trapezoid, dress, rectangle
    n_spikes = int(sig.integers(5, 10))
    body_h = sig.uniform(1.6, 2.6)
    line = style.line_color
    tilt = rng.uniform(-0.5, 0.5)  # radians, head relative to body
    lean = rng.uniform(-0.3, 0.3)  # body shear
    body_h *= rng.uniform(0.85, 1.15)
    hand = rng.uniform(0.9, 1.1, 4)  # redrawn by hand: proportions wander a little
    # body, arms
    top, bottom = cy + r, cy + int((1 + body_h) * r)
    shift = int(lean * body_h * r)
    if body_kind == 0:
        body = [[cx - r + shift, bottom], [cx - int(0.6 * r), top], [cx + int(0.6 * r), top], [cx + r + shift, bottom]]
    elif body_kind == 1:
        body = [[cx - int(1.4 * r) + shift, bottom], [cx - int(0.4 * r), top], [cx + int(0.4 * r), top],
                [cx + int(1.4 * r) + shift, bottom]]
    else:
        body = [[cx - int(0.7 * r) + shift, bottom], [cx - int(0.7 * r), top], [cx + int(0.7 * r), top],
                [cx + int(0.7 * r) + shift, bottom]]
    for side in (-1, 1):
        a = rng.uniform(0.2, 2.6)
        sx, sy = cx + side * int(0.6 * r), top + int(0.3 * r)
        ex, ey = int(sx + side * 1.3 * r * np.sin(a)), int(sy + 1.3 * r * np.cos(a))
        cv2.line(img, (sx, sy), (ex, ey), line, max(2, 2 * lw), cv2.LINE_AA)
        cv2.circle(img, (ex, ey), max(3, r // 6), skin, -1, cv2.LINE_AA)
    body_pts = np.array(body, np.int32)
    cv2.fillPoly(img, [body_pts], cloth, cv2.LINE_AA)
    cv2.polylines(img, [body_pts], True, line, lw, cv2.LINE_AA)
    # hair behind the head
    if hair_kind == 0:
        for a in np.linspace(np.pi, 2 * np.pi, n_spikes) + tilt:
            a = a + rng.normal(0, 0.06)
            tip = r * rng.uniform(1.45, 1.8)
            tri = np.array([(cx + r * np.cos(a - 0.3), cy + r * np.sin(a - 0.3)),
                            (cx + tip * np.cos(a), cy + tip * np.sin(a)),
                            (cx + r * np.cos(a + 0.3), cy + r * np.sin(a + 0.3))], np.int32)
            cv2.fillPoly(img, [tri], hair, cv2.LINE_AA)
            cv2.polylines(img, [tri], True, line, lw, cv2.LINE_AA)
    elif hair_kind == 1:
        cv2.ellipse(img, (cx, cy + int(0.2 * r)), (int(1.25 * r * hand[2]), int(1.3 * r * hand[3])), np.degrees(tilt),
                    180, 360, hair,
                    -1, cv2.LINE_AA)
        cv2.rectangle(img, (cx - int(1.25 * r), cy), (cx + int(1.25 * r), cy + int(0.8 * r)), hair, -1)
    else:
        for side in (-1, 1):
            bun = (int(cx + side * 0.9 * r * hand[2] * np.cos(tilt) + 0.5 * r * np.sin(tilt)),
                   int(cy - 0.9 * r * hand[3] + side * 0.9 * r * np.sin(tilt)))
            bun_r = int(0.45 * r * rng.uniform(0.85, 1.15))
            cv2.circle(img, bun, bun_r, hair, -1, cv2.LINE_AA)
            cv2.circle(img, bun, bun_r, line, lw, cv2.LINE_AA)
    # head
    axes = (int(r * hand[0] * (1.2 if head_kind == 1 else 1.0)), int(r * hand[1] * (0.85 if head_kind == 1 else 1.0)))
    if head_kind in (0, 1):
        cv2.ellipse(img, (cx, cy), axes, np.degrees(tilt), 0, 360, skin, -1, cv2.LINE_AA)
        cv2.ellipse(img, (cx, cy), axes, np.degrees(tilt), 0, 360, line, lw, cv2.LINE_AA)
    else:
        box = cv2.boxPoints(((cx, cy), (1.8 * axes[0], 1.8 * axes[1]), np.degrees(tilt))).astype(np.int32)
        cv2.fillPoly(img, [box], skin, cv2.LINE_AA)
        cv2.polylines(img, [box], True, line, lw, cv2.LINE_AA)
    # expression
    eye_r = max(2, int(r * rng.uniform(0.1, 0.2)))
    for sx in (-1, 1):
        ex = int(cx + sx * 0.4 * r * np.cos(tilt))
        ey = int(cy - 0.1 * r + sx * 0.4 * r * np.sin(tilt))
        if rng.random() < 0.2:  # closed
            cv2.line(img, (ex - eye_r, ey), (ex + eye_r, ey), line, lw, cv2.LINE_AA)
        else:
            cv2.circle(img, (ex, ey), eye_r, line, -1, cv2.LINE_AA)
            cv2.circle(img, (ex + eye_r // 3, ey - eye_r // 3), max(1, eye_r // 3), (255, 255, 255), -1)
    mouth = int(r * rng.uniform(0.15, 0.35))
    start_a, end_a = (0, 180) if rng.random() < 0.7 else (180, 360)
    cv2.ellipse(img, (cx, cy + int(0.45 * r)), (mouth, max(1, mouth // 2)), np.degrees(tilt), start_a, end_a, line,
                lw, cv2.LINE_AA)


def _signature(img: np.ndarray, style: ArtistStyle) -> None:
    """The same scribble in the same corner of every work, scaled with the canvas."""
    h, w = img.shape[:2]
    sig = np.random.default_rng(style.signature_seed + 1)
    s = max(h, w) / 1000.0
    sw, sh = int(140 * s), int(45 * s)
    margin = int(20 * s)
    x0 = margin if style.signature_corner in ("bl", "tl") else w - margin - sw
    y0 = margin if style.signature_corner in ("tl", "tr") else h - margin - sh
    pts = np.stack([x0 + sig.uniform(0, sw, 8), y0 + sig.uniform(0, sh, 8)], 1)
    for i in range(0, 6, 2):
        cv2.polylines(img, [_bezier(pts[i:i + 4])], False, style.line_color, max(1, int(2 * s)), cv2.LINE_AA)
    cv2.putText(img, style.name[:6], (x0, y0 + sh), cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, 0.6 * s,
                style.line_color, max(1, int(1.5 * s)), cv2.LINE_AA)


def _comic_panels(style: ArtistStyle, rng: np.random.Generator, h: int, w: int) -> list[tuple[int, int, int, int]]:
    """One of the artist's three habitual page layouts."""
    layout_rng = np.random.default_rng(style.signature_seed + 7 + int(rng.integers(0, 3)))
    rows = int(layout_rng.integers(2, 4))
    gutter = max(6, w // 80)
    panels = []
    ys = np.linspace(gutter, h - gutter, rows + 1).astype(int)
    for r in range(rows):
        cols = int(layout_rng.integers(1, 4))
        cuts = np.sort(layout_rng.uniform(0.25, 0.75, cols - 1)) if cols > 1 else np.array([])
        xs = np.concatenate([[gutter], (cuts * w).astype(int), [w - gutter]])
        for c in range(cols):
            panels.append((int(xs[c] + gutter // 2), int(ys[r] + gutter // 2), int(xs[c + 1] - gutter // 2),
                           int(ys[r + 1] - gutter // 2)))
    return panels


def make_artwork(style: ArtistStyle, seed: int) -> np.ndarray:
    """One work by `style`'s artist; different seeds give distinct works in the same style."""
    rng = np.random.default_rng(seed * 7919 + style.signature_seed % 100_003)
    long_side = int(style.base_size * rng.uniform(0.9, 1.1))
    if style.aspect >= 1:
        w, h = long_side, int(long_side / style.aspect)
    else:
        h, w = long_side, int(long_side * style.aspect)
    s = max(h, w) / 1000.0
    lw = max(1, int(style.stroke * s))
    img = _background(style, h, w, rng)
    full = (0, 0, w, h)

    if style.layout == "comic":
        img[:] = 250
        for box in _comic_panels(style, rng, h, w):
            x0, y0, x1, y1 = box
            panel = img[y0:y1, x0:x1]
            panel[:] = _background(style, y1 - y0, x1 - x0, rng)
            inner = (0, 0, x1 - x0, y1 - y0)
            for _ in range(int(rng.integers(1, 4))):
                _shape(panel, style, rng, inner, lw)
            if rng.random() < 0.6:
                r = max(8, int(min(x1 - x0, y1 - y0) * rng.uniform(0.12, 0.25)))
                _character(panel, style, rng, int(rng.uniform(0.3, 0.7) * (x1 - x0)),
                           int(rng.uniform(0.3, 0.5) * (y1 - y0)), r, lw)
            _strokes(panel, style, rng, inner, int(rng.integers(1, 5)), lw)
            if rng.random() < 0.5:  # speech bubble with lettering
                bx, by = int(rng.uniform(0.1, 0.6) * (x1 - x0)), int(rng.uniform(0.1, 0.4) * (y1 - y0))
                axes = (max(10, (x1 - x0) // 6), max(8, (y1 - y0) // 8))
                cv2.ellipse(panel, (bx + axes[0], by + axes[1]), axes, 0, 0, 360, (255, 255, 255), -1, cv2.LINE_AA)
                cv2.ellipse(panel, (bx + axes[0], by + axes[1]), axes, 0, 0, 360, style.line_color, lw, cv2.LINE_AA)
                _lettering(panel, style, rng, (bx + 5, by + 5, bx + 2 * axes[0], by + 2 * axes[1]), 0.5 * s)
            cv2.rectangle(img, (x0, y0), (x1, y1), style.line_color, lw + 1)
    elif style.layout == "pattern":
        cell = int(rng.uniform(0.12, 0.25) * max(h, w))
        for y in range(0, h, cell):
            for x in range(0, w, cell):
                if rng.random() < 0.7:
                    _shape(img, style, rng, (x, y, x + cell, y + cell), lw)
        for _ in range(int(rng.integers(2, 5))):
            _shape(img, style, rng, full, lw)
        _strokes(img, style, rng, full, int(rng.integers(3, 8)), lw)
    elif style.layout == "lineart":
        _strokes(img, style, rng, full, int(rng.integers(25, 50)), lw)
        for _ in range(int(rng.integers(1, 3))):
            _hatching(img, style, rng, full, lw)
        _character(img, style, rng, int(rng.uniform(0.3, 0.7) * w), int(rng.uniform(0.3, 0.5) * h),
                   int(rng.uniform(0.1, 0.2) * min(h, w)), lw)
    else:  # scene / character
        n_shapes = int(rng.integers(5, 12)) if style.layout == "scene" else int(rng.integers(2, 6))
        for _ in range(n_shapes):
            _shape(img, style, rng, full, lw)
        if style.layout == "character":
            _character(img, style, rng, int(rng.uniform(0.35, 0.65) * w), int(rng.uniform(0.3, 0.45) * h),
                       int(rng.uniform(0.15, 0.25) * min(h, w)), lw)
        elif rng.random() < 0.5:
            _character(img, style, rng, int(rng.uniform(0.2, 0.8) * w), int(rng.uniform(0.3, 0.6) * h),
                       int(rng.uniform(0.06, 0.12) * min(h, w)), lw)
        _strokes(img, style, rng, full, int(rng.integers(4, 15)), lw)
        if rng.random() < 0.5:
            _hatching(img, style, rng, full, lw)
        for _ in range(int(rng.integers(0, 3))):
            _lettering(img, style, rng, full, s)
    _signature(img, style)
    return np.ascontiguousarray(img)


def make_portfolios(n_artists: int, works_per_artist: int, seed: int = 0) -> list[tuple[ArtistStyle, list[np.ndarray]]]:
    """`n_artists` distinct styles, each with `works_per_artist` distinct works."""
    out = []
    for a in range(n_artists):
        style = make_artist(seed * 1000 + a)
        out.append((style, [make_artwork(style, seed * 100_000 + a * 1000 + k) for k in range(works_per_artist)]))
    return out


def flat_image(h: int = 512, w: int = 512, color: RGB = (200, 180, 160)) -> np.ndarray:
    """A featureless image: the gate cannot fingerprint it reliably."""
    return np.full((h, w, 3), color, np.uint8)


# ---------------------------------------------------------------------------------------------
# Attacks: what someone does to another artist's work before uploading it as their own.

Attack = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def webp(img: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".webp", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_WEBP_QUALITY, quality])
    assert ok
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def resize(img: np.ndarray, factor: float) -> np.ndarray:
    h, w = img.shape[:2]
    interp = cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC
    return cv2.resize(img, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=interp)


def crop(img: np.ndarray, fraction: float, where: str = "center") -> np.ndarray:
    """Remove `fraction` of the width and of the height: centre, a corner ("tl", "tr", "bl", "br") or one side."""
    h, w = img.shape[:2]
    ch, cw = round(h * (1 - fraction)), round(w * (1 - fraction))
    if where == "center":
        y0, x0 = (h - ch) // 2, (w - cw) // 2
    else:
        y0 = 0 if "t" in where else h - ch
        x0 = 0 if "l" in where else w - cw
    return np.ascontiguousarray(img[y0:y0 + ch, x0:x0 + cw])


def rotate(img: np.ndarray, degrees: float, fill: RGB = (255, 255, 255), crop_inside: bool = False) -> np.ndarray:
    """Rotate about the centre; the canvas grows to hold the whole image, or shrinks to the largest
    axis-aligned rectangle that has no fill in it (`crop_inside`, what an editor's "straighten" does)."""
    h, w = img.shape[:2]
    a = np.deg2rad(abs(degrees))
    cos, sin = np.cos(a), np.sin(a)
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    nw, nh = int(np.ceil(w * cos + h * sin)), int(np.ceil(w * sin + h * cos))
    m[0, 2] += nw / 2 - w / 2
    m[1, 2] += nh / 2 - h / 2
    out = cv2.warpAffine(img, m, (nw, nh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=fill)
    if not crop_inside:
        return out
    # largest rotated rectangle of the same aspect inside the original frame
    long_side, short_side = max(w, h), min(w, h)
    if short_side <= 2 * sin * cos * long_side or abs(sin - cos) < 1e-10:
        x = 0.5 * short_side
        wr, hr = (x / sin, x / cos) if w >= h else (x / cos, x / sin)
    else:
        cos2 = cos * cos - sin * sin
        wr, hr = (w * cos - h * sin) / cos2, (h * cos - w * sin) / cos2
    x0, y0 = int((nw - wr) / 2) + 1, int((nh - hr) / 2) + 1
    return np.ascontiguousarray(out[y0:y0 + int(hr) - 2, x0:x0 + int(wr) - 2])


def adjust(img: np.ndarray, brightness: float = 0.0, contrast: float = 1.0, saturation: float = 1.0,
           gamma: float = 1.0, hue_shift: int = 0) -> np.ndarray:
    out = img.astype(np.float32)
    out = (out - 128.0) * contrast + 128.0 + brightness * 255.0
    out = np.clip(out, 0, 255)
    if gamma != 1.0:
        out = 255.0 * (out / 255.0) ** gamma
    out = out.astype(np.uint8)
    if saturation != 1.0 or hue_shift:
        hsv = cv2.cvtColor(out, cv2.COLOR_RGB2HSV).astype(np.int32)
        hsv[..., 0] = (hsv[..., 0] + hue_shift) % 180
        hsv[..., 1] = np.clip(hsv[..., 1] * saturation, 0, 255)
        out = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)
    return out


def grayscale(img: np.ndarray) -> np.ndarray:
    g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    return np.ascontiguousarray(np.repeat(g[..., None], 3, axis=2))


def blur(img: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(img, (0, 0), sigma)


def noise(img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip(img.astype(np.float32) + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8)


def border(img: np.ndarray, fraction: float, color: RGB = (255, 255, 255)) -> np.ndarray:
    h, w = img.shape[:2]
    py, px = round(h * fraction), round(w * fraction)
    return cv2.copyMakeBorder(img, py, py, px, px, cv2.BORDER_CONSTANT, value=color)


def caption_bar(img: np.ndarray, rng: np.random.Generator, height: float = 0.15, where: str = "bottom") -> np.ndarray:
    """A solid bar with text pasted over the image (covering it, not extending the canvas)."""
    out = img.copy()
    h, w = out.shape[:2]
    bh = round(h * height)
    y0 = h - bh if where == "bottom" else 0
    color = tuple(int(c) for c in rng.integers(0, 256, 3))
    out[y0:y0 + bh] = color
    ink = (255, 255, 255) if sum(color) < 380 else (0, 0, 0)
    text = "".join(rng.choice(list(string.ascii_letters + "    "), 24))
    cv2.putText(out, text, (int(0.03 * w), y0 + int(0.7 * bh)), cv2.FONT_HERSHEY_SIMPLEX, bh / 45.0, ink,
                max(1, bh // 20), cv2.LINE_AA)
    return out


def text_overlay(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Meme-style outlined lettering across the top and bottom of the image."""
    out = img.copy()
    h, w = out.shape[:2]
    scale = w / 500.0
    for y in (int(0.12 * h), int(0.93 * h)):
        text = "".join(rng.choice(list(string.ascii_uppercase + "  "), 14))
        cv2.putText(out, text, (int(0.05 * w), y), cv2.FONT_HERSHEY_DUPLEX, scale, (0, 0, 0),
                    max(2, int(6 * scale)), cv2.LINE_AA)
        cv2.putText(out, text, (int(0.05 * w), y), cv2.FONT_HERSHEY_DUPLEX, scale, (255, 255, 255),
                    max(1, int(2 * scale)), cv2.LINE_AA)
    return out


def screenshot(img: np.ndarray, rng: np.random.Generator, scale: float | None = None) -> np.ndarray:
    """The image shown in an app window: title bar, tabs, address bar, side panel, text, slightly scaled."""
    canvas_w, canvas_h = [(1280, 800), (1440, 900), (1920, 1080), (1366, 768)][int(rng.integers(0, 4))]
    ui_bg = (int(rng.integers(230, 256)),) * 3 if rng.random() < 0.6 else (int(rng.integers(20, 50)),) * 3
    ink = (30, 30, 30) if ui_bg[0] > 128 else (220, 220, 220)
    canvas = np.full((canvas_h, canvas_w, 3), ui_bg, np.uint8)
    # window chrome
    cv2.rectangle(canvas, (0, 0), (canvas_w, 34), (60, 60, 64), -1)
    for i, c in enumerate([(237, 106, 94), (245, 191, 79), (98, 197, 84)]):
        cv2.circle(canvas, (18 + 22 * i, 17), 6, c, -1, cv2.LINE_AA)
    cv2.rectangle(canvas, (0, 34), (canvas_w, 74), (222, 222, 226), -1)
    cv2.rectangle(canvas, (120, 42), (canvas_w - 200, 66), (255, 255, 255), -1)
    cv2.putText(canvas, "https://example.art/gallery/" + str(int(rng.integers(1e5, 1e6))), (132, 60),
                cv2.FONT_HERSHEY_SIMPLEX, 0.5, (40, 40, 40), 1, cv2.LINE_AA)
    side_w = int(rng.integers(180, 300))
    cv2.rectangle(canvas, (0, 74), (side_w, canvas_h), tuple(max(0, c - 12) for c in ui_bg), -1)
    for k in range(12):
        y = 110 + 40 * k
        cv2.circle(canvas, (24, y - 5), 9, (120, 140, 200), -1, cv2.LINE_AA)
        word = "".join(rng.choice(list(string.ascii_lowercase), int(rng.integers(5, 12))))
        cv2.putText(canvas, word, (42, y), cv2.FONT_HERSHEY_SIMPLEX, 0.5, ink, 1, cv2.LINE_AA)
    # the image, fit into the content area and scaled a little
    area_x0, area_y0, area_x1, area_y1 = side_w + 30, 100, canvas_w - 30, canvas_h - 90
    fit = min((area_x1 - area_x0) / img.shape[1], (area_y1 - area_y0) / img.shape[0])
    factor = fit * (scale if scale is not None else rng.uniform(0.75, 1.0))
    shown = resize(img, factor)
    sh, sw = shown.shape[:2]
    x0 = area_x0 + (area_x1 - area_x0 - sw) // 2
    y0 = area_y0 + int(rng.integers(0, max(1, area_y1 - area_y0 - sh)))
    canvas[y0:y0 + sh, x0:x0 + sw] = shown
    cv2.putText(canvas, "Posted by someone  *  1,204 likes", (x0, min(canvas_h - 20, y0 + sh + 30)),
                cv2.FONT_HERSHEY_SIMPLEX, 0.6, ink, 1, cv2.LINE_AA)
    return canvas


@dataclass(frozen=True)
class AttackSpec:
    name: str
    group: str  # the target group the catch rate is judged against
    apply: Attack


def _rng_free(f: Callable[[np.ndarray], np.ndarray]) -> Attack:
    return lambda img, rng: f(img)


# target groups (issue 3 §8): catch ≥99%, ≥95%, ≥80%
GROUP_TARGETS = {
    "re-encode": 0.99, "resize": 0.99, "colour": 0.99, "flip": 0.99, "blur/noise": 0.99,
    "crop<=20%": 0.95, "rotation": 0.95, "border": 0.95, "overlay": 0.95, "screenshot": 0.95,
    "combination": 0.95, "crop 35%": 0.80,
}


def attacks() -> list[AttackSpec]:
    """Every attack the evasion benchmark tries, with the group whose target it is judged by."""
    a: list[AttackSpec] = []
    for q in (30, 50, 70, 90):
        a.append(AttackSpec(f"jpeg_q{q}", "re-encode", _rng_free(lambda im, q=q: jpeg(im, q))))
    a.append(AttackSpec("webp_q50", "re-encode", _rng_free(lambda im: webp(im, 50))))
    for f in (0.25, 0.5, 0.75, 1.5):
        a.append(AttackSpec(f"resize_{f}", "resize", _rng_free(lambda im, f=f: resize(im, f))))
    for p in (5, 10, 20):
        a.append(AttackSpec(f"crop_center_{p}", "crop<=20%", _rng_free(lambda im, p=p: crop(im, p / 100))))
        a.append(AttackSpec(f"crop_corner_{p}", "crop<=20%",
                            lambda im, rng, p=p: crop(im, p / 100, str(rng.choice(["tl", "tr", "bl", "br"])))))
    a.append(AttackSpec("crop_center_35", "crop 35%", _rng_free(lambda im: crop(im, 0.35))))
    a.append(AttackSpec("crop_corner_35", "crop 35%",
                        lambda im, rng: crop(im, 0.35, str(rng.choice(["tl", "tr", "bl", "br"])))))
    a.append(AttackSpec("flip_h", "flip", _rng_free(lambda im: np.ascontiguousarray(im[:, ::-1]))))
    a.append(AttackSpec("flip_v", "flip", _rng_free(lambda im: np.ascontiguousarray(im[::-1]))))
    a.append(AttackSpec("rot90", "flip", _rng_free(lambda im: np.ascontiguousarray(np.rot90(im)))))
    a.append(AttackSpec("rot180", "flip", _rng_free(lambda im: np.ascontiguousarray(np.rot90(im, 2)))))
    for d in (5, 10, 15):
        a.append(AttackSpec(f"rotate_{d}", "rotation", lambda im, rng, d=d: rotate(im, d * rng.choice([-1, 1]))))
        a.append(AttackSpec(f"rotate_{d}_cropped", "rotation",
                            lambda im, rng, d=d: rotate(im, d * rng.choice([-1, 1]), crop_inside=True)))
    a.append(AttackSpec("brightness+25%", "colour", _rng_free(lambda im: adjust(im, brightness=0.25))))
    a.append(AttackSpec("brightness-25%", "colour", _rng_free(lambda im: adjust(im, brightness=-0.25))))
    a.append(AttackSpec("contrast_0.6", "colour", _rng_free(lambda im: adjust(im, contrast=0.6))))
    a.append(AttackSpec("contrast_1.5", "colour", _rng_free(lambda im: adjust(im, contrast=1.5))))
    a.append(AttackSpec("saturation_0.3", "colour", _rng_free(lambda im: adjust(im, saturation=0.3))))
    a.append(AttackSpec("saturation_2", "colour", _rng_free(lambda im: adjust(im, saturation=2.0))))
    a.append(AttackSpec("hue_shift_30", "colour", _rng_free(lambda im: adjust(im, hue_shift=30))))
    a.append(AttackSpec("gamma_0.6", "colour", _rng_free(lambda im: adjust(im, gamma=0.6))))
    a.append(AttackSpec("grayscale", "colour", _rng_free(grayscale)))
    a.append(AttackSpec("blur_1.5", "blur/noise", _rng_free(lambda im: blur(im, 1.5))))
    a.append(AttackSpec("blur_3", "blur/noise", _rng_free(lambda im: blur(im, 3.0))))
    a.append(AttackSpec("noise_10", "blur/noise", lambda im, rng: noise(im, 10, rng)))
    a.append(AttackSpec("noise_25", "blur/noise", lambda im, rng: noise(im, 25, rng)))
    a.append(AttackSpec("border_10_white", "border", _rng_free(lambda im: border(im, 0.10))))
    a.append(AttackSpec("border_10_black", "border", _rng_free(lambda im: border(im, 0.10, (0, 0, 0)))))
    a.append(AttackSpec("border_20_color", "border",
                        lambda im, rng: border(im, 0.20, tuple(int(c) for c in rng.integers(0, 256, 3)))))
    a.append(AttackSpec("caption_bar_15", "overlay", lambda im, rng: caption_bar(im, rng, 0.15)))
    a.append(AttackSpec("caption_bar_25_top", "overlay", lambda im, rng: caption_bar(im, rng, 0.25, "top")))
    a.append(AttackSpec("text_overlay", "overlay", text_overlay))
    a.append(AttackSpec("screenshot", "screenshot", screenshot))
    a.append(AttackSpec("screenshot_jpeg70", "screenshot", lambda im, rng: jpeg(screenshot(im, rng), 70)))
    a.append(AttackSpec("screenshot_small", "screenshot",
                        lambda im, rng: resize(screenshot(im, rng, 0.6), 0.75)))
    a.append(AttackSpec("crop10+jpeg50+resize0.5", "combination",
                        lambda im, rng: jpeg(resize(crop(im, 0.10, "tl"), 0.5), 50)))
    a.append(AttackSpec("rot7+border+jpeg70", "combination",
                        lambda im, rng: jpeg(border(rotate(im, 7), 0.08, (20, 20, 20)), 70)))
    a.append(AttackSpec("flip+crop15+gray", "combination",
                        lambda im, rng: grayscale(crop(np.ascontiguousarray(im[:, ::-1]), 0.15))))
    a.append(AttackSpec("caption+resize0.6+jpeg60", "combination",
                        lambda im, rng: jpeg(resize(caption_bar(im, rng, 0.15), 0.6), 60)))
    a.append(AttackSpec("rot10crop+sat1.5+blur", "combination",
                        lambda im, rng: blur(adjust(rotate(im, -10, crop_inside=True), saturation=1.5), 1.0)))
    a.append(AttackSpec("crop20+screenshot", "combination",
                        lambda im, rng: screenshot(crop(im, 0.20, "br"), rng)))
    return a
