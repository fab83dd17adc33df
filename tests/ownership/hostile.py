"""Hostile and unusual files made in code, for any test that feeds the gate.

Nothing here is read from disk or the network: every file is built from a seed, so tests stay
offline and deterministic. Three groups:

* image builders — valid PNG/JPEG/WebP in every awkward mode (16-bit, CMYK, palette, alpha,
  animated, EXIF-rotated) and raw PNG chunk assembly for files Pillow refuses to write;
* `corpus()` — malformed and hostile files, each with the reason code the gate must give it
  (or None where it must decode);
* metadata builders — XMP packets (IPTC `plus:DataMining`, `Iptc4xmpExt:DigitalSourceType`) and
  real signed C2PA manifests from a locally generated CA → end-entity certificate chain.

Import it from a test in this folder with `import hostile` (pytest puts the folder on sys.path).
"""

from __future__ import annotations

import datetime
import functools
import io
import struct
import zipfile
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image, PngImagePlugin

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# --- valid images ------------------------------------------------------------------------------


def pixels(width: int = 64, height: int = 48, channels: int = 3, seed: int = 0) -> np.ndarray:
    """A seeded gradient with noise: enough detail to survive JPEG and to tell orientations apart."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([(x * 255 // max(width - 1, 1)), (y * 255 // max(height - 1, 1)), (x + y) % 256], axis=-1)
    noise = rng.integers(0, 32, size=(height, width, 3))
    rgb = np.clip(base + noise, 0, 255).astype(np.uint8)
    if channels == 4:
        alpha = np.full((height, width, 1), 255, dtype=np.uint8)
        return np.concatenate([rgb, alpha], axis=-1)
    return rgb


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **params)
    return buf.getvalue()


def png(width: int = 64, height: int = 48, seed: int = 0, **params: object) -> bytes:
    return encode(Image.fromarray(pixels(width, height, seed=seed)), "PNG", **params)


def jpeg(width: int = 64, height: int = 48, seed: int = 0, **params: object) -> bytes:
    params.setdefault("quality", 90)
    return encode(Image.fromarray(pixels(width, height, seed=seed)), "JPEG", **params)


def webp(width: int = 64, height: int = 48, seed: int = 0, **params: object) -> bytes:
    params.setdefault("lossless", True)
    return encode(Image.fromarray(pixels(width, height, seed=seed)), "WEBP", **params)


def rgba_png(width: int = 32, height: int = 32) -> bytes:
    """Left half transparent, right half opaque red, one half-transparent blue pixel at (0, 0)."""
    arr = np.zeros((height, width, 4), dtype=np.uint8)
    arr[:, width // 2 :] = (255, 0, 0, 255)
    arr[0, 0] = (0, 0, 255, 128)
    return encode(Image.fromarray(arr, mode="RGBA"), "PNG")


def palette_png(transparent_index: int | None = None) -> bytes:
    image = Image.fromarray(pixels(32, 32)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    params: dict[str, object] = {}
    if transparent_index is not None:
        params["transparency"] = transparent_index
    return encode(image, "PNG", **params)


def grey_png() -> bytes:
    return encode(Image.fromarray(pixels(32, 32)[:, :, 0], mode="L"), "PNG")


def png16_grey(width: int = 256, height: int = 256) -> bytes:
    """16-bit greyscale holding every value 0..65535 once (at 256×256); Pillow opens it as I;16."""
    values = np.arange(width * height, dtype=np.int64) * 65535 // max(width * height - 1, 1)
    rows = b"".join(b"\x00" + row.tobytes() for row in values.astype(">u2").reshape(height, width))
    return raw_png(width, height, bit_depth=16, color_type=0, rows=rows)


def png16_rgb(width: int = 16, height: int = 8) -> bytes:
    """16-bit RGB, which Pillow cannot write; assembled from raw chunks."""
    arr = np.zeros((height, width, 3), dtype=">u2")
    arr[..., 0] = 0xFF00  # high byte 255 → red 255
    arr[..., 2] = 0x80FF  # high byte 128 → blue 128
    rows = b"".join(b"\x00" + row.tobytes() for row in arr)
    return raw_png(width, height, bit_depth=16, color_type=2, rows=rows)


def cmyk_jpeg(icc_profile: bytes | None = None) -> bytes:
    """Pure cyan in CMYK (no ICC unless given; Pillow cannot make a CMYK profile)."""
    image = Image.new("CMYK", (24, 16), (255, 0, 0, 0))
    params: dict[str, object] = {"quality": 95}
    if icc_profile is not None:
        params["icc_profile"] = icc_profile
    return encode(image, "JPEG", **params)


def jpeg_with_orientation(orientation: int, width: int = 40, height: int = 20) -> bytes:
    """A landscape JPEG whose top-left 8×8 block is black and the rest white, with EXIF orientation."""
    arr = np.full((height, width, 3), 255, dtype=np.uint8)
    arr[:8, :8] = 0
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(Image.fromarray(arr), "JPEG", quality=95, exif=exif.tobytes())


def animated(fmt: str, frames: int = 3) -> bytes:
    """An animated PNG (APNG) or WebP whose frames are red, green, blue…"""
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]
    images = [Image.new("RGB", (16, 16), colours[i % len(colours)]) for i in range(frames)]
    params: dict[str, object] = {"save_all": True, "append_images": images[1:], "duration": 100}
    if fmt == "WEBP":
        params["lossless"] = True
    return encode(images[0], fmt, **params)


def cmyk_icc_profile(lab: tuple[float, float, float] = (53.0, 80.0, 67.0)) -> bytes:
    """A minimal ICC v2 CMYK→Lab profile (one lut8 A2B0 tag) mapping *every* ink mix to `lab`.

    Red by default: a CMYK JPEG carrying it decodes red only if the ICC path was really taken
    (the naive formula would give cyan for pure cyan ink).
    """

    def s15(value: float) -> bytes:
        return struct.pack(">i", round(value * 65536))

    lightness, a, b = lab
    entry = bytes([round(lightness * 255 / 100), round(a + 128), round(b + 128)])
    identity = bytes(range(256))
    matrix = b"".join(s15(v) for v in (1, 0, 0, 0, 1, 0, 0, 0, 1))
    lut = b"mft1" + bytes(4) + bytes([4, 3, 2, 0]) + matrix + identity * 4 + entry * 16 + identity * 3
    d50 = s15(0.9642) + s15(1.0) + s15(0.8249)
    tags = [(b"A2B0", lut), (b"wtpt", b"XYZ " + bytes(4) + d50)]
    table = struct.pack(">I", len(tags))
    blobs = b""
    first = 128 + 4 + 12 * len(tags)
    for sig, blob in tags:
        blob += bytes(-len(blob) % 4)
        table += sig + struct.pack(">II", first + len(blobs), len(blob))
        blobs += blob
    size = first + len(blobs)
    header = struct.pack(">I", size) + bytes(4) + struct.pack(">I", 0x02100000) + b"prtrCMYKLab " + bytes(12)
    header += b"acsp" + bytes(28) + d50
    return header + bytes(128 - len(header)) + table + blobs


def progressive_jpeg() -> bytes:
    return jpeg(64, 48, progressive=True)


# --- raw PNG assembly --------------------------------------------------------------------------


def png_chunk(ctype: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + ctype + payload + struct.pack(">I", zlib.crc32(ctype + payload))


def raw_png(
    width: int,
    height: int,
    *,
    bit_depth: int = 8,
    color_type: int = 2,
    rows: bytes | None = None,
    idat: bytes | None = None,
    extra: tuple[bytes, ...] = (),
    iend: bool = True,
) -> bytes:
    """A PNG from parts: `rows` are filtered scanlines (zlib-compressed here) unless `idat` is given raw."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    if idat is None:
        idat = zlib.compress(rows if rows is not None else b"")
    out = PNG_MAGIC + png_chunk(b"IHDR", ihdr) + b"".join(extra) + png_chunk(b"IDAT", idat)
    return out + (png_chunk(b"IEND", b"") if iend else b"")


