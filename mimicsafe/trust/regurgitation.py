"""No regurgitation: a generated image that reproduces someone else's protected work is withheld.

Before an output is stored or shown, its fingerprint (the one marking computed anyway, of the final
image) is searched against the gate's registry. A match with another artist's verified work or the
opt-out registry withholds that output: it is not stored, the artist is told only that an image was
withheld, the model's `blocked_outputs` count grows and the evidence goes to the audit log
(`generation.withhold`), which admins read. The artist's own verified works and our own earlier
outputs do not count: an artist's style model may echo their own art. The cost, measured beside the
generation itself by `python -m benchmarks.provenance`, is one registry search per output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from mimicsafe import audit
from mimicsafe.db.models import LoraModel
from mimicsafe.errors import PermissionDenied
from mimicsafe.registry import Registry
from ownership.fingerprint import Fingerprint
from ownership.policy import GENERATED_OWNER

OUTPUT_WITHHELD = "generation.withhold"
FOR_ARTIST = "an image was withheld because it reproduced a protected work"


class OutputWithheld(PermissionDenied):
    """Every output of a request reproduced a protected work: nothing was stored."""


@dataclass(frozen=True)
class Withheld:
    seed: int
    kind: str
    matches: tuple[dict[str, Any], ...]


def reproduced(session: Session, registry: Registry, fingerprint: Fingerprint, *, artist: str) -> list[dict[str, Any]]:
    """The protected works of others (and opt-out works) the output matches, as evidence."""
    return [{"owner": m.owner, "item_sha256": m.item_sha256, "method": m.method, "score": m.score, "kind": m.kind}
            for m in registry.search(session, fingerprint) if m.owner not in (artist, GENERATED_OWNER)]


def record(session: Session, *, actor: str, artist: str, model_id: int, withheld: list[Withheld]) -> None:
    """Count the withheld outputs on the model and audit the evidence, in the caller's transaction."""
    model = session.get(LoraModel, model_id)
    if model is not None:
        model.blocked_outputs = (model.blocked_outputs or 0) + len(withheld)
    audit.append(session, actor=actor, action=OUTPUT_WITHHELD, subject=artist,
                 details={"model_id": model_id, "withheld": [{"seed": w.seed, "kind": w.kind,
                                                              "matches": list(w.matches)} for w in withheld]})
