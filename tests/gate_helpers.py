"""Helpers for gate tests: encoded artworks and files with metadata signals, made in code."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from benchmarks import synthetic_art as art


def png_bytes(rgb: np.ndarray, *, xmp: str | None = None) -> bytes:
    info = None
    if xmp is not None:
        info = PngInfo()
        info.add_itxt("XML:com.adobe.xmp", xmp)
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def jpeg_bytes(rgb: np.ndarray, quality: int = 85) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="JPEG", quality=quality)
    return out.getvalue()


def artwork(artist_seed: int, work_seed: int) -> np.ndarray:
    return art.make_artwork(art.make_artist(artist_seed), work_seed)


def xmp_packet(body: str) -> str:
    return (
        '<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f'<rdf:Description rdf:about="" xmlns:plus="http://ns.useplus.org/ldf/xmp/1.0/" '
        f'xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/">{body}</rdf:Description>'
        "</rdf:RDF></x:xmpmeta><?xpacket end=\"w\"?>"
    )


DMI_PROHIBITED = xmp_packet(
    '<plus:DataMining rdf:resource="http://ns.useplus.org/ldf/vocab/DMI-PROHIBITED-AIMLTRAINING"/>')
AI_SOURCE = xmp_packet(
    '<Iptc4xmpExt:DigitalSourceType rdf:resource="http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"/>')
