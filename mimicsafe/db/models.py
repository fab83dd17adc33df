"""Typed SQLAlchemy 2 models. Every schema change goes through an Alembic migration."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: DateTime(timezone=True), dict[str, Any]: JSON}


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # "artist" | "admin"
    password_hash: Mapped[str] = mapped_column(String(255))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    consent_withdrawn_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    keys: Mapped[list[ArtistKey]] = relationship(back_populates="user")


class WebSession(Base):
    """A logged-in browser. The cookie holds a random token; only its SHA-256 is stored, so reading the
    database gives no usable cookie. Deleting the row ends the session (ui/auth.py, mimicsafe/accounts.py)."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class ArtistKey(Base):
    """A public key an artist signs uploads with. Revoked keys stay, so old verdicts stay explainable."""

    __tablename__ = "artist_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    fingerprint: Mapped[str] = mapped_column(String(80), unique=True)  # "SHA256:…" as ssh-keygen -l prints
    public_key: Mapped[bytes] = mapped_column(LargeBinary)  # raw 32-byte Ed25519 key
    comment: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]

    user: Mapped[User] = relationship(back_populates="keys")


class PortfolioItem(Base):
    """A work an artist claims as theirs. Once an admin verifies it, it is protected for everyone."""

    __tablename__ = "portfolio_items"
    __table_args__ = (UniqueConstraint("user_id", "sha256"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)  # also the blob key
    file_name: Mapped[str] = mapped_column(String(255))
    evidence_url: Mapped[str | None] = mapped_column(String(2048))
    # pending|verified|denied, or transferred (a dispute moved it to the claimant's portfolio)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    pdq: Mapped[bytes | None] = mapped_column(LargeBinary)
    pdq_quality: Mapped[int | None]
    fingerprint: Mapped[bytes | None] = mapped_column(LargeBinary)  # ownership.fingerprint serialised
    submitted_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[datetime | None]
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    note: Mapped[str] = mapped_column(Text, default="")


class OptOutItem(Base):
    """A work whose author asked that it never be trained on (they need not use the app)."""

    __tablename__ = "optout_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    pdq: Mapped[bytes | None] = mapped_column(LargeBinary)
    pdq_quality: Mapped[int | None]
    fingerprint: Mapped[bytes | None] = mapped_column(LargeBinary)
    source: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Upload(Base):
    """One file an artist sent for training, with the gate's verdict stored in the same transaction."""

    __tablename__ = "uploads"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    file_name: Mapped[str] = mapped_column(String(255))
    size_bytes: Mapped[int] = mapped_column(Integer)
    decision: Mapped[str] = mapped_column(String(16), index=True)  # accepted|rejected (the gate's)
    verdict: Mapped[dict[str, Any]]
    policy_version: Mapped[str] = mapped_column(String(32))
    review_state: Mapped[str] = mapped_column(String(16), default="none", index=True)  # none|pending|upheld|overridden
    caption: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None]
    # A rejected file the artist had already sent (same artist, same SHA-256) joins the first copy's review
    # item: this points at that upload, and the repeat is not queued again (mimicsafe/uploads.py).
    repeat_of_id: Mapped[int | None] = mapped_column(ForeignKey("uploads.id"), index=True)
    # Added by migration 0004 (trust over time): the fingerprint the gate computed, so that a work
    # protected later can be searched against the accepted uploads; set while a re-scan suspended it.
    fingerprint: Mapped[bytes | None] = mapped_column(LargeBinary)
    suspended_at: Mapped[datetime | None]


class ReviewDecision(Base):
    __tablename__ = "review_decisions"

    id: Mapped[int] = mapped_column(primary_key=True)
    upload_id: Mapped[int] = mapped_column(ForeignKey("uploads.id"), index=True)
    admin_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    action: Mapped[str] = mapped_column(String(16))  # approve|uphold
    note: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Dataset(Base):
    """A training manifest: exactly which accepted uploads a job may read, hashed as a whole."""

    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    manifest: Mapped[dict[str, Any]]
    manifest_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    item_count: Mapped[int]
    policy_version: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DatasetUpload(Base):
    """Which uploads a dataset's manifest lists, as rows: lineage reads it in both directions."""

    __tablename__ = "dataset_uploads"

    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), primary_key=True)
    upload_id: Mapped[int] = mapped_column(ForeignKey("uploads.id"), primary_key=True, index=True)


