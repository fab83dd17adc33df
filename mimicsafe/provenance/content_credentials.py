"""Content Credentials (C2PA) of generated images: signing with the instance's chain, and reading back.

The manifest of every output holds:
- `c2pa.actions.v2`: `c2pa.created` first, with digitalSourceType trainedAlgorithmicMedia and the LoRA
  as its ingredient, then `c2pa.watermarked.bound` (an invisible watermark bound by a soft binding);
- the LoRA as an ingredient (`inputTo`, data type `c2pa.types.model`, its SHA-256 in the description);
- `cawg.training-mining`: generative training, training and data mining `notAllowed`;
- `c2pa.soft-binding`: the watermark algorithm and the 8-byte payload it carries;
- `org.mimicsafe.generation`: the generation record (`GenerationFacts`).

Reading never touches the network (no remote manifests, no OCSP). A manifest is *trusted* when its
signature validates and its certificate chains to this instance's anchor (and nothing else: the SDK's
built-in anchors are replaced, so a manifest signed by someone else's valid chain is not "ours").
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any

import c2pa

from mimicsafe.errors import MimicSafeError
from mimicsafe.provenance.credentials import InstanceCredentials
from mimicsafe.provenance.metadata import TRAINED_ALGORITHMIC_MEDIA, GenerationFacts
from ownership.signals import C2PA_OFFLINE, c2pa_store

SOFT_BINDING_ALG = "org.mimicsafe.watermark.1"
GENERATION_ASSERTION = "org.mimicsafe.generation"
TRAINING_MINING = "cawg.training-mining"
_LORA_INGREDIENT = "lora"


class ContentCredentialsError(MimicSafeError):
    """Signing or reading failed: the SDK's message, prefixed with what we were doing. A MimicSafeError,
    so the CLI and the UI report it as a refusal with its message rather than as a crash."""


@dataclass(frozen=True)
class LoraIngredient:
    name: str
    sha256: str
    model_id: int
    artist: str


def _manifest(facts: GenerationFacts, lora: LoraIngredient, watermark_payload: bytes) -> dict[str, Any]:
    software = {"name": "MimicSafe", "version": facts.software.rsplit(" ", 1)[-1]}
    return {
        "claim_generator_info": [software],
        "title": f"mimicsafe-{facts.generation_id}.png",
        "format": "image/png",
        "assertions": [
            {"label": "c2pa.actions.v2", "data": {"actions": [
                {"action": "c2pa.created", "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
                 "softwareAgent": software, "when": facts.created_at.isoformat(timespec="seconds"),
                 "description": f"reference image in the style of @{facts.artist}",
                 "parameters": {"ingredientIds": [_LORA_INGREDIENT]}},
                {"action": "c2pa.watermarked.bound", "softwareAgent": software,
                 "description": f"invisible watermark {SOFT_BINDING_ALG} carrying {facts.generation_id}"},
            ]}},
            {"label": TRAINING_MINING, "data": {"entries": {
                "cawg.ai_generative_training": {"use": "notAllowed"},
                "cawg.ai_training": {"use": "notAllowed"},
                "cawg.data_mining": {"use": "notAllowed"},
            }}},
            {"label": "c2pa.soft-binding", "data": {
                "alg": SOFT_BINDING_ALG,
                "blocks": [{"scope": {}, "value": base64.b64encode(watermark_payload).decode()}],
            }},
            {"label": GENERATION_ASSERTION, "data": facts.to_json()},
        ],
    }


def _ingredient(lora: LoraIngredient) -> dict[str, Any]:
    return {
        "title": f"{lora.name}.safetensors",
        "format": "application/octet-stream",
        "relationship": "inputTo",
        "label": _LORA_INGREDIENT,
        "data_types": [{"type": "c2pa.types.model"}],
        "description": f"LoRA #{lora.model_id} of @{lora.artist}, trained only on their own verified works; "
                       f"sha256 {lora.sha256}",
    }


def sign_png(png: bytes, *, facts: GenerationFacts, lora: LoraIngredient, watermark_payload: bytes,
             credentials: InstanceCredentials) -> bytes:
    """Embed a signed manifest into the PNG; returns the new file. The pixels are not touched."""
    settings = {"verify": C2PA_OFFLINE, "trust": {"trust_anchors": credentials.trust_anchor_pem},
                "builder": {"thumbnail": {"enabled": False}}}
    try:
        with c2pa.Context.from_dict(settings) as context:
            builder = c2pa.Builder(_manifest(facts, lora, watermark_payload), context=context)
            # The LoRA is named and hashed in the description; its bytes are not embedded.
            builder.add_ingredient(_ingredient(lora), "application/octet-stream", io.BytesIO(b""))
            info = c2pa.C2paSignerInfo(b"es256", credentials.chain_pem, credentials.key_pem, None)
            out = io.BytesIO()
            with c2pa.Signer.from_info(info) as signer:
                builder.sign(signer, "image/png", io.BytesIO(png), out)
            return out.getvalue()
    except c2pa.C2paError as exc:
        raise ContentCredentialsError(f"signing the C2PA manifest failed: {exc}") from exc


@dataclass(frozen=True)
class ManifestReport:
    """What the C2PA manifest store of a file says, judged against the instance's trust anchor."""

    validation_state: str  # "Trusted", "Valid" (signature fine, anchor not ours) or "Invalid"
    problems: tuple[str, ...]  # validation failure codes
    signer: str | None
    generation: dict[str, Any] | None  # our org.mimicsafe.generation assertion, if present
    soft_binding: str | None  # the watermark payload it declares, hex
    actions: tuple[str, ...]
    digital_source_type: str | None
    training_mining: dict[str, str]
    ingredients: tuple[str, ...]

    @property
    def trusted(self) -> bool:
        return self.validation_state == "Trusted" and not self.problems

    def to_json(self) -> dict[str, Any]:
        return {"validation_state": self.validation_state, "trusted": self.trusted, "problems": list(self.problems),
                "signer": self.signer, "generation_id": (self.generation or {}).get("generation_id"),
                "soft_binding": self.soft_binding, "actions": list(self.actions),
                "digital_source_type": self.digital_source_type, "training_mining": self.training_mining,
                "ingredients": list(self.ingredients)}


