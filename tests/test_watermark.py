"""The invisible watermark: exact round trips, robustness to common edits, no false ids, input checks.

Images are made here, seeded. Sizes are small (256-384 px) to keep the file fast; the benchmark
(`python -m benchmarks.watermark`) measures the full attack list on bigger images.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from mimicsafe.provenance import watermark_payload as codec
from mimicsafe.provenance.watermark import Detection, WatermarkConfig, detect, embed

PAYLOAD = 0xC0FFEE_0DD_BA11_5EED & (2**64 - 1)


def flat_illustration(seed: int, size: int = 384) -> np.ndarray:
    """Flat colours with dark outlines on a white background: the hardest case for frequency marks."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), 255, dtype=np.uint8)
    for _ in range(6):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        centre = tuple(int(v) for v in rng.integers(0, size, 2))
        radius = int(rng.integers(size // 10, size // 3))
        cv2.circle(img, centre, radius, colour, -1, cv2.LINE_AA)
        cv2.circle(img, centre, radius, (20, 20, 30), 3, cv2.LINE_AA)
    cv2.rectangle(img, (size // 8, size // 2), (size // 2, size - 10), (90, 160, 220), -1)
    return img


def textured(seed: int, size: int = 384) -> np.ndarray:
    """A photo-like image: smooth gradients plus blurred noise texture in every channel."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = np.stack([120 + 80 * xx, 100 + 60 * yy, 140 - 50 * xx * yy], axis=2)
    noise = cv2.GaussianBlur(rng.normal(0, 40, (size, size, 3)).astype(np.float32), (0, 0), 1.5)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality)
    return np.array(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return 10 * np.log10(255.0**2 / mse)


@pytest.fixture(scope="module")
def marked_flat() -> tuple[np.ndarray, np.ndarray]:
    img = flat_illustration(1)
    return img, embed(img, PAYLOAD)


@pytest.fixture(scope="module")
def marked_textured() -> tuple[np.ndarray, np.ndarray]:
    img = textured(2)
    return img, embed(img, PAYLOAD)


def assert_found(found: Detection) -> None:
    assert found.payload_int == PAYLOAD, f"expected the embedded id, got {found}"
    assert found.version == codec.VERSION


@pytest.mark.parametrize("fixture", ["marked_flat", "marked_textured"])
def test_round_trip_is_exact_and_invisible(fixture: str, request: pytest.FixtureRequest) -> None:
    original, marked = request.getfixturevalue(fixture)
    assert marked.shape == original.shape and marked.dtype == np.uint8
    assert psnr(original, marked) >= 38.0
    found = detect(marked)
    assert_found(found)
    assert found.transform == "identity"
    assert found.bit_accuracy > 0.9


def test_payload_as_bytes_equals_payload_as_int(marked_flat: tuple[np.ndarray, np.ndarray]) -> None:
    original, marked = marked_flat
    assert np.array_equal(embed(original, PAYLOAD.to_bytes(8, "big")), marked)
    assert detect(marked).payload == PAYLOAD.to_bytes(8, "big")


@pytest.mark.parametrize("fixture", ["marked_flat", "marked_textured"])
def test_survives_jpeg_75(fixture: str, request: pytest.FixtureRequest) -> None:
    _, marked = request.getfixturevalue(fixture)
    assert_found(detect(jpeg(marked, 75)))


def test_survives_resize_half(marked_flat: tuple[np.ndarray, np.ndarray]) -> None:
    _, marked = marked_flat
    small = cv2.resize(marked, (marked.shape[1] // 2, marked.shape[0] // 2), interpolation=cv2.INTER_AREA)
    assert_found(detect(small))


def test_survives_mirroring(marked_flat: tuple[np.ndarray, np.ndarray]) -> None:
    _, marked = marked_flat
    found = detect(np.ascontiguousarray(marked[:, ::-1]))
    assert_found(found)
    assert "mirrored" in found.transform


def test_survives_crop_10_percent(marked_flat: tuple[np.ndarray, np.ndarray]) -> None:
    _, marked = marked_flat
    h, w = marked.shape[:2]
    cropped = np.ascontiguousarray(marked[int(0.07 * h) : int(0.97 * h), int(0.03 * w) : int(0.93 * w)])
    assert_found(detect(cropped))


def test_survives_small_rotation(marked_flat: tuple[np.ndarray, np.ndarray]) -> None:
    _, marked = marked_flat
    rotated = np.array(Image.fromarray(marked).rotate(4, Image.Resampling.BICUBIC, fillcolor=(255, 255, 255)))
    found = detect(rotated)
    assert_found(found)
    assert "rotated 4" in found.transform or "rotated 3" in found.transform


def test_clean_images_read_as_no_watermark() -> None:
    rng = np.random.default_rng(7)
    clean = []
    for i in range(50):
        h, w = int(rng.integers(64, 129)), int(rng.integers(64, 129))
        kind = i % 4
        if kind == 0:
            clean.append(flat_illustration(100 + i, 128)[:h, :w].copy())
        elif kind == 1:
            clean.append(textured(200 + i, 128)[:h, :w].copy())
        elif kind == 2:
            clean.append(np.full((h, w, 3), rng.integers(0, 256, 3), dtype=np.uint8))
        else:
            clean.append(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    found = [detect(img) for img in clean]
    assert all(f.payload is None and not f.found for f in found)
    assert all(f.attempts > 0 for f in found)  # the search did run and tried to decode


def test_other_key_does_not_read_the_mark(marked_flat: tuple[np.ndarray, np.ndarray]) -> None:
    _, marked = marked_flat
    assert detect(marked, config=WatermarkConfig(key=b"another deployment's secret")).payload is None


def test_codec_corrects_errors_and_rejects_noise() -> None:
    key = b"test-key"
    bits = codec.encode((123456789).to_bytes(8, "big"), key)
    assert bits.size == codec.code_bits() == 244
    soft = np.where(bits == 1, 1.0, -1.0)
    flipped = soft.copy()
    flipped[np.random.default_rng(0).choice(bits.size, codec.BCH_T, replace=False)] *= -1
    decoded, _ = codec.decode(flipped, key, chase_bits=0)
    assert decoded is not None and decoded.payload == (123456789).to_bytes(8, "big")
    rng = np.random.default_rng(1)
    assert all(codec.decode(rng.normal(size=bits.size), key, chase_bits=3)[0] is None for _ in range(200))
    # Right code word, wrong MAC key: the MAC check rejects it.
    assert codec.decode(soft, b"other-key", chase_bits=0)[0] is None


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((128, 128, 3), dtype=np.float32), "dtype uint8"),
        (np.zeros((128, 128), dtype=np.uint8), "shape"),
        (np.zeros((128, 128, 4), dtype=np.uint8), "shape"),
        (np.zeros((16, 64, 3), dtype=np.uint8), "at least"),
        ([[0, 0, 0]], "numpy array"),
    ],
)
def test_bad_images_raise_value_error_naming_rgb(image: object, message: str) -> None:
    for call in (lambda: embed(image, 1), lambda: detect(image)):  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="rgb") as info:
            call()
        assert message in str(info.value)


@pytest.mark.parametrize("payload", [-1, 2**64, b"short", True, 1.5])
def test_bad_payload_raises_value_error_naming_payload(payload: object) -> None:
    with pytest.raises(ValueError, match="payload"):
        embed(np.zeros((128, 128, 3), dtype=np.uint8), payload)  # type: ignore[arg-type]


def test_embed_refuses_images_too_small_to_carry_a_mark() -> None:
    with pytest.raises(ValueError, match="rgb must be at least 128"):
        embed(np.zeros((100, 300, 3), dtype=np.uint8), 1)
    assert detect(np.zeros((100, 300, 3), dtype=np.uint8)).payload is None


def test_config_checks_its_fields() -> None:
    with pytest.raises(ValueError, match="grid"):
        WatermarkConfig(grid=8)
    with pytest.raises(ValueError, match="psnr"):
        WatermarkConfig(target_psnr=36.0)
