"""Crop- and rotation-robust matching: ORB keypoints, RANSAC geometry, then verification by alignment.

Why this exists: PDQ compares whole images, so a 5 % crop, a 5° rotation, a border or a screenshot
frame moves it past any safe threshold. Local features survive those edits, but their raw inlier
counts do not separate an attacked copy (a dozen inliers) from two distinct works by the same artist
(who share a signature, a character, a panel layout: dozens of inliers). So a candidate is accepted
only when, after warping the query onto the registered work with the estimated similarity
transform, the *pixels* agree cell by cell over the region the inliers span, and that region is a
real share of the work. A shared signature or character head spans a few per cent of the work; a
shared panel layout is made of straight borders, which are not counted as evidence; a copy agrees
over most of what it kept, whatever was cropped away, recoloured or pasted on.

All functions here are pure; `ownership.index` decides which registered works to verify.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import cv2
import faiss
import numpy as np

from ownership.types import EvidenceKind

# Working resolution of the gate: images are fingerprinted on a copy whose longer side is this.
WORK_SIDE = 512
# Longer side of the grey copy kept in a fingerprint to verify a query by alignment.
QUERY_GRAY_SIDE = 320
# Longer side of the grey thumbnail a registered work is verified against.
REGISTERED_THUMB_SIDE = 256
ORB_FEATURES = 500
ORB_LEVELS = 8
_MAGIC = b"MSLF"
_VERSION = 1


@dataclass(frozen=True)
class Keypoints:
    """Keypoints of one view of an image, in spread order (see `_spread`): any prefix covers the whole
    image, so the index can keep the first few of each work. Coordinates are in the view's working frame."""

    points: np.ndarray  # (N, 2) float32, x then y
    descriptors: np.ndarray  # (N, 32) uint8, ORB

    def __len__(self) -> int:
        return int(self.points.shape[0])


EMPTY_KEYPOINTS = Keypoints(np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8))


@dataclass(frozen=True)
class LocalFeatures:
    """What the robust matcher needs about one image.

    `view` holds the keypoints of the image; `mirror` those of its left-right mirror image (ORB is
    rotation-invariant but not mirror-invariant; mirror plus rotation covers all eight flips).
    `gray` is a small grey copy used to verify a geometric match by alignment. `inset` is the same
    again for a rectangle found inside the image (a picture in a screenshot, a bordered or framed
    image), taken from the full-resolution pixels so that a small copy keeps its detail.
    """

    width: int  # working frame, pixels
    height: int
    view: Keypoints
    mirror: Keypoints
    gray: np.ndarray  # (h, w) uint8, longer side <= QUERY_GRAY_SIDE
    inset: LocalFeatures | None = None

    def to_bytes(self) -> bytes:
        ok, png = cv2.imencode(".png", np.ascontiguousarray(self.gray, np.uint8))
        if not ok:
            raise ValueError("could not encode the grey copy of a fingerprint")
        inset = self.inset.to_bytes() if self.inset is not None else b""
        parts = [struct.pack("<4sHIIII", _MAGIC, _VERSION, self.width, self.height, len(png), len(inset))]
        for kp in (self.view, self.mirror):
            parts.append(struct.pack("<I", len(kp)))
            parts.append(np.ascontiguousarray(kp.points, "<f4").tobytes())
            parts.append(np.ascontiguousarray(kp.descriptors, np.uint8).tobytes())
        parts.append(png.tobytes())
        parts.append(inset)
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes) -> LocalFeatures:
        try:
            return cls._parse(memoryview(data))
        except (struct.error, ValueError, cv2.error) as exc:
            raise ValueError(f"local-features blob is unreadable ({exc}); recompute the fingerprint "
                             "from the image") from None

    @classmethod
    def _parse(cls, data: memoryview) -> LocalFeatures:
        head = struct.calcsize("<4sHIIII")
        magic, version, width, height, png_len, inset_len = struct.unpack_from("<4sHIIII", data, 0)
        if magic != _MAGIC or version != _VERSION:
            raise ValueError(f"not a version-{_VERSION} local-features blob")
        off = head
        views = []
        for _ in range(2):
            (n,) = struct.unpack_from("<I", data, off)
            off += 4
            if off + 40 * n > len(data):
                raise ValueError("truncated keypoints")
            pts = np.frombuffer(data, "<f4", 2 * n, off).reshape(n, 2).astype(np.float32)
            off += 8 * n
            desc = np.frombuffer(data, np.uint8, 32 * n, off).reshape(n, 32).copy()
            off += 32 * n
            views.append(Keypoints(pts, desc))
        gray = cv2.imdecode(np.frombuffer(data[off:off + png_len], np.uint8), cv2.IMREAD_GRAYSCALE)
        if gray is None:
            raise ValueError("truncated grey copy")
        off += png_len
        inset = cls._parse(data[off:off + inset_len]) if inset_len else None
        return cls(width, height, views[0], views[1], gray, inset)


