"""Opt-out and provenance signals carried inside an image file.

Two machine-readable ways a file can say "do not train on me" or "I am AI-generated":

* C2PA / CAWG manifests: a `c2pa.training-mining` or `cawg.training-mining` assertion whose
  generative-training, training or data-mining entry is `notAllowed` or `constrained`; an action
  whose `digitalSourceType` is IPTC's trainedAlgorithmicMedia (or its composite variant).
* XMP: IPTC/PLUS `plus:DataMining` with a `DMI-PROHIBITED*` value, and
  `Iptc4xmpExt:DigitalSourceType` trainedAlgorithmicMedia.

Reading metadata must never stop an upload from being judged, so `read_signals` never raises:
anything unreadable becomes a note. It also never touches the network (remote C2PA manifests and
OCSP are switched off) and bounds every parse (XMP size caps, no DOCTYPE, bounded inflation).

Signals are honoured whether or not the C2PA signature chains to a trusted root: a forged
prohibition can only keep a file *out* of a training set, which is the safe direction.
"""

from __future__ import annotations

import io
import json
import re
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any, Literal, NoReturn
from xml.parsers import expat

import c2pa

from ownership.decode import MAX_CHUNKS, sniff_format

SignalKind = Literal["training_prohibited", "ai_generated"]

MAX_XMP_BYTES = 1 << 20  # one packet; real XMP is a few KB, JPEG caps it at 64 KB anyway
MAX_XMP_TOTAL = 4 << 20  # all packets of one file together

# Entries of a training-mining assertion that, when notAllowed or constrained, forbid what this app
# does (fine-tune a model on the image). `ai_inference` alone does not: it forbids using the image
# as a model *input* at inference time, which the gate records as a note.
_PROHIBITING_ENTRIES = frozenset({"ai_generative_training", "ai_training", "data_mining"})
_REFUSING_USES = frozenset({"notallowed", "constrained"})
_TRAINING_MINING_LABELS = frozenset({"c2pa.training-mining", "cawg.training-mining"})
_ACTIONS_LABEL = "c2pa.actions"

_DMI_PROHIBITED = re.compile(r"DMI-PROHIBITED[-A-Z]*", re.IGNORECASE)
_TRAINED_MEDIA = re.compile(r"(?:compositeWith)?trainedAlgorithmicMedia", re.IGNORECASE)
_LABEL_SUFFIX = re.compile(r"(?:__\d+)?$")
_LABEL_VERSION = re.compile(r"\.v\d+$")

_XMP_KEYWORD = b"XML:com.adobe.xmp"
_JPEG_XMP = b"http://ns.adobe.com/xap/1.0/\x00"
_JPEG_XMP_EXTENSION = b"http://ns.adobe.com/xmp/extension/\x00"
_RDF_RESOURCE = "http://www.w3.org/1999/02/22-rdf-syntax-ns# resource"
_XMP_PROPERTIES = {"DataMining": "xmp:plus:DataMining", "DigitalSourceType": "xmp:Iptc4xmpExt:DigitalSourceType"}
_XMP_WANTED = frozenset({*_XMP_PROPERTIES, "provenance"})  # dcterms:provenance: a remote C2PA manifest

_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
# Reading must never reach the network: no remote manifests, no OCSP.
# Never fetch a remote manifest or an OCSP response: reading a file must not touch the network.
C2PA_OFFLINE = {"remote_manifest_fetch": False, "ocsp_fetch": False}


@dataclass(frozen=True)
class Signal:
    kind: SignalKind
    source: str  # e.g. "c2pa:cawg.training-mining", "xmp:plus:DataMining", "c2pa:digitalSourceType"
    detail: str


@dataclass(frozen=True)
class Signals:
    signals: tuple[Signal, ...] = ()
    notes: tuple[str, ...] = ()  # what could not be read, and context such as C2PA validation state

    @property
    def prohibits_training(self) -> bool:
        return any(s.kind == "training_prohibited" for s in self.signals)

    @property
    def ai_generated(self) -> bool:
        return any(s.kind == "ai_generated" for s in self.signals)


