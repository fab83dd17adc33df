"""More hostile files, beside tests/ownership/hostile.py's corpus: metadata bombs, malformed C2PA,
lying chunk lengths, cyclic EXIF, decompression bombs in the chunks Pillow inflates itself.

Each builder returns bytes, made in code from a seed. `corpus()` lists them with the reason code the
gate must give where the gate's own header checks decide it (None: any stable reason will do, e.g.
`no_proof` for a file that decodes, or Pillow's refusal of a bomb in a chunk it inflates itself).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from tests.ownership import hostile


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    code: str | None


def _after_ihdr(base: bytes, *chunks: bytes) -> bytes:
    end = len(hostile.PNG_MAGIC) + 25
    return base[:end] + b"".join(chunks) + base[end:]


def xmp_deeply_nested(depth: int = 50_000) -> bytes:
    """An XMP packet nesting `depth` elements inside rdf:Description (a stack-depth attack)."""
    inner = "<a:x xmlns:a='urn:x'>" * depth + "</a:x>" * depth
    return hostile.png_with_xmp(hostile.xmp_packet(f">{inner}"))


def xmp_billion_laughs() -> bytes:
    """Entity expansion: ten levels of ten references (10^10 'lol's if a parser expanded them)."""
    entities = '<!ENTITY l0 "lol">' + "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 11))
    doc = (f'<?xml version="1.0"?><!DOCTYPE x:xmpmeta [{entities}]>'
           '<x:xmpmeta xmlns:x="adobe:ns:meta/">&l10;</x:xmpmeta>')
    return hostile.png_with_xmp(doc)


def xmp_external_entity() -> bytes:
    """XXE: an external entity pointing at a local file (must never be read)."""
    doc = ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
           '<x:xmpmeta xmlns:x="adobe:ns:meta/">&e;</x:xmpmeta>')
    return hostile.png_with_xmp(doc)


def xmp_many_attributes(count: int = 100_000) -> bytes:
    attrs = " ".join(f'a:p{i}="{i}"' for i in range(count))
    return hostile.png_with_xmp(hostile.xmp_packet(f' xmlns:a="urn:a" {attrs}>'))


def xmp_compressed_bomb() -> bytes:
    """A compressed iTXt XMP chunk inflating to 256 MiB."""
    payload = b"XML:com.adobe.xmp\x00\x01\x00\x00\x00" + hostile.zlib_zeros(256 << 20)
    return _after_ihdr(hostile.png(), hostile.png_chunk(b"iTXt", payload))


def png_ztxt_bomb() -> bytes:
    """A zTXt comment inflating to 256 MiB (Pillow inflates text chunks itself)."""
    payload = b"Comment\x00\x00" + hostile.zlib_zeros(256 << 20)
    return _after_ihdr(hostile.png(), hostile.png_chunk(b"zTXt", payload))


def png_iccp_bomb() -> bytes:
    """An iCCP colour profile inflating to 256 MiB."""
    payload = b"icc\x00\x00" + hostile.zlib_zeros(256 << 20)
    return _after_ihdr(hostile.png(), hostile.png_chunk(b"iCCP", payload))


def png_chunk_length_lies() -> bytes:
    """A text chunk whose length field claims 2 GiB."""
    lying = struct.pack(">I", 0x7FFF_FFFF) + b"tEXt" + b"Comment\x00short"
    return _after_ihdr(hostile.png(), lying)


def png_bad_crc_in_ancillary() -> bytes:
    chunk = bytearray(hostile.png_chunk(b"tEXt", b"Comment\x00hello"))
    chunk[-1] ^= 0xFF
    return _after_ihdr(hostile.png(), bytes(chunk))


def apng_claiming_billions_of_frames() -> bytes:
    actl = hostile.png_chunk(b"acTL", struct.pack(">II", 0x7FFF_FFFF, 0))
    return _after_ihdr(hostile.png(), actl)


def jpeg_claiming(width: int, height: int) -> bytes:
    """A baseline JPEG whose SOF0 claims `width`×`height` (the scan data is for 64×48)."""
    data = bytearray(hostile.jpeg(64, 48))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def jpeg_cyclic_exif() -> bytes:
    """EXIF whose IFD0 links to itself as the next IFD, and whose Exif sub-IFD points back at IFD0."""
    ifd = struct.pack("<H", 2)
    ifd += struct.pack("<HHII", 0x0112, 3, 1, 6)  # orientation = 6
    ifd += struct.pack("<HHII", 0x8769, 4, 1, 8)  # Exif IFD at offset 8: IFD0 again
    ifd += struct.pack("<I", 8)  # next IFD: itself
    tiff = b"II*\x00" + struct.pack("<I", 8) + ifd
    app1 = b"Exif\x00\x00" + tiff
    segment = b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1
    data = hostile.jpeg(40, 20)
    return data[:2] + segment + data[2:]


def jpeg_exif_offsets_out_of_range() -> bytes:
    ifd = struct.pack("<H", 1) + struct.pack("<HHII", 0x010E, 2, 0x7FFF_FFFF, 0x7FFF_FFF0) + struct.pack("<I", 0)
    app1 = b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 8) + ifd
    segment = b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1
    data = hostile.jpeg(40, 20)
    return data[:2] + segment + data[2:]


def jpeg_garbage_app11() -> bytes:
    """An APP11 (JUMBF, where C2PA lives) segment of random bytes."""
    junk = bytes((i * 151 + 7) % 256 for i in range(4000))
    segment = b"\xff\xeb" + struct.pack(">H", len(junk) + 2) + junk
    data = hostile.jpeg()
    return data[:2] + segment + data[2:]


def jumbf_box(box_type: bytes, payload: bytes, *, length: int | None = None) -> bytes:
    return struct.pack(">I", length if length is not None else 8 + len(payload)) + box_type + payload


def jpeg_jumbf_lying_lengths() -> bytes:
    """An APP11 JUMBF superbox claiming a c2pa manifest store, with box lengths that overrun the segment."""
    desc = jumbf_box(b"jumd", bytes.fromhex("6332706100110010800000aa00389b71") + b"\x03c2pa\x00")
    superbox = jumbf_box(b"jumb", desc + jumbf_box(b"jumb", b"", length=0xFFFF_FFF0), length=0x7FFF_FFFF)
    app11 = b"JP" + struct.pack(">HI", 1, 1) + superbox
    segment = b"\xff\xeb" + struct.pack(">H", len(app11) + 2) + app11
    data = hostile.jpeg()
    return data[:2] + segment + data[2:]


def png_garbage_cabx() -> bytes:
    junk = bytes((i * 97 + 13) % 256 for i in range(3000))
    return _after_ihdr(hostile.png(), hostile.png_chunk(b"caBX", junk))


def c2pa_corrupted(flip_every: int = 97) -> bytes:
    """A really signed C2PA JPEG whose manifest bytes are then damaged in many places."""
    signed = bytearray(hostile.c2pa_sign(hostile.jpeg(), "image/jpeg",
                                         [hostile.training_mining({"cawg.ai_generative_training": "notAllowed"})]))
    start = signed.index(b"\xff\xeb")
    end = start + 2 + struct.unpack_from(">H", signed, start + 2)[0]
    for i in range(start + 40, end, flip_every):
        signed[i] ^= 0x5A
    return bytes(signed)


def c2pa_truncated() -> bytes:
    """A really signed C2PA PNG whose caBX chunk is cut short (with a fixed-up CRC)."""
    signed = hostile.c2pa_sign(hostile.png(), "image/png", [])
    start = signed.index(b"caBX") - 4
    (length,) = struct.unpack_from(">I", signed, start)
    payload = signed[start + 8 : start + 8 + length // 3]
    chunk = struct.pack(">I", len(payload)) + b"caBX" + payload + struct.pack(">I", zlib.crc32(b"caBX" + payload))
    return signed[:start] + chunk + signed[start + 12 + length :]


def webp_vp8l_claiming_huge() -> bytes:
    """A lossless WebP whose VP8L header claims 16384×16384."""
    data = bytearray(hostile.webp())
    pos = data.index(b"VP8L") + 8 + 1  # after the chunk header and the 0x2f signature byte
    bits = (16383) | (16383 << 14)
    data[pos : pos + 4] = struct.pack("<I", bits | (int.from_bytes(data[pos : pos + 4], "little") & ~0x0FFF_FFFF))
    return bytes(data)


def corpus() -> list[Case]:
    return [
        Case("xmp_nested_50k", xmp_deeply_nested(), None),
        Case("xmp_billion_laughs", xmp_billion_laughs(), None),
        Case("xmp_external_entity", xmp_external_entity(), None),
        Case("xmp_100k_attributes", xmp_many_attributes(), None),
        Case("xmp_compressed_bomb", xmp_compressed_bomb(), None),
        Case("png_ztxt_bomb", png_ztxt_bomb(), None),
        Case("png_iccp_bomb", png_iccp_bomb(), None),
        Case("png_chunk_length_2gib", png_chunk_length_lies(), "undecodable"),
        Case("png_bad_ancillary_crc", png_bad_crc_in_ancillary(), "undecodable"),
        Case("apng_2g_frames", apng_claiming_billions_of_frames(), None),
        Case("jpeg_65535_squared", jpeg_claiming(65535, 65535), "too_large"),
        Case("jpeg_cyclic_exif", jpeg_cyclic_exif(), None),
        Case("jpeg_exif_offsets_out_of_range", jpeg_exif_offsets_out_of_range(), None),
        Case("jpeg_garbage_app11", jpeg_garbage_app11(), None),
        Case("jpeg_jumbf_lying_lengths", jpeg_jumbf_lying_lengths(), None),
        Case("png_garbage_cabx", png_garbage_cabx(), None),
        Case("c2pa_corrupted", c2pa_corrupted(), None),
        Case("c2pa_truncated", c2pa_truncated(), None),
        Case("webp_vp8l_16k", webp_vp8l_claiming_huge(), "too_large"),
    ]