# ---------------------------------------------------------------------------------------------
# Extraction


_ORB_EDGE = 15  # ORB finds no keypoint nearer a border than this, at any pyramid level
_ORB_MIN_SIDE = 2 * _ORB_EDGE + 1  # so a thinner image has none (and OpenCV's pyramid fails on 1-2 px sides)


def _orb(n: int) -> cv2.ORB:
    # fastThreshold 10 (default 20) finds corners on soft, low-contrast line art too.
    return cv2.ORB.create(nfeatures=n, scaleFactor=1.2, nlevels=ORB_LEVELS, edgeThreshold=_ORB_EDGE, patchSize=31,
                          fastThreshold=10)


def _spread(kps: Sequence[cv2.KeyPoint], width: int, height: int, n: int, grid: int = 8) -> list[cv2.KeyPoint]:
    """Keep `n` keypoints spread over a grid: every cell's strongest first, then every cell's second…

    Why: a caption bar, a watermark or a screenshot's window chrome is full of lettering whose
    corners out-score the artwork's; a plain top-n by response would spend the budget there.
    """
    if not kps:
        return []
    xy = np.array([k.pt for k in kps], np.float32)
    resp = np.array([k.response for k in kps], np.float32)
    cell = (np.minimum(grid - 1, (xy[:, 1] * grid / height).astype(int)) * grid
            + np.minimum(grid - 1, (xy[:, 0] * grid / width).astype(int)))
    order = np.lexsort((-resp, cell))  # by cell, strongest first within a cell
    sorted_cell = cell[order]
    first = np.searchsorted(sorted_cell, sorted_cell, side="left")
    rank = np.empty(len(kps), int)
    rank[order] = np.arange(len(kps)) - first
    chosen = np.lexsort((-resp, rank))[:n]
    return [kps[i] for i in chosen]


def _keypoints(gray: np.ndarray, with_mirror: bool) -> tuple[Keypoints, Keypoints]:
    h, w = gray.shape
    if min(h, w) < _ORB_MIN_SIDE:
        return EMPTY_KEYPOINTS, EMPTY_KEYPOINTS
    orb = _orb(4 * ORB_FEATURES)
    kps, desc = orb.compute(gray, _spread(orb.detect(gray, None), w, h, ORB_FEATURES))
    if desc is None or not kps:
        return EMPTY_KEYPOINTS, EMPTY_KEYPOINTS
    view = Keypoints(np.array([k.pt for k in kps], np.float32).reshape(-1, 2), np.ascontiguousarray(desc))
    if not with_mirror:
        return view, EMPTY_KEYPOINTS
    # FAST corners of the mirror image are the mirrored corners: describe them there, no new detection.
    mirrored = [cv2.KeyPoint(w - 1 - k.pt[0], k.pt[1], k.size, (180.0 - k.angle) % 360.0, k.response, k.octave)
                for k in kps]
    mkps, mdesc = orb.compute(np.ascontiguousarray(gray[:, ::-1]), mirrored)
    if mdesc is None or not mkps:
        return view, EMPTY_KEYPOINTS
    return view, Keypoints(np.array([k.pt for k in mkps], np.float32).reshape(-1, 2), np.ascontiguousarray(mdesc))


