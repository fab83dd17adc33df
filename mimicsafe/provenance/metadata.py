"""The facts about one generated image, and how they are written into the PNG: XMP and PNG text.

The same `GenerationFacts` feed the C2PA manifest (`content_credentials`), the XMP packet and the PNG
text chunks, so the three never disagree. The XMP carries the standard properties that other tools
read — IPTC `DigitalSourceType` = trainedAlgorithmicMedia (AI-generated), PLUS `DataMining` =
DMI-PROHIBITED-AIMLTRAINING (do not train on it), `Iptc4xmpExt:AISystemUsed` / `AIPromptInformation` —
plus the generation record in a `mimicsafe:` namespace. Metadata is easily stripped; it is a courtesy
to honest readers, the watermark and fingerprint are what survive.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import asdict, dataclass
from datetime import datetime
from xml.sax.saxutils import escape, quoteattr

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
DMI_PROHIBITED_AI_TRAINING = "http://ns.useplus.org/ldf/vocab/DMI-PROHIBITED-AIMLTRAINING"
MIMICSAFE_NS = "http://ns.mimicsafe.org/generation/1.0/"
XMP_KEYWORD = "XML:com.adobe.xmp"


def prompt_sha256(prompt: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class GenerationFacts:
    """What a generated image says about itself. `generation_id` is the watermark payload in hex."""

    generation_id: str
    artist: str
    model_id: int
    model_name: str
    lora_sha256: str
    base_model: str
    prompt: str
    seed: int
    kind: str  # "image" or "sheet:<kind>"
    created_at: datetime
    software: str

    @property
    def prompt_sha256(self) -> str:
        return prompt_sha256(self.prompt)

    @property
    def visible_label(self) -> str:
        return f"AI reference · @{self.artist}"

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["created_at"] = self.created_at.isoformat(timespec="seconds")
        data["prompt_sha256"] = self.prompt_sha256
        data["digital_source_type"] = TRAINED_ALGORITHMIC_MEDIA
        data["training"] = "notAllowed"
        return data


def xmp_packet(facts: GenerationFacts) -> str:
    """An XMP packet with the standard AI-provenance properties and the generation record."""
    created = facts.created_at.isoformat(timespec="seconds")
    record = "".join(
        f"<mimicsafe:{name}>{escape(str(value))}</mimicsafe:{name}>"
        for name, value in (
            ("generationId", facts.generation_id),
            ("artist", facts.artist),
            ("modelId", facts.model_id),
            ("modelName", facts.model_name),
            ("loraSha256", facts.lora_sha256),
            ("baseModel", facts.base_model),
            ("promptSha256", facts.prompt_sha256),
            ("seed", facts.seed),
            ("kind", facts.kind),
        )
    )
    title = f"{facts.visible_label} · {facts.generation_id}"
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about=""'
        ' xmlns:dc="http://purl.org/dc/elements/1.1/"'
        ' xmlns:xmp="http://ns.adobe.com/xap/1.0/"'
        ' xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"'
        ' xmlns:plus="http://ns.useplus.org/ldf/xmp/1.0/"'
        f' xmlns:mimicsafe="{MIMICSAFE_NS}"'
        f" xmp:CreatorTool={quoteattr(facts.software)}"
        f" xmp:CreateDate={quoteattr(created)}>"
        f'<dc:title><rdf:Alt><rdf:li xml:lang="x-default">{escape(title)}</rdf:li></rdf:Alt></dc:title>'
        f'<dc:description><rdf:Alt><rdf:li xml:lang="x-default">{escape(facts.prompt)}</rdf:li></rdf:Alt>'
        "</dc:description>"
        f'<Iptc4xmpExt:DigitalSourceType rdf:resource="{TRAINED_ALGORITHMIC_MEDIA}"/>'
        f"<Iptc4xmpExt:AISystemUsed>{escape(facts.software + ' with LoRA ' + facts.model_name)}"
        "</Iptc4xmpExt:AISystemUsed>"
        f"<Iptc4xmpExt:AIPromptInformation>{escape(facts.prompt)}</Iptc4xmpExt:AIPromptInformation>"
        f'<plus:DataMining rdf:resource="{DMI_PROHIBITED_AI_TRAINING}"/>'
        f"{record}"
        "</rdf:Description></rdf:RDF></x:xmpmeta>"
        '<?xpacket end="r"?>'
    )


def png_text(facts: GenerationFacts) -> dict[str, str]:
    """PNG text chunks (the registered keywords) saying the same, for tools that do not read XMP."""
    return {
        "Title": f"{facts.visible_label} · {facts.generation_id}",
        "Description": facts.prompt,
        "Software": facts.software,
        "Creation Time": facts.created_at.isoformat(timespec="seconds"),
        "Source": f"{facts.software}; LoRA {facts.model_name} (#{facts.model_id}, sha256 {facts.lora_sha256}) "
                  f"on {facts.base_model}; seed {facts.seed}",
        "Disclaimer": "AI-generated (IPTC trainedAlgorithmicMedia). Not to be used to train AI models.",
        "Comment": f"MimicSafe generation {facts.generation_id} by @{facts.artist}; prompt sha256 "
                   f"{facts.prompt_sha256}",
    }


def png_with_metadata(rgb: np.ndarray, facts: GenerationFacts) -> bytes:
    """Encode `rgb` losslessly as PNG with the XMP packet and the text chunks (UTF-8 iTXt)."""
    info = PngInfo()
    info.add_itxt(XMP_KEYWORD, xmp_packet(facts))
    for keyword, text in png_text(facts).items():
        info.add_itxt(keyword, text)
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="PNG", pnginfo=info, optimize=False, compress_level=6)
    return out.getvalue()