def read_signals(data: bytes) -> Signals:
    """Collect opt-out and AI-generation signals from a PNG, JPEG or WebP file. Never raises."""
    signals: list[Signal] = []
    notes: list[str] = []
    try:
        fmt = sniff_format(data)
        if fmt is None:
            return Signals(notes=("not a PNG, JPEG or WebP file; metadata not read",))
        container = _scan_container(fmt, data, notes)
        remote_manifest = False
        for packet in _bounded_packets(container.xmp, notes):
            found, remote = _xmp_signals(packet, notes)
            signals.extend(found)
            remote_manifest = remote_manifest or remote
        if container.chunks > MAX_CHUNKS:
            notes.append(f"the file has more than {MAX_CHUNKS:,} chunks; C2PA not read (too costly to parse)")
        elif container.c2pa or remote_manifest:
            signals.extend(_c2pa_signals(fmt, data, notes))
    except Exception as exc:  # the contract is "never raises"; a bug here must not hide the upload
        notes.append(f"metadata reading stopped early: {_short(exc)}")
    return Signals(signals=tuple(dict.fromkeys(signals)), notes=tuple(dict.fromkeys(notes)))


# --- the container: where XMP and C2PA live --------------------------------------------------------


@dataclass
class _Container:
    xmp: list[bytes] = field(default_factory=list)
    c2pa: bool = False  # an embedded manifest store is present (PNG caBX, JPEG APP11, WebP C2PA)
    chunks: int = 0


def _scan_container(fmt: str, data: bytes, notes: list[str]) -> _Container:
    """Walk the chunks once, collecting XMP packets and noticing an embedded C2PA store.

    The C2PA reader is only started when a store is present (or XMP names a remote one), and not
    at all for files with absurd chunk counts: its Python stream callbacks cost ~10 µs a chunk.
    """
    if fmt == "PNG":
        return _scan_png(data, notes)
    if fmt == "JPEG":
        return _scan_jpeg(data, notes)
    return _scan_webp(data)


def _scan_png(data: bytes, notes: list[str]) -> _Container:
    """XMP lives in an iTXt chunk keyed `XML:com.adobe.xmp` (some writers use tEXt or zTXt); C2PA in caBX."""
    found = _Container()
    pos, n = 8, len(data)
    while pos + 8 <= n and found.chunks <= MAX_CHUNKS:
        found.chunks += 1
        length, ctype = struct.unpack_from(">I4s", data, pos)
        payload = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if ctype == b"IEND" or len(payload) < length:
            break
        if ctype == b"caBX":
            found.c2pa = True
        if ctype not in (b"iTXt", b"tEXt", b"zTXt") or not payload.startswith(_XMP_KEYWORD + b"\x00"):
            continue
        body = payload[len(_XMP_KEYWORD) + 1 :]
        if ctype == b"iTXt":
            compressed = body[:1] == b"\x01"
            parts = body[2:].split(b"\x00", 2)  # language tag, translated keyword, text
            text = parts[2] if len(parts) == 3 else b""
        elif ctype == b"zTXt":
            compressed, text = True, body[1:]
        else:
            compressed, text = False, body
        if compressed:
            text = _inflate_bounded(text, notes)
        if text:
            found.xmp.append(text)
    return found


def _scan_jpeg(data: bytes, notes: list[str]) -> _Container:
    """XMP lives in APP1 segments that start with the Adobe XAP namespace; C2PA (JUMBF) in APP11."""
    found = _Container()
    pos, n = 2, len(data)
    while pos + 4 <= n and data[pos] == 0xFF and found.chunks <= MAX_CHUNKS:
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker in (0xD9, 0xDA):  # EOI, SOS: metadata comes before the image data
            break
        found.chunks += 1
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            pos += 2
            continue
        (length,) = struct.unpack_from(">H", data, pos + 2)
        payload = data[pos + 4 : pos + 2 + length]
        pos += 2 + length
        if marker == 0xEB:
            found.c2pa = True
        elif marker == 0xE1 and payload.startswith(_JPEG_XMP):
            found.xmp.append(payload[len(_JPEG_XMP) :])
        elif marker == 0xE1 and payload.startswith(_JPEG_XMP_EXTENSION):
            notes.append("extended XMP (APP1 xmp/extension) present and not read")
    return found