def resize_long_side(img: np.ndarray, side: int) -> np.ndarray:
    """Downscale (never upscale) so the longer side is at most `side`, with area averaging."""
    h, w = img.shape[:2]
    scale = side / max(h, w)
    if scale >= 1:
        return img
    return cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def find_inset(work_gray: np.ndarray, min_share: float = 0.08,
               max_share: float = 0.9) -> tuple[int, int, int, int] | None:
    """The largest rectangle drawn inside the image (x, y, w, h in working pixels), if any.

    A screenshot, a bordered or framed copy and a collage hold the artwork as a rectangle with a
    sharp outline; fingerprinting that rectangle again at full resolution keeps the detail that the
    whole-image working copy loses when the artwork fills only a small part of it.
    """
    h, w = work_gray.shape
    edges = cv2.dilate(cv2.Canny(work_gray, 20, 60), np.ones((3, 3), np.uint8))
    contours, _ = cv2.findContours(edges, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    best: tuple[int, int, int, int] | None = None
    for contour in contours:
        x, y, bw, bh = cv2.boundingRect(contour)
        area = bw * bh
        if not min_share * w * h <= area <= max_share * w * h:
            continue
        if cv2.contourArea(contour) < 0.85 * area:  # not a rectangle
            continue
        if best is None or area > best[2] * best[3]:
            best = (x, y, bw, bh)
    return best


def _gray(img: np.ndarray) -> np.ndarray:
    return img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)


def compute_local_features(work_gray: np.ndarray, full: np.ndarray | None = None) -> LocalFeatures:
    """Keypoints of the image and of its mirror image, a small grey copy, and the same for an inset.

    `work_gray` is the grey working copy (longer side <= WORK_SIDE); `full`, if given, the image at
    full resolution (RGB or grey), from which an inset is cut.
    """
    view, mirror = _keypoints(work_gray, with_mirror=True)
    h, w = work_gray.shape
    inset = None
    box = find_inset(work_gray)
    if box is not None:
        x, y, bw, bh = box
        source = full if full is not None else work_gray
        s = source.shape[1] / w
        crop = _gray(np.ascontiguousarray(source[int(y * s): int((y + bh) * s), int(x * s): int((x + bw) * s)]))
        if min(crop.shape) >= 32:
            inset_work = np.ascontiguousarray(resize_long_side(crop, WORK_SIDE))
            inset_view, _ = _keypoints(inset_work, with_mirror=False)
            ih, iw = inset_work.shape
            inset = LocalFeatures(width=iw, height=ih, view=inset_view, mirror=EMPTY_KEYPOINTS,
                                  gray=np.ascontiguousarray(resize_long_side(inset_work, QUERY_GRAY_SIDE)))
    gray = np.ascontiguousarray(resize_long_side(work_gray, QUERY_GRAY_SIDE))
    return LocalFeatures(width=w, height=h, view=view, mirror=mirror, gray=gray, inset=inset)


# ---------------------------------------------------------------------------------------------
# Verifying one query against one registered work