class TrainingJob(Base):
    __tablename__ = "training_jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    preset: Mapped[str] = mapped_column(String(32))
    config: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    step: Mapped[int] = mapped_column(default=0)
    total_steps: Mapped[int] = mapped_column(default=0)
    loss: Mapped[float | None]
    eta_seconds: Mapped[float | None]
    error: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # Added by migration 0002: who runs it, whether they are alive, what it can resume from, its samples.
    worker: Mapped[str | None] = mapped_column(String(128))  # "host:pid" of the worker running it
    heartbeat_at: Mapped[datetime | None]
    checkpoint_step: Mapped[int | None]
    samples: Mapped[list[Any] | None] = mapped_column(JSON)  # [{"step", "prompt", "seed", "sha256"}]


class LoraModel(Base):
    __tablename__ = "lora_models"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("training_jobs.id"), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    blob_sha256: Mapped[str] = mapped_column(String(64))
    provenance: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None]
    # Added by migration 0004: outputs withheld because they reproduced a protected work.
    blocked_outputs: Mapped[int] = mapped_column(default=0, server_default="0")


class Generation(Base):
    __tablename__ = "generations"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    lora_model_id: Mapped[int | None] = mapped_column(ForeignKey("lora_models.id"))
    prompt: Mapped[str] = mapped_column(Text)
    params: Mapped[dict[str, Any]]
    seed: Mapped[int]
    image_sha256: Mapped[str] = mapped_column(String(64), index=True)
    watermark_payload: Mapped[str | None] = mapped_column(String(64), unique=True)  # hex
    pdq: Mapped[bytes | None] = mapped_column(LargeBinary)
    fingerprint: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Rescan(Base):
    """A re-scan of the accepted uploads against works that just became protected (a Huey job).

    `items` lists the protected works ({"kind": "portfolio"|"optout", "id": row id}); `position` is how
    many are done, committed after each, so an interrupted re-scan resumes where it stopped."""

    __tablename__ = "rescans"

    id: Mapped[int] = mapped_column(primary_key=True)
    trigger: Mapped[str] = mapped_column(String(64))  # the audit action that protected the works
    actor: Mapped[str] = mapped_column(String(64))
    items: Mapped[list[Any]] = mapped_column(JSON)
    position: Mapped[int] = mapped_column(default=0)
    total: Mapped[int] = mapped_column(default=0)
    suspended: Mapped[int] = mapped_column(default=0)  # uploads suspended by this re-scan so far
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)  # queued|running|done|failed
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class Suspension(Base):
    """An accepted upload that a work protected later matches (`matches_newly_protected`), with the
    evidence and the admin's decision. While open or upheld, the upload is ineligible and every model
    trained on a dataset that lists it is suspended."""

    __tablename__ = "suspensions"

    id: Mapped[int] = mapped_column(primary_key=True)
    upload_id: Mapped[int] = mapped_column(ForeignKey("uploads.id"), index=True)
    rescan_id: Mapped[int | None] = mapped_column(ForeignKey("rescans.id"))
    reason: Mapped[str] = mapped_column(String(64))
    protected_kind: Mapped[str] = mapped_column(String(16))  # portfolio|optout
    protected_id: Mapped[int]
    protected_key: Mapped[str] = mapped_column(String(80))  # the registry key the gate's match names
    protected_owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    evidence: Mapped[dict[str, Any]]
    prior_review_state: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default="open", index=True)  # open|upheld|overridden
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[datetime | None]
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    note: Mapped[str] = mapped_column(Text, default="")


class Dispute(Base):
    """Someone claims that a verified work is theirs. The work stays protected (for its owner) while the
    dispute is open; an admin keeps it with the owner or transfers it to the claimant."""

    __tablename__ = "disputes"

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("portfolio_items.id"), index=True)
    claimant_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"))  # the owner when the claim was made
    evidence_url: Mapped[str | None] = mapped_column(String(2048))
    note: Mapped[str] = mapped_column(Text, default="")
    files: Mapped[list[Any]] = mapped_column(JSON)  # [{"name", "sha256", "bytes"}], stored as blobs
    state: Mapped[str] = mapped_column(String(16), default="open", index=True)  # open|kept|transferred
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[datetime | None]
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decision_note: Mapped[str] = mapped_column(Text, default="")
    new_item_id: Mapped[int | None] = mapped_column(ForeignKey("portfolio_items.id"))  # the claimant's, if moved


class AuditEntry(Base):
    """Append-only, hash-chained. See mimicsafe.audit for how the chain is built and verified."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(unique=True)
    created_at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64), index=True)
    subject: Mapped[str] = mapped_column(String(255))
    details: Mapped[dict[str, Any]]
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """One row: the last sequence number and hash. Locking it serialises appends; it also reveals a
    deleted tail of the log."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(default=0)
    entry_hash: Mapped[str] = mapped_column(String(64))
