"""Safe decoding: every hostile file gets its reason code, every awkward mode decodes deliberately."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import hostile
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageCms, ImageFile

from ownership import reasons
from ownership.decode import MAX_JPEG_SCANS, decode_image, sniff_format
from ownership.errors import DecodeError
from ownership.types import DecodedImage, DecodeLimits

LIMITS = DecodeLimits()
REPO = Path(__file__).resolve().parents[2]


def decode(data: bytes, limits: DecodeLimits = LIMITS) -> DecodedImage:
    return decode_image(data, limits)


def code_of(data: bytes, limits: DecodeLimits = LIMITS) -> str:
    with pytest.raises(DecodeError) as info:
        decode_image(data, limits)
    return info.value.code


# --- the hostile corpus --------------------------------------------------------------------------


@pytest.mark.parametrize("case", hostile.corpus(), ids=lambda case: case.name)
def test_corpus_case_gets_its_reason_or_decodes(case: hostile.Case) -> None:
    if case.code is None:
        image = decode(case.data)
        assert image.rgb.shape[2] == 3
    else:
        assert code_of(case.data) == case.code


def test_every_corpus_code_is_a_stable_reason() -> None:
    codes = {case.code for case in hostile.corpus()} - {None}
    assert codes == {reasons.UNDECODABLE, reasons.TOO_LARGE, reasons.UNSUPPORTED_FORMAT}


def test_refusals_say_what_to_do() -> None:
    with pytest.raises(DecodeError) as info:
        decode(hostile.encode(Image.new("RGB", (4, 4)), "GIF"))
    assert "GIF" in info.value.detail and "PNG, JPEG or WebP" in info.value.detail


# --- format by content ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (hostile.png(), "PNG"),
        (hostile.jpeg(), "JPEG"),
        (hostile.webp(), "WEBP"),
        (hostile.encode(Image.new("RGB", (4, 4)), "GIF"), None),
        (hostile.encode(Image.new("RGB", (4, 4)), "BMP"), None),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", None),
        (b"RIFF\x00\x00\x00\x00WAVE", None),
        (b"", None),
    ],
)
def test_sniff_format_reads_signatures(data: bytes, expected: str | None) -> None:
    assert sniff_format(data) == expected


def test_format_is_decided_by_content_not_declared_name() -> None:
    assert decode(hostile.webp()).format == "WEBP"
    assert decode(hostile.jpeg()).format == "JPEG"
    assert decode(hostile.png()).format == "PNG"


# --- size limits and bombs -------------------------------------------------------------------------


def test_byte_limit() -> None:
    data = hostile.png()
    assert code_of(data, DecodeLimits(max_bytes=len(data) - 1)) == reasons.TOO_LARGE
    assert decode(data, DecodeLimits(max_bytes=len(data))).width == 64


def test_pixel_limit_is_inclusive() -> None:
    data = hostile.png(64, 48)
    assert decode(data, DecodeLimits(max_pixels=64 * 48)).height == 48
    assert code_of(data, DecodeLimits(max_pixels=64 * 48 - 1)) == reasons.TOO_LARGE


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_pixel_limit_applies_to_every_format(fmt: str) -> None:
    data = hostile.jpeg(100, 100) if fmt == "JPEG" else hostile.webp(100, 100)
    assert code_of(data, DecodeLimits(max_pixels=9_999)) == reasons.TOO_LARGE


def test_own_pixel_limit_is_checked_below_pillows_threshold() -> None:
    # 81 M pixels: under Pillow's own bomb warning (89 M), over the gate's 40 M.
    with pytest.raises(DecodeError) as info:
        decode(hostile.png_claiming(9_000, 9_000))
    assert info.value.code == reasons.TOO_LARGE and "40,000,000" in info.value.detail


def test_pillow_decompression_bomb_error_is_guarded() -> None:
    # With the gate's own limit lifted, Pillow's DecompressionBombError (> 2 × 89 M pixels) still holds.
    bomb = hostile.raw_png(20_000, 20_000, idat=b"x\x9c\x03\x00\x00\x00\x00\x01")
    with pytest.raises(DecodeError) as info:
        decode(bomb, DecodeLimits(max_pixels=10**12))
    assert info.value.code == reasons.TOO_LARGE and "bomb" in info.value.detail


def test_pillow_decompression_bomb_warning_as_error_is_guarded() -> None:
    bomb = hostile.raw_png(10_000, 10_000, idat=b"x\x9c\x03\x00\x00\x00\x00\x01")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        assert code_of(bomb, DecodeLimits(max_pixels=10**12)) == reasons.TOO_LARGE


def test_excess_compressed_data_is_never_inflated_into_memory() -> None:
    """A 64×64 PNG whose IDAT inflates to 1 GiB: peak memory of a fresh process stays small."""
    script = textwrap.dedent(
        """
        import resource, sys
        sys.path.insert(0, sys.argv[1])
        import hostile
        from ownership.decode import decode_image
        from ownership.types import DecodeLimits
        bomb = hostile.png_excess_idat(64, 64, 1 << 30)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        image = decode_image(bomb, DecodeLimits())
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(image.rgb.shape, (after - before) // 1024)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(Path(__file__).parent)],
        capture_output=True, text=True, cwd=REPO, timeout=120, check=True,
        env={"PYTHONPATH": str(REPO), "OPENBLAS_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    shape, grown_mib = result.stdout.rsplit(" ", 1)
    assert shape == "(64, 64, 3)"
    assert int(grown_mib) < 64, f"decoding grew the process by {grown_mib} MiB"


def test_progressive_scan_limit() -> None:
    assert decode(hostile.progressive_jpeg()).width == 64
    assert code_of(hostile.jpeg_many_scans(MAX_JPEG_SCANS + 1)) == reasons.TOO_LARGE


# --- truncation and global Pillow state ------------------------------------------------------------


def test_refuses_when_load_truncated_images_was_switched_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(DecodeError) as info:
        decode(hostile.png())
    assert info.value.code == reasons.UNDECODABLE and "LOAD_TRUNCATED_IMAGES" in info.value.detail


def test_decoding_leaves_global_pillow_state_alone() -> None:
    before = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
    for case in hostile.corpus():
        with contextlib.suppress(DecodeError):
            decode(case.data)
    assert before == (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)


# --- deliberate conversions ----------------------------------------------------------------------


def test_output_contract() -> None:
    image = decode(hostile.png(64, 48))
    assert image.rgb.dtype == np.uint8 and image.rgb.shape == (48, 64, 3)
    assert image.rgb.flags.c_contiguous and not image.rgb.flags.writeable
    assert (image.width, image.height) == (64, 48)
    np.testing.assert_array_equal(image.rgb, hostile.pixels(64, 48))
    assert image.notes == ()


def test_16bit_grey_is_scaled_not_truncated() -> None:
    image = decode(hostile.png16_grey())  # every 16-bit value once
    values = np.arange(65536)
    np.testing.assert_array_equal(image.rgb[..., 0].ravel(), np.round(values * 255 / 65535).astype(np.uint8))
    assert "16-bit samples scaled to 8-bit" in image.notes


def test_16bit_rgb_is_reduced_with_a_note() -> None:
    image = decode(hostile.png16_rgb())
    assert tuple(image.rgb[0, 0]) == (255, 0, 128)
    assert any("16-bit" in note for note in image.notes)


def test_cmyk_without_profile_is_converted_naively() -> None:
    image = decode(hostile.cmyk_jpeg())
    assert tuple(image.rgb[4, 4]) == (0, 255, 255)  # cyan ink → cyan
    assert image.notes == ("CMYK converted to RGB naively (no ICC profile)",)


def test_cmyk_with_profile_goes_through_the_profile() -> None:
    image = decode(hostile.cmyk_jpeg(hostile.cmyk_icc_profile()))  # this profile renders every ink red
    red, green, blue = (int(v) for v in image.rgb[4, 4])
    assert red > green + 60 and red > blue + 60
    assert image.notes == ("CMYK converted to RGB through the embedded ICC profile",)


def test_cmyk_with_unusable_profile_falls_back_with_a_note() -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    image = decode(hostile.cmyk_jpeg(srgb))
    assert tuple(image.rgb[4, 4]) == (0, 255, 255)
    assert image.notes[0].startswith("CMYK converted to RGB naively: the embedded ICC profile is unusable")


def test_palette_and_grey_expand_to_rgb() -> None:
    data = hostile.palette_png()
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    image = decode(data)
    np.testing.assert_array_equal(image.rgb, expected)
    assert image.notes == ("palette expanded to RGB",)
    grey = decode(hostile.grey_png())
    assert np.array_equal(grey.rgb[..., 0], grey.rgb[..., 2]) and grey.notes == ("greyscale expanded to RGB",)


def test_palette_transparency_becomes_white() -> None:
    data = hostile.palette_png(transparent_index=0)
    indices = np.asarray(Image.open(io.BytesIO(data)))
    image = decode(data)
    assert (image.rgb[indices == 0] == 255).all()
    assert image.notes == ("palette expanded to RGB", "alpha composited over white")


def test_alpha_is_composited_over_white() -> None:
    image = decode(hostile.rgba_png())
    assert tuple(image.rgb[5, 0]) == (255, 255, 255)  # fully transparent → the white canvas
    assert tuple(image.rgb[5, -1]) == (255, 0, 0)  # opaque red stays red
    assert np.abs(image.rgb[0, 0].astype(int) - (127, 127, 255)).max() <= 1  # half-transparent blue
    assert image.notes == ("alpha composited over white",)


def test_opaque_alpha_is_dropped_with_a_note() -> None:
    data = hostile.encode(Image.fromarray(hostile.pixels(16, 16, channels=4), mode="RGBA"), "PNG")
    image = decode(data)
    np.testing.assert_array_equal(image.rgb, hostile.pixels(16, 16))
    assert image.notes == ("fully opaque alpha channel dropped",)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_animation_uses_the_first_frame(fmt: str) -> None:
    image = decode(hostile.animated(fmt, frames=3))
    assert tuple(image.rgb[8, 8]) == (255, 0, 0)
    assert image.notes == ("animated or multi-frame image: only the first of 3 frames is used",)


def test_multi_picture_jpeg_uses_the_first_picture() -> None:
    first, second = Image.new("RGB", (16, 16), (255, 0, 0)), Image.new("RGB", (16, 16), (0, 0, 255))
    image = decode(hostile.encode(first, "MPO", save_all=True, append_images=[second]))
    assert image.rgb[8, 8, 0] > 240 and image.rgb[8, 8, 2] < 15
    assert image.notes[0] == "animated or multi-frame image: only the first of 2 frames is used"


def test_trns_colour_key_is_transparency() -> None:
    pixels = hostile.pixels(8, 8)
    pixels[0, 0] = (1, 2, 3)
    image = decode(hostile.encode(Image.fromarray(pixels), "PNG", transparency=(1, 2, 3)))
    assert tuple(image.rgb[0, 0]) == (255, 255, 255) and tuple(image.rgb[1, 1]) == tuple(pixels[1, 1])
    assert image.notes == ("alpha composited over white",)


@pytest.mark.parametrize(
    ("orientation", "shape", "black_corner"),
    [
        (1, (20, 40), "top_left"),
        (2, (20, 40), "top_right"),
        (3, (20, 40), "bottom_right"),
        (4, (20, 40), "bottom_left"),
        (5, (40, 20), "top_left"),
        (6, (40, 20), "top_right"),
        (7, (40, 20), "bottom_right"),
        (8, (40, 20), "bottom_left"),
    ],
)
def test_exif_orientation_is_applied(orientation: int, shape: tuple[int, int], black_corner: str) -> None:
    image = decode(hostile.jpeg_with_orientation(orientation))
    assert image.rgb.shape[:2] == shape
    corners = {
        "top_left": image.rgb[:4, :4],
        "top_right": image.rgb[:4, -4:],
        "bottom_left": image.rgb[-4:, :4],
        "bottom_right": image.rgb[-4:, -4:],
    }
    dark = {name for name, block in corners.items() if block.mean() < 60}
    assert dark == {black_corner}
    assert image.notes == (() if orientation == 1 else (f"EXIF orientation {orientation} applied",))


def test_polyglot_decodes_by_its_image_content() -> None:
    plain = decode(hostile.png())
    polyglot = decode(hostile.png_zip_polyglot())
    np.testing.assert_array_equal(polyglot.rgb, plain.rgb)
    assert len(polyglot.notes) == 1 and "after the end of the PNG data were ignored" in polyglot.notes[0]


# --- nothing but DecodeError -----------------------------------------------------------------------

BASES = [hostile.png(16, 12), hostile.jpeg(16, 12), hostile.webp(16, 12), hostile.progressive_jpeg()]
SMALL = DecodeLimits(max_bytes=1 << 20, max_pixels=1 << 20)
FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])  # fmt: skip


def _decode_or_refuse(data: bytes) -> None:
    try:
        image = decode_image(data, SMALL)
    except DecodeError as exc:
        assert exc.code in (reasons.UNDECODABLE, reasons.TOO_LARGE, reasons.UNSUPPORTED_FORMAT)
    else:
        assert image.rgb.dtype == np.uint8 and image.rgb.ndim == 3 and image.rgb.shape[2] == 3


@st.composite
def mutations(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["set", "truncate", "insert", "delete"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "set" and data:
            data[pos] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif data:
            del data[pos : pos + draw(st.integers(1, 64))]
    return bytes(data)


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes_raise_only_decode_error(data: bytes) -> None:
    _decode_or_refuse(data)


@FUZZ
@given(st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"RIFF\x00\x01\x00\x00WEBP"]), st.binary(max_size=2048))
def test_random_bytes_after_a_signature_raise_only_decode_error(magic: bytes, tail: bytes) -> None:
    _decode_or_refuse(magic + tail)


@FUZZ
@given(mutations())
def test_mutated_images_raise_only_decode_error(data: bytes) -> None:
    _decode_or_refuse(data)