@dataclass(frozen=True)
class VerifyParams:
    """Thresholds of the robust matcher. Defaults were chosen with `python -m benchmarks.gate_evasion`
    (synthetic illustrations) and `python -m benchmarks.flat_art` (real flat clip art, icons,
    pictograms and emoji at 1k-13k registered works).

    Measured (160 synthetic works by 20 artists, 8800 attacked copies): copies that PDQ misses reach
    coverage >= 0.79 in 99 % of cases and their inliers span >= 25 % of the work; distinct works of
    the same artist (shared signature, character, panel layout) reach at most 0.54 coverage where
    their inliers span >= 5 %, and span at most 4 % where their coverage passes. min_coverage 0.6
    let 1 of 12720 distinct pairs through; 0.7 none, at the cost of 0.3 % of robust-only catches.

    Fixed thresholds do not scale with the registry: every registered work compared is one more
    chance for an unrelated flat drawing to pass them. So a match must also be *unlikely by chance
    over the whole registry*: the number of false alarms (`nfa`, below) must be at most `max_nfa`.
    """

    ratio: float = field(default=0.85, metadata={"help": "Lowe's ratio test on Hamming distances"})
    max_hamming: int = field(default=80, metadata={"help": "descriptor distance bound, of 256 bits"})
    min_inliers: int = field(default=8, metadata={"help": "RANSAC inliers of the similarity transform"})
    ransac_px: float = field(default=5.0, metadata={"help": "reprojection error, working-frame pixels of the query"})
    min_scale: float = field(default=0.05, metadata={"help": "registered -> query scale accepted, lowest"})
    max_scale: float = field(default=20.0, metadata={"help": "registered -> query scale accepted, highest"})
    blur: float = field(default=1.2, metadata={"help": "Gaussian sigma on both images before comparing, thumb px"})
    cell: int = field(default=12, metadata={"help": "alignment cell side, thumbnail pixels"})
    cell_texture: float = field(default=6.0, metadata={"help": "grey-level std for a registered cell to be detailed"})
    cell_zncc: float = field(default=0.6, metadata={"help": "a cell agrees when |normalised correlation| is above"})
    max_coherence: float = field(default=0.9, metadata={"help": "cells more one-directional than this are not judged"})
    support_margin: int = field(default=1, metadata={"help": "cells added around the inliers' bounding box"})
    min_cells: int = field(default=8, metadata={"help": "detailed cells in the support region needed to judge"})
    min_coverage: float = field(default=0.6, metadata={"help": "share of those cells that must agree"})
    min_area: float = field(default=0.05, metadata={"help": "share of the registered work the inliers must span"})
    max_nfa: float = field(default=1e-3, metadata={
        "help": "expected number of chance matches per upload over the whole registry that a match may reach; "
                "inf: fixed thresholds only (the rule before issue 15)"})
    cell_chance: float = field(default=0.35, metadata={
        "help": "probability that a detailed cell agrees under a wrong alignment (calibrated on real flat art)"})
    variant_coverage: float = field(default=0.8, metadata={
        "help": "a match whose cells agree less than this is a variant of the drawing (an edit, a black-and-white "
                "version), not a plain copy"})
    element_area: float = field(default=0.3, metadata={
        "help": "a match spanning less than this share of the registered work and of the query is a shared element"})

    def __post_init__(self) -> None:
        for name in ("min_coverage", "min_area", "cell_chance", "variant_coverage", "element_area", "ratio"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"VerifyParams.{name} must be between 0 and 1, got {value}")
        if not 0.0 < self.cell_chance < 1.0:
            raise ValueError(f"VerifyParams.cell_chance must be strictly between 0 and 1, got {self.cell_chance}")
        if not self.max_nfa > 0:
            raise ValueError(f"VerifyParams.max_nfa must be positive (inf turns the a-contrario test off), "
                             f"got {self.max_nfa}")
        if self.min_inliers < 3:
            raise ValueError(f"VerifyParams.min_inliers must be at least 3, got {self.min_inliers}")

    def passes(self, *, inliers: int, cells: int, coverage: float, area: float) -> bool:
        """The fixed thresholds: enough inliers spanning enough of the work, enough detailed cells, enough agree."""
        return (inliers >= self.min_inliers and area >= self.min_area and cells >= self.min_cells
                and coverage >= self.min_coverage)

    def log10_nfa(self, *, cells: int, agree: int, compared: int) -> float:
        """log10 of the number of false alarms of a match with `agree` of `cells` cells agreeing.

        A-contrario (Desolneux, Moisan & Morel; ORSA/AC-RANSAC, Moisan & Stival): under the
        background hypothesis "the query is not this work", each judged cell agrees independently
        with probability `cell_chance`, so the chance of at least `agree` agreeing is a binomial tail.
        The query is tested against every one of the `compared` registered works in each of its
        `len(VIEWS)` views, so the expected number of matches this good by chance is
        NFA = compared x views x P[Binomial(cells, cell_chance) >= agree]. It grows with the registry,
        and a drawing with few detailed cells (flat, low-texture) cannot reach a small NFA at all
        unless nearly every cell agrees: at 100k works and cell_chance 0.35, at least 19 cells.
        """
        tests = max(1, compared) * len(VIEWS)
        return math.log10(tests) + log10_binomial_tail(cells, agree, self.cell_chance)

    def accepts(self, *, inliers: int, cells: int, coverage: float, area: float, log10_nfa: float) -> bool:
        """The match rule: the fixed thresholds, and a number of false alarms of at most `max_nfa`."""
        return (self.passes(inliers=inliers, cells=cells, coverage=coverage, area=area)
                and log10_nfa <= math.log10(self.max_nfa))

    def kind(self, *, coverage: float, area: float, query_area: float) -> EvidenceKind:
        """What a match shows the admin: a copy, a variant of one drawing, or a shared element."""
        if area < self.element_area and query_area < self.element_area:
            return "shared_element"  # a small part of both: a disc, a padlock, a pictogram figure
        if coverage < self.variant_coverage:
            return "variant"  # the drawing, but its pixels differ over much of it
        return "copy"


