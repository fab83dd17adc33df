"""Property-based fuzzing of the whole gate (hypothesis; bounded for CI: fixed examples, derandomised).

tests/ownership already fuzzes each parser on its own (decode, manifest, SSHSIG). Here the properties
are the product's, over the gate's one entry point `ownership.policy.evaluate`:

* any mutation of a real file (PNG, JPEG, WebP, with XMP, with a signed C2PA manifest), with or without
  a damaged signature, gets a verdict — never an exception — whose reasons are stable codes;
* a file whose bytes changed never passes on a signature made for the original (the signature binds
  the exact bytes), and nothing is accepted without a proof;
* reading metadata never falls into its last-resort handler (a bug the "never raises" contract hides);
* SSHSIG blobs assembled field by field, lengths lying included, are refused as `bad_signature`.
"""

from __future__ import annotations

import functools
import hashlib
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ownership import reasons
from ownership.decode import decode_image
from ownership.errors import SignatureError
from ownership.fingerprint import compute_fingerprint
from ownership.index import MatchIndex
from ownership.policy import Upload, evaluate
from ownership.signals import read_signals
from ownership.signatures import RegisteredKey, generate_keypair, load_public_key, sign_manifest
from ownership.sshsig import MAGIC, armor, ed25519_key_blob, parse_sshsig, sign_sshsig, ssh_string
from ownership.types import DecodeLimits
from tests.ownership import hostile

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
LIMITS = DecodeLimits(max_bytes=1 << 20, max_pixels=1 << 20)
PROOFS = {reasons.PORTFOLIO_MATCH, reasons.VALID_SIGNATURE}
STOPPED_EARLY = "metadata reading stopped early"


@functools.cache
def seeds() -> tuple[bytes, ...]:
    dmi = hostile.xmp_data_mining("DMI-PROHIBITED-AIMLTRAINING")
    return (
        hostile.png(48, 40, seed=1),
        hostile.jpeg(48, 40, seed=2),
        hostile.webp(48, 40, seed=3),
        hostile.progressive_jpeg(),
        hostile.png_with_xmp(dmi, base=hostile.png(48, 40, seed=4)),
        hostile.png_with_xmp(dmi, compressed=True, base=hostile.png(48, 40, seed=5)),
        hostile.c2pa_sign(hostile.jpeg(48, 40, seed=6), "image/jpeg",
                          [hostile.training_mining({"cawg.ai_generative_training": "notAllowed"})]),
    )


@functools.cache
def world() -> tuple[MatchIndex, RegisteredKey, bytes]:
    """An index holding bob's work (seed 0 image) and alice's registered key (private key returned)."""
    index = MatchIndex()
    bobs = hostile.png(48, 40, seed=0)
    index.add(item_sha256=hashlib.sha256(bobs).hexdigest(), owner="bob",
              fingerprint=compute_fingerprint(decode_image(bobs, LIMITS)))
    private, public = generate_keypair()
    info = load_public_key(public)
    return index, RegisteredKey.from_info(info), private


def mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    out = bytearray(data)
    for kind, where, value in edits:
        if not out:
            break
        i = where % len(out)
        if kind == 0:
            out[i] = value
        elif kind == 1:
            out[i:i] = bytes([value]) * (value % 16 + 1)
        elif kind == 2:
            del out[i : i + value % 64 + 1]
        else:
            del out[i:]
    return bytes(out)


EDITS = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 1 << 20), st.integers(0, 255)), max_size=6)


@FUZZ
@given(seed=st.integers(0, 6), edits=EDITS, signature=st.sampled_from(["none", "manifest", "sshsig"]),
       sig_edits=EDITS)
def test_the_gate_judges_every_mutated_file(seed: int, edits, signature: str, sig_edits) -> None:
    original = seeds()[seed]
    data = mutate(original, edits)
    index, key, private = world()
    if signature == "manifest":
        sig: bytes | None = sign_manifest(private_key_path_or_bytes=private, artist="alice",
                                          files=[("art.png", original)])
    elif signature == "sshsig":
        from ownership.signatures import load_private_key

        sig = sign_sshsig(load_private_key(private), original)
    else:
        sig = None
    if sig is not None:
        sig = mutate(sig, sig_edits)

    evidence = evaluate(Upload("art.png", data, "alice", sig), index=index, artist_keys=[key], limits=LIMITS)

    verdict = evidence.verdict
    codes = [r.code for r in verdict.reasons]
    assert codes and set(codes) <= set(reasons.ALL_REASONS)
    assert verdict.decision in ("accepted", "rejected")
    if verdict.decision == "accepted":
        assert set(codes) <= PROOFS and codes
    if reasons.VALID_SIGNATURE in codes:
        assert data == original, "a signature made for other bytes was accepted"
    if evidence.signals is not None:
        assert not any(note.startswith(STOPPED_EARLY) for note in evidence.signals.notes), evidence.signals.notes