def zlib_zeros(total: int, block: int = 1 << 20) -> bytes:
    """A valid zlib stream inflating to `total` zero bytes (~1000:1), built in well under a second.

    After a full flush the compressor's state is reset, so every further block of zeros compresses
    to the same bytes: compress two blocks, repeat the second, close with an empty final block and
    the Adler-32 of the whole output.
    """
    blocks = max(1, total // block)
    comp = zlib.compressobj(9)
    zeros = bytes(block)
    first = comp.compress(zeros) + comp.flush(zlib.Z_FULL_FLUSH)
    repeat = comp.compress(zeros) + comp.flush(zlib.Z_FULL_FLUSH)
    adler = 1
    for _ in range(blocks):
        adler = zlib.adler32(zeros, adler)
    return first + repeat * (blocks - 1) + b"\x03\x00" + struct.pack(">I", adler)


def png_claiming(width: int, height: int) -> bytes:
    """Just IHDR and a tiny IDAT: a header that claims an enormous canvas."""
    return raw_png(width, height, idat=zlib.compress(bytes(64)), iend=False)


@functools.cache
def png_zlib_bomb(width: int = 50_000, height: int = 50_000, inflated: int = 32 << 20) -> bytes:
    """A small file (~32 KB) with a huge declared size whose IDAT inflates to `inflated` bytes."""
    return raw_png(width, height, idat=zlib_zeros(inflated))


@functools.cache
def png_excess_idat(width: int = 256, height: int = 256, inflated: int = 1 << 30) -> bytes:
    """A modest declared size whose IDAT inflates to 1 GiB: the decoder must stop when the canvas is full."""
    return raw_png(width, height, idat=zlib_zeros(inflated))


# --- the hostile corpus ------------------------------------------------------------------------


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    return buf.getvalue()


def png_zip_polyglot() -> bytes:
    """A PNG followed by a ZIP archive: valid as both (unzip reads from the end)."""
    return png() + zip_bytes({"payload.html": b"<script>alert(1)</script>"})


def png_html_polyglot() -> bytes:
    """A PNG carrying HTML in a tEXt chunk and after IEND: a browser sniffing it may see HTML."""
    html = b"<html><script>alert(1)</script></html>"
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", html.decode())
    return png(pnginfo=info) + html


def jpeg_many_scans(scans: int = 150) -> bytes:
    """A progressive JPEG whose first scan is repeated: a CPU bomb shape, caught by counting SOS markers."""
    data = progressive_jpeg()
    sos = data.index(b"\xff\xda")
    nxt = data.index(b"\xff\xda", sos + 2)
    return data[:sos] + data[sos:nxt] * scans + b"\xff\xd9"


def png_many_chunks(count: int) -> bytes:
    """A valid small PNG padded with `count` empty ancillary chunks (Pillow walks each in Python)."""
    data = png(8, 8)
    return data[:33] + png_chunk(b"abCd", b"") * count + data[33:]


def jpeg_many_segments(count: int) -> bytes:
    """A valid small JPEG padded with `count` empty comment segments."""
    data = jpeg(8, 8)
    return data[:2] + b"\xff\xfe\x00\x02" * count + data[2:]


def webp_huge_canvas() -> bytes:
    """A VP8X header declaring a 16384×16384 canvas, then nothing useful."""
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00" + (16383).to_bytes(3, "little") * 2
    body = b"WEBP" + vp8x
    return b"RIFF" + struct.pack("<I", len(body)) + body


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    code: str | None  # the DecodeError code the gate must give, or None where it must decode


def corpus() -> list[Case]:
    """Every hostile shape, with its expected reason code. Cheap to build (well under a second)."""
    good_png, good_jpeg, good_webp = png(), jpeg(), webp()
    html = b"<!DOCTYPE html><html><body>not an image</body></html>"
    svg = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'
    cases = [
        Case("empty", b"", "undecodable"),
        Case("one_byte", b"\x89", "undecodable"),
        Case("png_magic_only", PNG_MAGIC, "undecodable"),
        Case("truncated_png", good_png[: len(good_png) // 2], "undecodable"),
        Case("png_without_iend", good_png[:-12], "undecodable"),
        Case("png_corrupt_idat", raw_png(100, 100, idat=b"\xff\xff" + bytes(50)), "undecodable"),
        Case("png_short_idat", raw_png(100, 100, idat=zlib.compress(bytes(10))), "undecodable"),
        Case("png_zero_width", raw_png(0, 10, rows=b""), "undecodable"),
        Case("truncated_jpeg", good_jpeg[: len(good_jpeg) // 2], "undecodable"),
        Case("jpeg_header_only", good_jpeg[:20], "undecodable"),
        Case("truncated_webp", good_webp[: len(good_webp) // 2], "undecodable"),
        Case("png_100k_x_100k", png_claiming(100_000, 100_000), "too_large"),
        Case("png_zlib_bomb", png_zlib_bomb(), "too_large"),
        Case("png_max_dimensions", png_claiming(2**31 - 1, 2**31 - 1), "too_large"),
        Case("jpeg_150_scans", jpeg_many_scans(), "too_large"),
        Case("webp_16k_canvas", webp_huge_canvas(), "too_large"),
        Case("png_100001_chunks", png_many_chunks(100_001), "too_large"),
        Case("jpeg_100001_segments", jpeg_many_segments(100_001), "too_large"),
        Case("text_named_png", b"this is a text file called picture.png\n", "unsupported_format"),
        Case("gif", encode(Image.new("RGB", (8, 8)), "GIF"), "unsupported_format"),
        Case("bmp", encode(Image.new("RGB", (8, 8)), "BMP"), "unsupported_format"),
        Case("tiff", encode(Image.new("RGB", (8, 8)), "TIFF"), "unsupported_format"),
        Case("svg", svg, "unsupported_format"),
        Case("html", html, "unsupported_format"),
        Case("html_then_png", html + good_png, "unsupported_format"),
        Case("pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\n%%EOF\n", "unsupported_format"),
        Case("zip_containing_png", zip_bytes({"art.png": good_png}), "unsupported_format"),
        Case("riff_wav", b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(28), "unsupported_format"),
        Case("random_bytes", np.random.default_rng(7).bytes(4096), "unsupported_format"),
        Case("png_zip_polyglot", png_zip_polyglot(), None),
        Case("png_html_polyglot", png_html_polyglot(), None),
        Case("png_excess_idat", png_excess_idat(64, 64, 64 << 20), None),
        Case("jpeg_with_trailer", good_jpeg + b"trailing junk" * 10, None),
    ]
    return cases


# --- XMP ---------------------------------------------------------------------------------------

PLUS_NS = "http://ns.useplus.org/ldf/xmp/1.0/"
PLUS_VOCAB = "http://ns.useplus.org/ldf/vocab/"
IPTC_EXT_NS = "http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
DIGSRC = "http://cv.iptc.org/newscodes/digitalsourcetype/"


def xmp_packet(properties: str, extra_ns: str = "") -> str:
    """Wrap rdf:Description attributes/children in a complete XMP packet."""
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f'<rdf:Description rdf:about="" xmlns:plus="{PLUS_NS}" xmlns:Iptc4xmpExt="{IPTC_EXT_NS}" {extra_ns}'
        f"{properties}</rdf:Description></rdf:RDF></x:xmpmeta>\n"
        '<?xpacket end="w"?>'
    )


def xmp_data_mining(value: str, form: str = "attribute") -> str:
    """plus:DataMining as an attribute, an element with text, or an element with rdf:resource."""
    uri = value if value.startswith("http") else PLUS_VOCAB + value
    if form == "attribute":
        return xmp_packet(f' plus:DataMining="{uri}">')
    if form == "element":
        return xmp_packet(f"><plus:DataMining>{uri}</plus:DataMining>")
    return xmp_packet(f'><plus:DataMining rdf:resource="{uri}"/>')


def xmp_digital_source_type(term: str) -> str:
    return xmp_packet(f' Iptc4xmpExt:DigitalSourceType="{DIGSRC}{term}">')


def png_with_xmp(xmp: str | bytes, *, compressed: bool = False, base: bytes | None = None) -> bytes:
    """Insert an iTXt `XML:com.adobe.xmp` chunk right after IHDR (by hand, so any bytes can go in)."""
    text = xmp.encode("utf-8") if isinstance(xmp, str) else xmp
    body = zlib.compress(text) if compressed else text
    payload = b"XML:com.adobe.xmp\x00" + (b"\x01\x00" if compressed else b"\x00\x00") + b"\x00\x00" + body
    data = base if base is not None else png()
    ihdr_end = len(PNG_MAGIC) + 25
    return data[:ihdr_end] + png_chunk(b"iTXt", payload) + data[ihdr_end:]


def jpeg_with_xmp(xmp: str | bytes) -> bytes:
    text = xmp.encode("utf-8") if isinstance(xmp, str) else xmp
    return jpeg(xmp=text)


def webp_with_xmp(xmp: str | bytes) -> bytes:
    text = xmp.encode("utf-8") if isinstance(xmp, str) else xmp
    return webp(xmp=text)


# --- C2PA signing with a local test certificate chain ------------------------------------------


@dataclass(frozen=True)
class CertChain:
    """PEM bytes: `chain` is the end-entity certificate followed by the CA (leaf first)."""

    chain: bytes
    private_key: bytes
    ca: bytes
    alg: str = "es256"


@functools.cache
def make_cert_chain() -> CertChain:
    """A throwaway CA and an end-entity signing certificate (P-256), generated in memory.

    c2pa-rs checks the signing certificate's profile: it must not be self-signed (hence the CA),
    must be X.509 v3 with KeyUsage digitalSignature, an ExtendedKeyUsage from its allowed list
    (emailProtection here; documentSigning 1.3.6.1.5.5.7.3.36 also works), BasicConstraints CA=false,
    and an AuthorityKeyIdentifier. The chain is not on any trust list, so readers report
    `signingCredential.untrusted` while the claim signature itself validates.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(common_name: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "MimicSafe tests"),
            ]
        )

    def usage(*, sign: bool, ca: bool) -> x509.KeyUsage:
        return x509.KeyUsage(
            digital_signature=sign, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
            encipher_only=False, decipher_only=False,
        )  # fmt: skip

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name("MimicSafe test CA"))
        .issuer_name(name("MimicSafe test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage(sign=False, ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ee_key = ec.generate_private_key(ec.SECP256R1())
    ee_cert = (
        x509.CertificateBuilder()
        .subject_name(name("MimicSafe test signer"))
        .issuer_name(ca_cert.subject)
        .public_key(ee_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(sign=True, ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ee_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return CertChain(
        chain=ee_cert.public_bytes(pem) + ca_cert.public_bytes(pem),
        private_key=ee_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        ca=ca_cert.public_bytes(pem),
    )


def training_mining(entries: dict[str, str], label: str = "cawg.training-mining") -> dict:
    """A training-and-data-mining assertion: {entry name: use}, e.g. {"cawg.ai_generative_training": "notAllowed"}."""
    return {"label": label, "data": {"entries": {key: {"use": use} for key, use in entries.items()}}}


def created_action(term: str = "trainedAlgorithmicMedia") -> dict:
    """A c2pa.actions assertion whose c2pa.created action declares an IPTC digital source type."""
    action = {"action": "c2pa.created", "digitalSourceType": DIGSRC + term}
    return {"label": "c2pa.actions", "data": {"actions": [action]}}


def c2pa_sign(
    image: bytes,
    mime: str,
    assertions: list[dict],
    chain: CertChain | None = None,
    *,
    parent: bytes | None = None,
) -> bytes:
    """Embed a signed C2PA manifest with `assertions` into `image` and return the new bytes (offline: no TSA).

    C2PA 2.x requires the first action to be `c2pa.created` or `c2pa.opened`. Without an actions
    assertion the manifest gets `c2pa.created` with digitalSourceType digitalCreation (human-made),
    or, when `parent` (a signed file of the same MIME type) is given, `c2pa.opened` on that parent,
    whose manifest then travels inside the new store as an ingredient.
    """
    import c2pa

    chain = chain or make_cert_chain()
    if not any(str(a.get("label", "")).startswith("c2pa.actions") for a in assertions):
        if parent is None:
            first = created_action("digitalCreation")
        else:
            opened = {"action": "c2pa.opened", "parameters": {"ingredientIds": ["parent"]}}
            first = {"label": "c2pa.actions", "data": {"actions": [opened]}}
        assertions = [first, *assertions]
    manifest = {
        "claim_generator_info": [{"name": "mimicsafe-tests", "version": "0"}],
        "title": "test image",
        "assertions": assertions,
    }
    info = c2pa.C2paSignerInfo(
        alg=chain.alg.encode(), sign_cert=chain.chain, private_key=chain.private_key, ta_url=None
    )
    out = io.BytesIO()
    with c2pa.Signer.from_info(info) as signer, c2pa.Builder(manifest) as builder:
        if parent is not None:
            ingredient = {"title": "parent", "relationship": "parentOf", "label": "parent"}
            builder.add_ingredient(ingredient, mime, io.BytesIO(parent))
        builder.sign(signer, mime, io.BytesIO(image), out)
    return out.getvalue()