def log10_binomial_tail(n: int, k: int, p: float) -> float:
    """log10 P[X >= k] for X ~ Binomial(n, p), exact (summed in log space); 0 when k <= 0."""
    if k <= 0:
        return 0.0
    if k > n:
        return -math.inf
    i = np.arange(k, n + 1, dtype=np.float64)
    log_terms = (math.lgamma(n + 1) - np.array([math.lgamma(x + 1) + math.lgamma(n - x + 1) for x in i])
                 + i * math.log(p) + (n - i) * math.log1p(-p))
    top = float(log_terms.max())
    return (top + math.log(float(np.exp(log_terms - top).sum()))) / math.log(10)


@dataclass(frozen=True)
class Registered:
    """What the index keeps of a registered work's fingerprint to verify candidates.

    The thumbnail may be given as PNG bytes instead of pixels: it is then decoded only if the
    geometric check passes, which most candidates do not.
    """

    width: int
    height: int
    keypoints: Keypoints
    thumb: np.ndarray | None = None  # (h, w) uint8, longer side <= REGISTERED_THUMB_SIDE
    thumb_png: bytes | None = None

    def thumbnail(self) -> np.ndarray:
        if self.thumb is not None:
            return self.thumb
        if self.thumb_png is None:
            raise ValueError("a registered work needs a thumbnail or its PNG bytes")
        thumb = cv2.imdecode(np.frombuffer(self.thumb_png, np.uint8), cv2.IMREAD_GRAYSCALE)
        if thumb is None:
            raise ValueError("a registered work's thumbnail PNG is unreadable; recompute its fingerprint")
        return thumb


def registered_from(features: LocalFeatures, thumb_side: int | None = None) -> Registered:
    thumb = resize_long_side(features.gray, thumb_side or REGISTERED_THUMB_SIDE)
    return Registered(features.width, features.height, features.view, thumb=np.ascontiguousarray(thumb))


@dataclass(frozen=True)
class Verification:
    matched: bool
    inliers: int
    coverage: float  # share of detailed cells in the support region that agree after alignment
    area: float  # share of the registered work's area that the inliers span
    cells: int  # detailed cells judged (0, and coverage 0, when the area was too small to be worth aligning)
    view: str  # "image", "mirror" or "inset": which view of the query matched
    log10_nfa: float = 0.0  # log10 of the number of false alarms (see `VerifyParams.log10_nfa`); 0 when not judged
    query_area: float = 0.0  # share of the query view's area that the inliers span
    kind: EvidenceKind = "copy"  # what the match shows, when it matched


NO_MATCH = Verification(False, 0, 0.0, 0.0, 0, "image")


def _putative(query: Keypoints, reg: Keypoints, p: VerifyParams) -> tuple[np.ndarray, np.ndarray]:
    """Nearest registered descriptor of each query descriptor that passes the distance and ratio tests."""
    if len(query) < 2 or len(reg) < 2:
        return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)
    index = faiss.IndexBinaryFlat(256)
    index.add(np.ascontiguousarray(reg.descriptors, np.uint8))
    dist, nn = index.search(np.ascontiguousarray(query.descriptors, np.uint8), 2)
    ok = (nn[:, 0] >= 0) & (dist[:, 0] <= p.max_hamming) & (dist[:, 0] < p.ratio * dist[:, 1])
    return query.points[ok], reg.points[nn[ok, 0]]


def _pixel_scale(s: float) -> np.ndarray:
    """Maps pixel coordinates of an image to those of a copy `s` times larger (pixel centres kept)."""
    return np.array([[s, 0, 0.5 * s - 0.5], [0, s, 0.5 * s - 0.5], [0, 0, 1]])


