"""Opt-out and provenance signals: real signed C2PA files, XMP in every container, hostile metadata."""

from __future__ import annotations

import socket
import struct
import threading
import zlib
from collections.abc import Iterator

import hostile
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ownership.decode import MAX_CHUNKS, decode_image
from ownership.signals import MAX_XMP_BYTES, Signal, Signals, read_signals
from ownership.types import DecodeLimits

ENCODERS = {"image/png": hostile.png, "image/jpeg": hostile.jpeg, "image/webp": hostile.webp}


def signed(mime: str, *assertions: dict) -> bytes:
    return hostile.c2pa_sign(ENCODERS[mime](), mime, list(assertions))


# --- C2PA: training and data mining ----------------------------------------------------------------


@pytest.mark.parametrize("mime", sorted(ENCODERS))
def test_cawg_training_mining_not_allowed_prohibits(mime: str) -> None:
    data = signed(mime, hostile.training_mining({"cawg.ai_generative_training": "notAllowed"}))
    result = read_signals(data)
    assert result.prohibits_training and not result.ai_generated
    assert result.signals == (
        Signal(
            "training_prohibited",
            "c2pa:cawg.training-mining",
            "cawg.ai_generative_training: notAllowed in the active manifest",
        ),
    )
    assert any("validation state" in note for note in result.notes)


def test_c2pa_training_mining_label_is_accepted_too() -> None:
    assertion = hostile.training_mining({"c2pa.ai_training": "constrained"}, label="c2pa.training-mining")
    result = read_signals(signed("image/jpeg", assertion))
    assert [s.source for s in result.signals] == ["c2pa:c2pa.training-mining"]
    assert result.prohibits_training


@pytest.mark.parametrize(
    ("entry", "use", "prohibits"),
    [
        ("cawg.ai_generative_training", "notAllowed", True),
        ("cawg.ai_generative_training", "constrained", True),
        ("cawg.ai_generative_training", "allowed", False),
        ("cawg.ai_training", "notAllowed", True),
        ("cawg.data_mining", "notAllowed", True),
        ("cawg.ai_inference", "notAllowed", False),
    ],
)
def test_which_entries_prohibit_training(entry: str, use: str, prohibits: bool) -> None:
    result = read_signals(signed("image/png", hostile.training_mining({entry: use})))
    assert result.prohibits_training is prohibits
    if entry.endswith("ai_inference"):
        assert any("does not prohibit training" in note for note in result.notes)


def test_prohibition_in_an_ingredient_manifest_counts() -> None:
    parent = signed("image/png", hostile.training_mining({"cawg.ai_generative_training": "notAllowed"}))
    child = hostile.c2pa_sign(parent, "image/png", [], parent=parent)
    result = read_signals(child)
    assert result.prohibits_training
    assert "ingredient manifest" in result.signals[0].detail


def test_prohibition_is_honoured_when_the_file_was_tampered_with() -> None:
    data = bytearray(signed("image/png", hostile.training_mining({"cawg.ai_generative_training": "notAllowed"})))
    start, end = _png_chunk_span(bytes(data), b"IDAT")
    data[start + 8] ^= 0xFF
    data[end - 4 : end] = struct.pack(">I", zlib.crc32(bytes(data[start + 4 : end - 4])))
    result = read_signals(bytes(data))
    assert result.prohibits_training
    assert any("validation state Invalid" in note for note in result.notes)


# --- C2PA: AI-generated ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mime", "term", "ai"),
    [
        ("image/png", "trainedAlgorithmicMedia", True),
        ("image/jpeg", "trainedAlgorithmicMedia", True),
        ("image/webp", "compositeWithTrainedAlgorithmicMedia", True),
        ("image/png", "digitalCreation", False),
        ("image/png", "algorithmicMedia", False),
    ],
)
def test_digital_source_type_marks_ai_generated(mime: str, term: str, ai: bool) -> None:
    result = read_signals(signed(mime, hostile.created_action(term)))
    assert result.ai_generated is ai and not result.prohibits_training
    if ai:
        assert result.signals[0].source == "c2pa:digitalSourceType" and term in result.signals[0].detail


def test_no_manifest_is_quiet() -> None:
    assert read_signals(hostile.png()) == Signals()
    assert read_signals(hostile.jpeg()) == Signals()
    assert read_signals(hostile.webp()) == Signals()


def test_signed_files_still_decode() -> None:
    for mime in ENCODERS:
        assert decode_image(signed(mime, hostile.created_action()), DecodeLimits()).width == 64


def _png_chunk_span(data: bytes, ctype: bytes) -> tuple[int, int]:
    pos = 8
    while pos < len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        if data[pos + 4 : pos + 8] == ctype:
            return pos, pos + 12 + length
        pos += 12 + length
    raise AssertionError(f"no {ctype!r} chunk")