def _scan_webp(data: bytes) -> _Container:
    """XMP lives in the RIFF chunk `XMP ` of an extended (VP8X) WebP; C2PA in the chunk `C2PA`."""
    found = _Container()
    pos, n = 12, len(data)
    while pos + 8 <= n and found.chunks <= MAX_CHUNKS:
        found.chunks += 1
        fourcc = data[pos : pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        if fourcc == b"XMP ":
            found.xmp.append(data[pos + 8 : pos + 8 + size])
        elif fourcc == b"C2PA":
            found.c2pa = True
        pos += 8 + size + (size & 1)
    return found


def _bounded_packets(packets: list[bytes], notes: list[str]) -> list[bytes]:
    kept: list[bytes] = []
    total = 0
    for packet in packets:
        if len(packet) > MAX_XMP_BYTES:
            notes.append(f"XMP packet of {len(packet):,} bytes exceeds the {MAX_XMP_BYTES:,}-byte cap; not parsed")
            continue
        total += len(packet)
        if total > MAX_XMP_TOTAL:
            notes.append(f"more than {MAX_XMP_TOTAL:,} bytes of XMP in one file; the rest was not parsed")
            break
        kept.append(packet)
    return kept


def _inflate_bounded(compressed: bytes, notes: list[str]) -> bytes:
    """Inflate at most MAX_XMP_BYTES + 1 bytes: a zlib bomb in a text chunk stops here."""
    inflater = zlib.decompressobj()
    try:
        text = inflater.decompress(compressed, MAX_XMP_BYTES + 1)
    except zlib.error as exc:
        notes.append(f"compressed XMP could not be inflated ({exc})")
        return b""
    if len(text) > MAX_XMP_BYTES:
        notes.append(f"compressed XMP inflates beyond the {MAX_XMP_BYTES:,}-byte cap; not parsed")
        return b""
    return text


# --- XMP: reading the properties -----------------------------------------------------------------


class _RefusedXml(Exception):
    """Raised from inside the expat handlers to stop parsing a packet we will not parse."""


def _xmp_signals(packet: bytes, notes: list[str]) -> tuple[list[Signal], bool]:
    """Signals in one packet, and whether it names a remote C2PA manifest (`dcterms:provenance`)."""
    signals = []
    remote = False
    found, problem = _xmp_properties(packet)
    if problem:
        notes.append(problem)
    for local, value in found:
        if local == "provenance":
            remote = True
        elif local == "DataMining" and _DMI_PROHIBITED.search(value):
            detail = f"plus:DataMining = {value.strip()[:200]}"
            signals.append(Signal("training_prohibited", _XMP_PROPERTIES[local], detail))
        elif local == "DigitalSourceType" and _TRAINED_MEDIA.search(value):
            detail = f"DigitalSourceType = {value.strip()[:200]}"
            signals.append(Signal("ai_generated", _XMP_PROPERTIES[local], detail))
    return signals, remote


def _xmp_properties(packet: bytes) -> tuple[list[tuple[str, str]], str | None]:
    """Stream-parse one packet with expat and return the (property, value) pairs we look for.

    Streaming (no tree) keeps deeply nested packets cheap; a DOCTYPE is refused outright, so no
    entity can be declared, let alone expanded. Properties are matched by local name in any
    namespace, as an attribute, an element's text, or an `rdf:resource`. Pairs found before a
    syntax error are kept: a malformed packet that says "prohibited" still says it.
    """
    found: list[tuple[str, str]] = []
    open_targets: list[tuple[str, int, list[str]]] = []  # (property, depth, text parts)
    depth = 0

    def refuse(*_args: object) -> NoReturn:
        raise _RefusedXml("XMP packet contains a DOCTYPE or entity declaration; not parsed")

    def start(name: str, attrs: dict[str, str]) -> None:
        nonlocal depth
        depth += 1
        for attr, value in attrs.items():
            local = attr.rsplit(" ", 1)[-1]
            if local in _XMP_WANTED:
                found.append((local, value))
        local = name.rsplit(" ", 1)[-1]
        if local in _XMP_WANTED:
            open_targets.append((local, depth, []))
        if open_targets and _RDF_RESOURCE in attrs:
            open_targets[-1][2].append(" " + attrs[_RDF_RESOURCE])

    def end(_name: str) -> None:
        nonlocal depth
        if open_targets and open_targets[-1][1] == depth:
            local, _depth, parts = open_targets.pop()
            found.append((local, "".join(parts)))
        depth -= 1

    def text(chunk: str) -> None:
        if open_targets:
            open_targets[-1][2].append(chunk)

    parser = expat.ParserCreate(namespace_separator=" ")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    try:
        parser.Parse(packet, True)
    except _RefusedXml as exc:
        return [], str(exc)
    except expat.ExpatError as exc:
        found.extend((local, "".join(parts)) for local, _depth, parts in open_targets)
        return found, f"XMP packet is malformed ({exc}); read up to the error"
    return found, None


# --- C2PA ----------------------------------------------------------------------------------------


def _c2pa_signals(fmt: str, data: bytes, notes: list[str]) -> list[Signal]:
    store = _read_c2pa_store(_MIME[fmt], data, notes)
    if store is None:
        return []
    manifests = store.get("manifests")
    if not isinstance(manifests, dict):
        notes.append("C2PA manifest store has no readable manifests")
        return []
    active = store.get("active_manifest")
    notes.append(_c2pa_summary(store, len(manifests)))
    signals: list[Signal] = []
    for label, manifest in manifests.items():
        where = "active manifest" if label == active else f"ingredient manifest {label}"
        assertions = manifest.get("assertions") if isinstance(manifest, dict) else None
        for assertion in assertions if isinstance(assertions, list) else []:
            if not isinstance(assertion, dict):
                continue
            base = _base_label(assertion.get("label"))
            payload = assertion.get("data")
            if base in _TRAINING_MINING_LABELS:
                signals.extend(_training_mining(base, payload, where, notes))
            elif base == _ACTIONS_LABEL:
                signals.extend(_actions(payload, where))
    return signals


def c2pa_store(data: bytes, mime: str, *, trust_anchors: str | None = None) -> Any:
    """The C2PA manifest store of `data` as JSON via c2pa-python's Reader, read offline, validated against
    `trust_anchors` (PEM) when given; None when there is none. Raises `c2pa.C2paError` when unreadable.
    The result is whatever JSON the SDK gave: callers check that it is an object."""
    settings: dict[str, Any] = {"verify": C2PA_OFFLINE}
    if trust_anchors is not None:
        settings["trust"] = {"trust_anchors": trust_anchors}
    with c2pa.Context.from_dict(settings) as context:
        reader = c2pa.Reader.try_create(mime, io.BytesIO(data), context=context)
        if reader is None:
            return None
        with reader:
            return json.loads(reader.json())


def _read_c2pa_store(mime: str, data: bytes, notes: list[str]) -> dict[str, Any] | None:
    """The manifest store, or None (quietly when there is none; with a note when it cannot be read)."""
    try:
        store = c2pa_store(data, mime)
    except c2pa.C2paError as exc:
        if isinstance(exc, c2pa.C2paError.RemoteManifest) or str(exc).startswith("Remote"):
            notes.append(f"C2PA manifest is stored remotely and was not fetched (no network access): {_short(exc)}")
        else:
            notes.append(f"C2PA manifest store present but unreadable: {_short(exc)}")
        return None
    except Exception as exc:
        notes.append(f"C2PA manifest store could not be read: {_short(exc)}")
        return None
    if store is None:
        return None
    if not isinstance(store, dict):
        notes.append("C2PA manifest store is not a JSON object")
        return None
    return store


def _c2pa_summary(store: dict[str, Any], count: int) -> str:
    state = store.get("validation_state", "unknown")
    failures = []
    results = store.get("validation_status")
    for status in results if isinstance(results, list) else []:
        if isinstance(status, dict) and isinstance(status.get("code"), str):
            failures.append(status["code"])
    text = f"C2PA manifest store: {count} manifest(s), validation state {state}"
    if failures:
        text += f" ({', '.join(sorted(set(failures))[:5])})"
    return text


def _base_label(label: object) -> str:
    """`c2pa.actions.v2__1` → `c2pa.actions`: drop the instance suffix and the version."""
    if not isinstance(label, str):
        return ""
    return _LABEL_VERSION.sub("", _LABEL_SUFFIX.sub("", label, count=1))


def _training_mining(label: str, payload: object, where: str, notes: list[str]) -> list[Signal]:
    entries = payload.get("entries") if isinstance(payload, dict) else None
    if not isinstance(entries, dict):
        notes.append(f"{label} assertion in the {where} has no readable entries")
        return []
    signals = []
    for key, entry in entries.items():
        use = entry.get("use") if isinstance(entry, dict) else None
        if not isinstance(use, str) or use.lower() not in _REFUSING_USES:
            continue
        name = str(key).split(".", 1)[-1]
        detail = f"{key}: {use} in the {where}"
        constraint = entry.get("constraint_info")
        if constraint:
            detail += f" (constraint: {str(constraint)[:200]})"
        if name in _PROHIBITING_ENTRIES:
            signals.append(Signal("training_prohibited", f"c2pa:{label}", detail))
        else:
            notes.append(f"{label} {detail}; this alone does not prohibit training")
    return signals


def _actions(payload: object, where: str) -> list[Signal]:
    if not isinstance(payload, dict):
        return []
    signals = []
    for group in ("actions", "templates"):
        items = payload.get(group)
        for action in items if isinstance(items, list) else []:
            source_type = action.get("digitalSourceType") if isinstance(action, dict) else None
            if isinstance(source_type, str) and _TRAINED_MEDIA.search(source_type):
                name = action.get("action", "an action")
                detail = f"{name} in the {where} declares digitalSourceType {source_type[:200]}"
                signals.append(Signal("ai_generated", "c2pa:digitalSourceType", detail))
    return signals


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 300 else text[:297] + "..."
