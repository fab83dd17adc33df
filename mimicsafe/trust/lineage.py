"""Lineage: what was built on what, both ways, with the state of each step.

work (a verified portfolio item) ─matched by─▶ upload ─listed in─▶ dataset ─trained─▶ model ─made─▶ generation

`lineage(kind, id)` starts at one node and walks up (what it came from) and down (what was built on
it), so an admin answers "what did this stolen image touch?" in one step. A work's uploads are those
the gate rejected for matching it and those a re-scan suspended for it; an upload's works are those
its verdict or its suspensions name. Admins only: it names artists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import String, cast, select
from sqlalchemy.orm import Session

from mimicsafe.accounts import get_user
from mimicsafe.db.models import (
    Dataset,
    DatasetUpload,
    Generation,
    LoraModel,
    PortfolioItem,
    Suspension,
    TrainingJob,
    Upload,
    User,
)
from mimicsafe.errors import NotFoundError, PermissionDenied, ValidationFailed
from mimicsafe.trust import suspension

Kind = Literal["work", "upload", "dataset", "model", "generation"]
KINDS: tuple[Kind, ...] = ("work", "upload", "dataset", "model", "generation")
_ORDER = {kind: i for i, kind in enumerate(KINDS)}


@dataclass
class Lineage:
    subject: str  # "upload:12"
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    edges: set[tuple[str, str, str]] = field(default_factory=set)  # (from, to, relation), always downstream

    def to_json(self) -> dict[str, Any]:
        ordered = sorted(self.nodes.values(), key=lambda n: (_ORDER[n["kind"]], n["id"]))
        return {"subject": self.subject, "nodes": ordered,
                "edges": [{"from": a, "to": b, "relation": r} for a, b, r in sorted(self.edges)]}

    def text(self) -> str:
        lines = [f"lineage of {self.subject}"]
        for node in self.to_json()["nodes"]:
            key = f"{node['kind']}:{node['id']}"
            mark = "*" if key == self.subject else " "
            ups = sorted(a for a, b, _ in self.edges if b == key)
            lines.append(f"{mark} {key:<16} [{node['state']}] {node['label']}"
                         + (f"  <- {', '.join(ups)}" if ups else ""))
        return "\n".join(lines)


def lineage(*, session: Session, admin: str, kind: str, item_id: int) -> Lineage:
    user = get_user(session=session, username=admin)
    if user.role != "admin" or user.disabled:
        raise PermissionDenied(f"{admin} is not an admin")
    if kind not in KINDS:
        raise ValidationFailed(f"kind {kind!r}: choose one of {', '.join(KINDS)}")
    walk = _Walk(session, Lineage(f"{kind}:{item_id}"))
    if not walk.node(kind, item_id):  # type: ignore[arg-type]
        raise NotFoundError(f"there is no {kind} #{item_id}")
    walk.up(kind, item_id)  # type: ignore[arg-type]
    walk.down(kind, item_id)  # type: ignore[arg-type]
    return walk.result


class _Walk:
    def __init__(self, session: Session, result: Lineage) -> None:
        self.s, self.result = session, result
        self._names: dict[int, str] = {}

    def _user(self, user_id: int | None) -> str:
        if user_id is None:
            return "?"
        if user_id not in self._names:
            user = self.s.get(User, user_id)
            self._names[user_id] = user.username if user else "?"
        return self._names[user_id]

    # nodes ----------------------------------------------------------------------------------------
    def node(self, kind: Kind, item_id: int) -> bool:
        key = f"{kind}:{item_id}"
        if key in self.result.nodes:
            return True
        found = getattr(self, f"_{kind}_node")(item_id)
        if found is None:
            return False
        state, label = found
        self.result.nodes[key] = {"kind": kind, "id": item_id, "state": state, "label": label}
        return True

    def _work_node(self, item_id: int) -> tuple[str, str] | None:
        item = self.s.get(PortfolioItem, item_id)
        return None if item is None else (item.status, f"{self._user(item.user_id)}/{item.file_name} "
                                                        f"({item.sha256[:12]})")

    def _upload_node(self, item_id: int) -> tuple[str, str] | None:
        u = self.s.get(Upload, item_id)
        if u is None:
            return None
        state = "deleted" if u.deleted_at else "suspended" if u.suspended_at else u.decision
        if u.review_state != "none":
            state += f", review {u.review_state}"
        return state, f"{self._user(u.user_id)}/{u.file_name} ({u.sha256[:12]})"

    def _dataset_node(self, item_id: int) -> tuple[str, str] | None:
        d = self.s.get(Dataset, item_id)
        if d is None:
            return None
        tainted = suspension.suspended_uploads_of_dataset(self.s, d.id)
        return ("tainted" if tainted else "clean"), f"{self._user(d.user_id)}, {d.item_count} item(s) " \
                                                    f"({d.manifest_sha256[:12]})"

    def _model_node(self, item_id: int) -> tuple[str, str] | None:
        m = self.s.get(LoraModel, item_id)
        if m is None:
            return None
        state = "deleted" if m.deleted_at else "suspended" if suspension.model_suspended_uploads(self.s, m) else "ready"
        blocked = f", {m.blocked_outputs} output(s) withheld" if m.blocked_outputs else ""
        return state, f"{self._user(m.user_id)}/{m.name}{blocked}"

    def _generation_node(self, item_id: int) -> tuple[str, str] | None:
        g = self.s.get(Generation, item_id)
        if g is None:
            return None
        model = self.s.get(LoraModel, g.lora_model_id) if g.lora_model_id is not None else None
        flagged = model is not None and suspension.model_suspended_uploads(self.s, model)
        return ("from a suspended model" if flagged else "ok"), f"{self._user(g.user_id)}, " \
                                                                f"{g.watermark_payload or '?'} ({g.image_sha256[:12]})"

    def _link(self, up: tuple[Kind, int], down: tuple[Kind, int], relation: str) -> None:
        self.node(*up)
        self.node(*down)
        self.result.edges.add((f"{up[0]}:{up[1]}", f"{down[0]}:{down[1]}", relation))

    # downstream -----------------------------------------------------------------------------------
    def down(self, kind: Kind, item_id: int) -> None:
        for child_kind, child_id, relation in self._children(kind, item_id):
            seen = f"{child_kind}:{child_id}" in self.result.nodes
            self._link((kind, item_id), (child_kind, child_id), relation)
            if not seen:
                self.down(child_kind, child_id)

    def _children(self, kind: Kind, item_id: int) -> list[tuple[Kind, int, str]]:
        s = self.s
        if kind == "work":
            item = s.get(PortfolioItem, item_id)
            assert item is not None
            by_verdict = s.scalars(select(Upload.id).where(cast(Upload.verdict, String).contains(item.sha256)))
            by_rescan = s.scalars(select(Suspension.upload_id).where(Suspension.protected_kind == "portfolio",
                                                                     Suspension.protected_id == item_id))
            return [("upload", i, "matched by") for i in sorted(set(by_verdict) | set(by_rescan))]
        if kind == "upload":
            return [("dataset", i, "listed in") for i in suspension.datasets_listing(s, [item_id])]
        if kind == "dataset":
            models = s.scalars(select(LoraModel.id).join(TrainingJob, TrainingJob.id == LoraModel.job_id)
                               .where(TrainingJob.dataset_id == item_id).order_by(LoraModel.id))
            return [("model", i, "trained") for i in models]
        if kind == "model":
            made = s.scalars(select(Generation.id).where(Generation.lora_model_id == item_id).order_by(Generation.id))
            return [("generation", i, "made") for i in made]
        return []

    # upstream -------------------------------------------------------------------------------------
    def up(self, kind: Kind, item_id: int) -> None:
        for parent_kind, parent_id, relation in self._parents(kind, item_id):
            seen = f"{parent_kind}:{parent_id}" in self.result.nodes
            self._link((parent_kind, parent_id), (kind, item_id), relation)
            if not seen:
                self.up(parent_kind, parent_id)

    def _parents(self, kind: Kind, item_id: int) -> list[tuple[Kind, int, str]]:
        s = self.s
        if kind == "generation":
            g = s.get(Generation, item_id)
            return [] if g is None or g.lora_model_id is None else [("model", g.lora_model_id, "made")]
        if kind == "model":
            m = s.get(LoraModel, item_id)
            job = s.get(TrainingJob, m.job_id) if m is not None else None
            return [] if job is None else [("dataset", job.dataset_id, "trained")]
        if kind == "dataset":
            ids = s.scalars(select(DatasetUpload.upload_id).where(DatasetUpload.dataset_id == item_id))
            return [("upload", i, "listed in") for i in sorted(ids)]
        if kind == "upload":
            u = s.get(Upload, item_id)
            assert u is not None
            shas = {m["item_sha256"] for m in u.verdict.get("matches", [])}
            works = set(s.scalars(select(PortfolioItem.id).where(PortfolioItem.sha256.in_(sorted(shas))))) if shas \
                else set()
            works |= set(s.scalars(select(Suspension.protected_id).where(Suspension.upload_id == item_id,
                                                                         Suspension.protected_kind == "portfolio")))
            return [("work", i, "matched by") for i in sorted(works)]
        return []