@pytest.mark.parametrize("damage", ["flip_middle", "zero_half", "truncate_box"])
def test_damaged_manifest_store_becomes_a_note(damage: str) -> None:
    data = bytearray(signed("image/png", hostile.training_mining({"cawg.ai_generative_training": "notAllowed"})))
    start, end = _png_chunk_span(bytes(data), b"caBX")
    body = slice(start + 8, end - 4)
    if damage == "flip_middle":
        middle = (body.start + body.stop) // 2
        data[middle : middle + 32] = bytes(b ^ 0x5A for b in data[middle : middle + 32])
    elif damage == "zero_half":
        half = (body.start + body.stop) // 2
        data[half : body.stop] = bytes(body.stop - half)
    else:
        keep = 40
        payload = bytes(data[body][:keep])
        data[start:end] = struct.pack(">I", keep) + b"caBX" + payload + struct.pack(">I", zlib.crc32(b"caBX" + payload))
    if damage != "truncate_box":
        start, end = _png_chunk_span(bytes(data), b"caBX")
        data[end - 4 : end] = struct.pack(">I", zlib.crc32(bytes(data[start + 4 : end - 4])))
    result = read_signals(bytes(data))
    assert isinstance(result, Signals)
    assert result.notes, "a damaged manifest store must leave a note"


# --- XMP ---------------------------------------------------------------------------------------------

PROHIBITED = [
    "DMI-PROHIBITED",
    "DMI-PROHIBITED-AIMLTRAINING",
    "DMI-PROHIBITED-GENAIMLTRAINING",
    "DMI-PROHIBITED-EXCEPTSEARCHENGINEINDEXING",
    "DMI-PROHIBITED-SEECONSTRAINT",
]


@pytest.mark.parametrize("value", PROHIBITED)
def test_every_dmi_prohibited_value_prohibits(value: str) -> None:
    result = read_signals(hostile.png_with_xmp(hostile.xmp_data_mining(value)))
    assert result.signals == (
        Signal("training_prohibited", "xmp:plus:DataMining", f"plus:DataMining = {hostile.PLUS_VOCAB}{value}"),
    )


@pytest.mark.parametrize("value", ["DMI-ALLOWED", "DMI-UNSPECIFIED", "DMI-ALLOWED-noncommercial"])
def test_other_dmi_values_do_not_prohibit(value: str) -> None:
    assert read_signals(hostile.png_with_xmp(hostile.xmp_data_mining(value))) == Signals()


@pytest.mark.parametrize("form", ["attribute", "element", "resource"])
@pytest.mark.parametrize("container", ["png", "png_compressed", "jpeg", "webp"])
def test_xmp_is_read_from_every_container_and_form(container: str, form: str) -> None:
    xmp = hostile.xmp_data_mining("DMI-PROHIBITED-AIMLTRAINING", form)
    data = {
        "png": lambda: hostile.png_with_xmp(xmp),
        "png_compressed": lambda: hostile.png_with_xmp(xmp, compressed=True),
        "jpeg": lambda: hostile.jpeg_with_xmp(xmp),
        "webp": lambda: hostile.webp_with_xmp(xmp),
    }[container]()
    result = read_signals(data)
    assert result.prohibits_training and result.notes == ()


@pytest.mark.parametrize(
    ("term", "ai"),
    [("trainedAlgorithmicMedia", True), ("compositeWithTrainedAlgorithmicMedia", True), ("digitalCapture", False)],
)
def test_xmp_digital_source_type(term: str, ai: bool) -> None:
    result = read_signals(hostile.jpeg_with_xmp(hostile.xmp_digital_source_type(term)))
    assert result.ai_generated is ai
    if ai:
        assert result.signals[0].source == "xmp:Iptc4xmpExt:DigitalSourceType"


def test_xmp_and_c2pa_signals_are_combined() -> None:
    base = hostile.png_with_xmp(hostile.xmp_data_mining("DMI-PROHIBITED"))
    data = hostile.c2pa_sign(base, "image/png", [hostile.created_action()])
    result = read_signals(data)
    assert result.prohibits_training and result.ai_generated
    assert {s.source for s in result.signals} == {"xmp:plus:DataMining", "c2pa:digitalSourceType"}


# --- hostile XMP -----------------------------------------------------------------------------------

BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">'
    + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(9))
    + ']><x:xmpmeta xmlns:x="adobe:ns:meta/" xmlns:plus="http://ns.useplus.org/ldf/xmp/1.0/" '
    'plus:DataMining="&j;"/>'
)
EXTERNAL_ENTITY = (
    '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
    '<x xmlns:plus="http://ns.useplus.org/ldf/xmp/1.0/"><plus:DataMining>&e;</plus:DataMining></x>'
)


@pytest.mark.parametrize("xmp", [BILLION_LAUGHS, EXTERNAL_ENTITY], ids=["billion_laughs", "external_entity"])
def test_doctype_is_refused(xmp: str) -> None:
    result = read_signals(hostile.png_with_xmp(xmp))
    assert result.signals == ()
    assert any("DOCTYPE" in note for note in result.notes)