def _cells(img: np.ndarray, c: int) -> np.ndarray:
    """(H, W) → (H // c, W // c, c * c): the pixels of each c×c cell."""
    ny, nx = img.shape[0] // c, img.shape[1] // c
    return img[: ny * c, : nx * c].reshape(ny, c, nx, c).transpose(0, 2, 1, 3).reshape(ny, nx, c * c)


def _coherence(img: np.ndarray, c: int) -> np.ndarray:
    """Per cell, how much the gradients share one orientation: 1 for one straight edge, 0 for a corner."""
    gx = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=3)
    jxx, jyy, jxy = (_cells(a, c).sum(axis=2) for a in (gx * gx, gy * gy, gx * gy))
    trace = jxx + jyy
    diff = np.sqrt((jxx - jyy) ** 2 + 4 * jxy**2)
    return np.where(trace > 1e-6, (diff / np.maximum(trace, 1e-6)) ** 2, 0.0)


def _alignment(query_gray: np.ndarray, query_width: int, reg: Registered, m_reg_to_query: np.ndarray,
               inlier_pts: np.ndarray, p: VerifyParams) -> tuple[int, int]:
    """Warp the query into the registered thumbnail's frame; how many judged cells agree, of how many.

    Only the *support region* is judged: the bounding box of the inliers on the registered work, a
    cell wider on each side. What lies outside was cropped away or framed by other content (a
    screenshot's window, a border) and says nothing either way.
    """
    thumb = reg.thumbnail()
    th, tw = thumb.shape
    c = p.cell
    ny, nx = th // c, tw // c
    if ny == 0 or nx == 0:
        return 0, 0
    # thumbnail pixel → registered working pixel → query working pixel → query grey pixel
    s_reg = reg.width / tw
    s_q = query_gray.shape[1] / query_width
    a = (_pixel_scale(s_q) @ np.vstack([m_reg_to_query, [0, 0, 1]]) @ _pixel_scale(s_reg))[:2]
    scale = float(np.sqrt(abs(np.linalg.det(a[:, :2]))))  # query-grey pixels per thumbnail pixel
    src = query_gray
    if scale > 1.2:  # pre-filter so the warp does not alias
        src = cv2.GaussianBlur(src, (0, 0), 0.5 * scale)
    warped = cv2.warpAffine(src, a, (tw, th), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    valid = cv2.warpAffine(np.full(src.shape, 255, np.uint8), a, (tw, th),
                           flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
                           borderValue=0)
    # where the query holds the work at a lower resolution than the thumbnail, soften the thumbnail alike
    r_sigma = float(np.hypot(p.blur, 0.5 / scale)) if scale < 1 else p.blur
    reg_blurred = cv2.GaussianBlur(thumb.astype(np.float32), (0, 0), r_sigma)
    r = _cells(reg_blurred, c)
    q = _cells(cv2.GaussianBlur(warped.astype(np.float32), (0, 0), p.blur), c)
    inside = _cells(valid, c).min(axis=2) > 0
    r = r - r.mean(axis=2, keepdims=True)
    q = q - q.mean(axis=2, keepdims=True)
    rs = np.sqrt((r * r).mean(axis=2))
    qs = np.sqrt((q * q).mean(axis=2))
    # |correlation|: a recolouring can swap which of two neighbouring colours is the lighter
    zncc = np.abs((r * q).mean(axis=2)) / (rs * qs + 1e-6)
    # A cell holding one straight edge (a panel border, a frame) agrees under any shift along it and is
    # shared by every page drawn on the same template: it is not evidence of a copy.
    detailed = (rs > p.cell_texture) & (_coherence(reg_blurred, c) <= p.max_coherence)
    cell_xy = (inlier_pts + 0.5) / s_reg / c
    x0, y0 = np.floor(cell_xy.min(axis=0)).astype(int) - p.support_margin
    x1, y1 = np.floor(cell_xy.max(axis=0)).astype(int) + p.support_margin
    support = np.zeros_like(inside)
    support[max(0, y0): y1 + 1, max(0, x0): x1 + 1] = True
    judged = detailed & inside & support
    n = int(judged.sum())
    agree = judged & (qs > 0.5 * p.cell_texture) & (zncc > p.cell_zncc)
    return int(agree.sum()), n


def _verify_view(kp: Keypoints, gray: np.ndarray, width: int, reg: Registered, p: VerifyParams,
                 name: str, compared: int) -> Verification | None:
    qpts, rpts = _putative(kp, reg.keypoints, p)
    if len(qpts) < p.min_inliers:
        return None
    m, inl = cv2.estimateAffinePartial2D(rpts, qpts, method=cv2.RANSAC, ransacReprojThreshold=p.ransac_px,
                                         maxIters=2000, confidence=0.995)
    if m is None or inl is None:
        return None
    inliers = int(inl.sum())
    scale = float(np.hypot(m[0, 0], m[1, 0]))
    if inliers < p.min_inliers or not p.min_scale <= scale <= p.max_scale:
        return None
    keep = inl.ravel() > 0
    pts = rpts[keep]
    span = pts.max(axis=0) - pts.min(axis=0)
    area = float(span[0] * span[1]) / (reg.width * reg.height)
    qspan = qpts[keep].max(axis=0) - qpts[keep].min(axis=0)
    query_area = float(qspan[0] * qspan[1]) / (width * gray.shape[0] * width / gray.shape[1])
    if area < p.min_area:
        # cannot match whatever the pixels say (a shared signature or character head): skip the
        # alignment, the costliest step, which most verified candidates of a new work reach
        return Verification(False, inliers, 0.0, area, 0, name, query_area=query_area)
    agree, cells = _alignment(gray, width, reg, m, pts, p)
    coverage = agree / cells if cells else 0.0
    nfa = p.log10_nfa(cells=cells, agree=agree, compared=compared)
    return Verification(p.accepts(inliers=inliers, cells=cells, coverage=coverage, area=area, log10_nfa=nfa),
                        inliers, coverage, area, cells, name, log10_nfa=nfa, query_area=query_area,
                        kind=p.kind(coverage=coverage, area=area, query_area=query_area))


VIEWS = ("image", "mirror", "inset")


def _view(query: LocalFeatures, name: str) -> tuple[Keypoints, np.ndarray, int] | None:
    """A view's keypoints, grey working image and width; None for an inset the query does not have."""
    if name == "image":
        return query.view, query.gray, query.width
    if name == "mirror":  # the mirror view's frame is the query's frame flipped left-right
        return query.mirror, np.ascontiguousarray(query.gray[:, ::-1]), query.width
    if name == "inset" and query.inset is not None:
        return query.inset.view, query.inset.gray, query.inset.width
    return None


def _verifications(query: LocalFeatures, reg: Registered, p: VerifyParams,
                   views: tuple[str, ...], compared: int) -> Iterator[Verification]:
    """Each named view's verification, in order, for the views that reached the geometric check."""
    for name in views:
        view = _view(query, name)
        if view is not None and (v := _verify_view(*view, reg, p, name, compared)) is not None:
            yield v


def verify_views(query: LocalFeatures, reg: Registered, p: VerifyParams,
                 views: tuple[str, ...] = VIEWS, *, compared: int = 1) -> list[Verification]:
    """One verification per view of the query (as is, mirrored, inset) that reached the alignment step."""
    return list(_verifications(query, reg, p, views, compared))


def verify(query: LocalFeatures, reg: Registered, params: VerifyParams | None = None,
           views: tuple[str, ...] = VIEWS, *, compared: int = 1) -> Verification:
    """Does the query contain the registered work, or a real part of it, however placed, turned or mirrored?

    `compared` is the number of registered works the query is compared with (the registry's size):
    the more there are, the stronger the evidence a match needs (`VerifyParams.log10_nfa`).
    `views` are tried in order and the first that matches is returned; the index passes them most
    voted first and leaves out views without votes.
    """
    best = NO_MATCH
    for v in _verifications(query, reg, params or VerifyParams(), views, compared):  # lazily: stops at a match
        if v.matched:
            return v
        if (v.coverage * v.cells, v.inliers) > (best.coverage * best.cells, best.inliers):
            best = v
    return best
