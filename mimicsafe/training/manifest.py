"""The dataset manifest, and the only loader that feeds images to the trainer.

A manifest lists exactly which of an artist's uploads a job may read: upload id, SHA-256, caption and
the gate policy version, hashed as a whole (`manifest_sha256`). It is made from `eligible_uploads` when a
job is submitted and stored in a `Dataset` row.

`load_items` is called when a job starts (and again when it resumes). It refuses the whole dataset,
naming the item, if
- the manifest no longer hashes to its recorded SHA-256;
- the artist's account is disabled or they withdrew consent;
- an upload was deleted, or its review was overturned (no longer accepted or admin-approved), or a
  work protected later matches it (suspended by a re-scan, `mimicsafe.trust`);
- an upload was accepted only on a signature whose key has since been revoked;
- an image now matches another artist's verified work, the opt-out registry or a generated image
  that it did not match when it was accepted (an admin's explicit override covers only the matches
  they saw, at the gate or after a re-scan);
- the stored bytes differ from the SHA-256 (the blob store verifies every read).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mimicsafe.blobs import BlobStore
from mimicsafe.db.models import ArtistKey, Dataset, DatasetUpload, Upload, User
from mimicsafe.errors import BlobError, NotFoundError, ValidationFailed
from mimicsafe.imaging import decode_limits, fingerprint_of
from mimicsafe.registry import Registry
from mimicsafe.settings import Settings
from mimicsafe.training.errors import DatasetRefused
from mimicsafe.training.items import TrainingItem
from mimicsafe.trust.suspension import overridden_keys
from mimicsafe.uploads import eligible_uploads
from ownership import reasons
from ownership.decode import decode_image
from ownership.errors import DecodeError
from ownership.policy import POLICY_VERSION

MANIFEST_FORMAT = "mimicsafe.dataset/1"
_KEY_IN_DETAIL = re.compile(r"key (SHA256:[A-Za-z0-9+/=]+)")


def manifest_sha256(manifest: Mapping[str, Any]) -> str:
    canonical = json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _label(item: Mapping[str, Any]) -> str:
    return f"upload {item['upload_id']} ({item['file_name']})"


def build_manifest(*, session: Session, user: User, captions: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The manifest of the artist's currently eligible uploads.

    `captions` maps a file name or its stem (`cat.png` or `cat`, as a `cat.txt` beside it would) to a
    caption; otherwise an upload's stored caption is used, else none (the trainer's default caption).
    """
    captions = dict(captions or {})
    items = []
    for upload in eligible_uploads(session=session, user_id=user.id):
        stem = upload.file_name.rsplit(".", 1)[0]
        caption = captions.get(upload.file_name, captions.get(stem, upload.caption))
        items.append({
            "upload_id": upload.id,
            "sha256": upload.sha256,
            "file_name": upload.file_name,
            "caption": caption.strip() if caption else None,
            "proof": sorted(r["code"] for r in upload.verdict.get("reasons", [])
                            if r["code"] in (reasons.PORTFOLIO_MATCH, reasons.VALID_SIGNATURE)),
            "review_state": upload.review_state,
        })
    if not items:
        raise ValidationFailed(f"{user.username} has no accepted uploads to train on: upload your own work first "
                               "(it must pass the ownership gate or be approved by an admin)")
    return {"format": MANIFEST_FORMAT, "artist": user.username, "user_id": user.id,
            "policy_version": POLICY_VERSION, "items": items}


def dataset_row(user: User, manifest: dict[str, Any]) -> Dataset:
    """A Dataset row for this manifest, not yet added to any session."""
    return Dataset(user_id=user.id, manifest=manifest, manifest_sha256=manifest_sha256(manifest),
                   item_count=len(manifest["items"]), policy_version=manifest["policy_version"])


def store_dataset(*, session: Session, user: User, manifest: dict[str, Any]) -> Dataset:
    """The Dataset row for this manifest (reused when the same artist trains on the same set again)."""
    dataset = dataset_row(user, manifest)
    existing = session.scalar(select(Dataset).where(Dataset.manifest_sha256 == dataset.manifest_sha256))
    if existing is not None:
        if existing.user_id != user.id:  # impossible unless hashes collide: the manifest names the artist
            raise DatasetRefused("a dataset with this manifest belongs to another account")
        return existing
    session.add(dataset)
    session.flush()
    session.add_all(DatasetUpload(dataset_id=dataset.id, upload_id=upload_id)
                    for upload_id in sorted({int(item["upload_id"]) for item in manifest["items"]}))
    session.flush()
    return dataset