XML_NAMES = st.sampled_from(["rdf:Description", "plus:DataMining", "Iptc4xmpExt:DigitalSourceType", "rdf:li",
                             "rdf:Bag", "x:y", "dc:title", "a", "rdf:RDF", "x:xmpmeta"])
XML_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30)


@st.composite
def xml_fragments(draw: st.DrawFn, depth: int = 0) -> str:
    """Markup that is often not well-formed on purpose: unbalanced tags, stray entities, DOCTYPEs."""
    parts = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.integers(0, 9))
        name = draw(XML_NAMES)
        if kind <= 3 and depth < 6:
            attrs = " ".join(f'{draw(XML_NAMES)}="{draw(XML_TEXT)}"' for _ in range(draw(st.integers(0, 2))))
            parts.append(f"<{name} {attrs}>{draw(xml_fragments(depth + 1))}</{name}>")
        elif kind == 4:
            parts.append(draw(XML_TEXT))
        elif kind == 5:
            parts.append(draw(st.sampled_from(["&amp;", "&lol;", "&#0;", "&#x110000;", "<![CDATA[", "]]>", "<!--",
                                               "-->", "<?pi x?>", "<!DOCTYPE x [<!ENTITY lol 'a'>]>", "</a>"])))
        elif kind == 6:
            parts.append(f'<{name} rdf:resource="http://ns.useplus.org/ldf/vocab/DMI-PROHIBITED{draw(XML_TEXT)}"/>')
        else:
            parts.append(f"<{name}/>")
    return "".join(parts)


@FUZZ
@given(body=xml_fragments(), where=st.sampled_from(["png", "png-compressed", "jpeg", "webp"]))
def test_metadata_reading_survives_hostile_xmp(body: str, where: str) -> None:
    packet = hostile.xmp_packet(f">{body}")
    if where.startswith("png"):
        data = hostile.png_with_xmp(packet, compressed=where.endswith("compressed"), base=seeds()[0])
    elif where == "jpeg":
        data = hostile.jpeg_with_xmp(packet)
    else:
        data = hostile.webp_with_xmp(packet)
    signals = read_signals(data)
    assert not any(note.startswith(STOPPED_EARLY) for note in signals.notes), signals.notes


def _u32_or_lie(draw: st.DrawFn, true_length: int) -> bytes:
    return struct.pack(">I", draw(st.sampled_from([true_length, true_length + 1, max(true_length - 1, 0),
                                                   0, 0xFFFF_FFFF, draw(st.integers(0, 0xFFFF_FFFF))])))


@st.composite
def sshsig_blobs(draw: st.DrawFn) -> bytes:
    """An SSHSIG blob assembled field by field; each field may lie about its length or hold junk."""
    raw_key = draw(st.binary(min_size=0, max_size=40))
    fields = [
        draw(st.sampled_from([ed25519_key_blob(raw_key), ssh_string(b"ssh-rsa") + ssh_string(raw_key),
                              draw(st.binary(max_size=60))])),
        draw(st.sampled_from([b"mimicsafe-upload", b"file", b"", b"\xff\xfe"])),
        draw(st.binary(max_size=8)),
        draw(st.sampled_from([b"sha512", b"sha256", b"md5", b""])),
        draw(st.sampled_from([ssh_string(b"ssh-ed25519") + ssh_string(draw(st.binary(max_size=70))),
                              draw(st.binary(max_size=80))])),
    ]
    blob = MAGIC[: draw(st.sampled_from([6, 5, 0]))] + struct.pack(">I", draw(st.sampled_from([1, 0, 2, 0xFFFFFFFF])))
    for field in fields:
        blob += _u32_or_lie(draw, len(field)) + field
    return blob + draw(st.binary(max_size=4))


@FUZZ
@given(blob=sshsig_blobs())
def test_assembled_sshsig_blobs_are_refused_cleanly(blob: bytes) -> None:
    index, key, _ = world()
    try:
        parse_sshsig(armor(blob))
    except SignatureError as exc:
        assert exc.code == reasons.BAD_SIGNATURE
    evidence = evaluate(Upload("art.png", seeds()[0], "alice", armor(blob)), index=index, artist_keys=[key],
                        limits=LIMITS)
    assert evidence.verdict.decision == "rejected"
    assert reasons.BAD_SIGNATURE in {r.code for r in evidence.verdict.reasons}


def test_regression_a_public_key_of_separator_characters() -> None:
    """Found by atheris: str.split() drops \\x1c-\\x1f and U+3000, which bytes.strip() keeps, so a .pub file
    holding only them raised IndexError (a traceback from `keys register`) instead of SignatureError."""
    for text in (b"\x1c", b"\x1d\x1e\x1f", "\u3000".encode()):
        try:
            load_public_key(text)
        except SignatureError as exc:
            assert exc.code == reasons.BAD_SIGNATURE
        else:
            raise AssertionError(f"{text!r} was accepted as a key")