def test_oversized_xmp_is_not_parsed() -> None:
    xmp = hostile.xmp_data_mining("DMI-PROHIBITED") + " " * MAX_XMP_BYTES
    result = read_signals(hostile.png_with_xmp(xmp))
    assert result.signals == () and any("cap" in note for note in result.notes)


def test_compressed_xmp_bomb_is_bounded() -> None:
    bomb = hostile.zlib_zeros(256 << 20)  # 256 MiB of zeros in ~260 KB
    itxt = b"XML:com.adobe.xmp\x00\x01\x00\x00\x00" + bomb
    data = hostile.png()
    data = data[:33] + hostile.png_chunk(b"iTXt", itxt) + data[33:]
    result = read_signals(data)
    assert result.signals == () and any("cap" in note for note in result.notes)


def test_deeply_nested_xmp_is_survived_and_read() -> None:
    depth = 100_000
    inner = f'<plus:DataMining xmlns:plus="{hostile.PLUS_NS}">{hostile.PLUS_VOCAB}DMI-PROHIBITED</plus:DataMining>'
    xmp = "<a>" * depth + inner + "</a>" * depth
    assert len(xmp) < MAX_XMP_BYTES
    assert read_signals(hostile.png_with_xmp(xmp)).prohibits_training


def test_malformed_xmp_keeps_what_was_read_before_the_error() -> None:
    xmp = hostile.xmp_data_mining("DMI-PROHIBITED")[:-60] + "<unclosed"
    result = read_signals(hostile.png_with_xmp(xmp))
    assert result.prohibits_training
    assert any("malformed" in note for note in result.notes)


def test_malformed_xmp_keeps_a_value_cut_off_by_the_error() -> None:
    xmp = hostile.xmp_data_mining("DMI-PROHIBITED-AIMLTRAINING", form="element")
    cut = xmp[: xmp.index("</plus:DataMining>")] + "<broken"
    assert read_signals(hostile.png_with_xmp(cut)).prohibits_training


@pytest.mark.parametrize("junk", [b"\x00\xff\xfe garbage", b"", b"<<<>>>", "<a>\u00e9</b>".encode("latin-1")])
def test_garbage_xmp_is_a_note_not_an_exception(junk: bytes) -> None:
    result = read_signals(hostile.png_with_xmp(junk))
    assert result.signals == ()


def test_c2pa_is_not_read_from_files_with_absurd_chunk_counts() -> None:
    signed_png = signed("image/png", hostile.training_mining({"cawg.ai_generative_training": "notAllowed"}))
    padded = signed_png[:33] + hostile.png_chunk(b"abCd", b"") * (MAX_CHUNKS + 1) + signed_png[33:]
    result = read_signals(padded)
    assert result.signals == () and any("C2PA not read" in note for note in result.notes)


def test_non_images_get_a_note() -> None:
    assert read_signals(b"GIF89a....").notes == ("not a PNG, JPEG or WebP file; metadata not read",)
    assert read_signals(b"") == Signals(notes=("not a PNG, JPEG or WebP file; metadata not read",))


# --- no network ------------------------------------------------------------------------------------


@pytest.fixture
def listening_port() -> Iterator[tuple[int, list[int]]]:
    """A local TCP listener that counts connections (nothing outside the machine is touched)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.05)
    hits: list[int] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            hits.append(1)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], hits
    stop.set()
    thread.join()
    server.close()


def test_remote_manifest_is_never_fetched(listening_port: tuple[int, list[int]]) -> None:
    port, hits = listening_port
    xmp = hostile.xmp_packet(
        f' xmlns:dcterms="http://purl.org/dc/terms/" dcterms:provenance="http://127.0.0.1:{port}/m.c2pa">'
    )
    result = read_signals(hostile.png_with_xmp(xmp))
    assert hits == []
    assert any("remote" in note.lower() for note in result.notes)


# --- never raises ----------------------------------------------------------------------------------

SIGNED_BASES = [
    signed("image/png", hostile.training_mining({"cawg.ai_generative_training": "notAllowed"})),
    signed("image/jpeg", hostile.created_action()),
    hostile.jpeg_with_xmp(hostile.xmp_data_mining("DMI-PROHIBITED")),
]
FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip


@FUZZ
@given(st.sampled_from(SIGNED_BASES), st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=8),
       st.floats(0.05, 1.0))  # fmt: skip
def test_mutated_metadata_never_raises(base: bytes, edits: list[tuple[float, int]], keep: float) -> None:
    data = bytearray(base)
    for where, value in edits:
        data[min(int(where * len(data)), len(data) - 1)] = value
    result = read_signals(bytes(data[: max(12, int(keep * len(data)))]))
    assert isinstance(result, Signals)


@FUZZ
@given(st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"RIFF\x00\x01\x00\x00WEBP"]), st.binary(max_size=2048))
def test_random_bytes_after_a_signature_never_raise(magic: bytes, tail: bytes) -> None:
    assert isinstance(read_signals(magic + tail), Signals)