def read_manifest(data: bytes, *, mime: str, trust_anchor_pem: str) -> ManifestReport | None:
    """The active manifest of `data`, validated against `trust_anchor_pem` only; None if there is none.

    Raises `ContentCredentialsError` when a manifest store is present but cannot be parsed at all.
    """
    try:
        store = c2pa_store(data, mime, trust_anchors=trust_anchor_pem)
    except c2pa.C2paError as exc:
        raise ContentCredentialsError(f"the C2PA manifest store cannot be read: {exc}") from exc
    return _report(store) if isinstance(store, dict) else None


def _report(store: dict[str, Any]) -> ManifestReport | None:
    manifests = store.get("manifests") or {}
    active = manifests.get(store.get("active_manifest") or "")
    if not isinstance(active, dict):
        return None
    problems = tuple(sorted({s.get("code", "?") for s in store.get("validation_status") or []
                             if isinstance(s, dict)}))
    assertions = {a.get("label"): a.get("data") for a in active.get("assertions", []) if isinstance(a, dict)}
    actions = (assertions.get("c2pa.actions.v2") or assertions.get("c2pa.actions") or {}).get("actions", [])
    source_types = [a.get("digitalSourceType") for a in actions if a.get("digitalSourceType")]
    binding = assertions.get("c2pa.soft-binding") or {}
    blocks = (binding.get("blocks") or []) if binding.get("alg") == SOFT_BINDING_ALG else []
    payload = None
    if blocks and isinstance(blocks[0], dict) and isinstance(blocks[0].get("value"), str):
        payload = base64.b64decode(blocks[0]["value"]).hex()
    mining = (assertions.get(TRAINING_MINING) or {}).get("entries") or {}
    generation = assertions.get(GENERATION_ASSERTION)
    return ManifestReport(
        validation_state=str(store.get("validation_state", "Invalid")),
        problems=problems,
        signer=(active.get("signature_info") or {}).get("common_name"),
        generation=generation if isinstance(generation, dict) else None,
        soft_binding=payload,
        actions=tuple(str(a.get("action")) for a in actions),
        digital_source_type=source_types[0] if source_types else None,
        training_mining={k: str(v.get("use")) for k, v in mining.items() if isinstance(v, dict)},
        ingredients=tuple(str(i.get("title")) for i in active.get("ingredients", []) if isinstance(i, dict)),
    )