def load_items(*, session: Session, blobs: BlobStore, registry: Registry, settings: Settings,
               dataset: Dataset) -> list[TrainingItem]:
    """Every item of the dataset, checked again now; raises `DatasetRefused` naming the first bad item."""
    manifest = dataset.manifest
    if manifest_sha256(manifest) != dataset.manifest_sha256:
        raise DatasetRefused(f"dataset {dataset.id}: the manifest no longer matches its SHA-256; it was "
                             "changed after it was made. Submit a new training job.")
    user = session.get(User, dataset.user_id)
    if user is None or manifest.get("user_id") != user.id:
        raise DatasetRefused(f"dataset {dataset.id} does not belong to the account it names")
    if user.disabled:
        raise DatasetRefused(f"{user.username}'s account is disabled; training is stopped")
    if user.consent_withdrawn_at is not None:
        raise DatasetRefused(f"{user.username} withdrew consent; their art is no longer trained on")
    revoked = set(session.scalars(select(ArtistKey.fingerprint).where(
        ArtistKey.user_id == user.id, ArtistKey.revoked_at.is_not(None))))
    return [_load_one(session, blobs, registry, settings, user, item, revoked) for item in manifest["items"]]


def _load_one(session: Session, blobs: BlobStore, registry: Registry, settings: Settings, user: User,
              item: Mapping[str, Any], revoked_keys: set[str]) -> TrainingItem:
    label = _label(item)
    upload = session.get(Upload, item["upload_id"])
    if upload is None or upload.user_id != user.id or upload.sha256 != item["sha256"]:
        raise DatasetRefused(f"{label} is not {user.username}'s upload with that content", item=label)
    if upload.deleted_at is not None:
        raise DatasetRefused(f"{label} was deleted", item=label)
    if upload.suspended_at is not None:
        raise DatasetRefused(f"{label} is suspended, under review: it matches a work that became protected "
                             "for someone else", item=label)
    if not (upload.decision == "accepted" or upload.review_state == "overridden"):
        raise DatasetRefused(f"{label} is no longer eligible: its review is now {upload.review_state!r}", item=label)
    _check_keys(upload, label, revoked_keys)
    try:
        data = blobs.get(upload.sha256)
    except (BlobError, NotFoundError) as exc:
        raise DatasetRefused(f"{label}: the stored image differs from its SHA-256 or is missing ({exc})",
                             item=label) from None
    try:
        image = decode_image(data, decode_limits(settings))
    except DecodeError as exc:
        raise DatasetRefused(f"{label} cannot be decoded: {exc.code}: {exc.detail}", item=label) from None
    _check_new_matches(session, registry, settings, user, upload, label, image)
    return TrainingItem(upload_id=upload.id, sha256=upload.sha256, name=upload.file_name,
                        caption=item.get("caption"), rgb=image.rgb)


def _check_keys(upload: Upload, label: str, revoked_keys: set[str]) -> None:
    """An upload proven only by a signature loses its proof when that key is revoked."""
    if upload.decision == "rejected" and upload.review_state == "overridden":
        return  # an admin's decision, not the signature, made it eligible (overriding a later suspension
        # of an accepted upload judged the match, not the signature: the key still counts)
    codes = {r["code"]: r["detail"] for r in upload.verdict.get("reasons", [])}
    if reasons.PORTFOLIO_MATCH in codes or reasons.VALID_SIGNATURE not in codes:
        return
    match = _KEY_IN_DETAIL.search(codes[reasons.VALID_SIGNATURE])
    if match and match.group(1) in revoked_keys:
        raise DatasetRefused(f"{label} was accepted on a signature by key {match.group(1)}, which is now revoked",
                             item=label)


def _check_new_matches(session: Session, registry: Registry, settings: Settings, user: User, upload: Upload,
                       label: str,
                       image: Any) -> None:
    seen = {m["item_sha256"] for m in upload.verdict.get("matches", [])}
    seen |= overridden_keys(session, upload.id)  # matches an admin overrode after a re-scan
    for match in registry.search(session, fingerprint_of(image, settings), sha256=upload.sha256):
        if match.owner != user.username and match.item_sha256 not in seen:
            who = {"optout": "the do-not-train registry", "generated": "an image generated here"}.get(
                match.owner, "another artist's verified work")
            raise DatasetRefused(f"{label} now matches {who} ({match.method}); it can no longer be trained on",
                                 item=label)
