"""The do-not-train registry, for people who never use the app: add their files, or import hash lists."""

from __future__ import annotations

import hashlib
import re

from sqlalchemy.orm import Session

from mimicsafe import audit
from mimicsafe.db.models import OptOutItem
from mimicsafe.errors import ValidationFailed
from mimicsafe.imaging import NamedFile, fingerprint_or_refuse
from mimicsafe.registry import OPTOUT_ADDED
from mimicsafe.settings import Settings
from mimicsafe.trust import rescan

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def add_files(*, session: Session, settings: Settings, files: list[NamedFile], source: str,
              actor: str) -> list[OptOutItem]:
    """Register whole works: exact bytes and fingerprints (so altered copies are caught too).

    The images themselves are not kept: the registry needs only their fingerprints.
    """
    fingerprints = [fingerprint_or_refuse(f, settings) for f in files]
    items = [OptOutItem(sha256=hashlib.sha256(f.data).hexdigest(), pdq=fp.pdq, pdq_quality=fp.pdq_quality,
                        fingerprint=fp.to_bytes(), source=source)
             for f, fp in zip(files, fingerprints, strict=True)]
    return _store(session, items, actor=actor, source=source)


def import_hashes(*, session: Session, text: str, source: str, actor: str) -> list[OptOutItem]:
    """Import a list of hashes, one per line: `sha256:<64 hex>` or `pdq:<64 hex>` (`#` starts a comment).

    A SHA-256 catches only the identical file; a PDQ catches re-encoded, resized and recoloured copies.
    """
    items = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip().lower()
        if not line:
            continue
        kind, _, value = line.partition(":")
        if kind not in ("sha256", "pdq") or not _HEX64.match(value):
            raise ValidationFailed(f"line {number}: expected 'sha256:<64 hex digits>' or 'pdq:<64 hex digits>', "
                                   f"got {raw.strip()[:80]!r}")
        if kind == "sha256":
            items.append(OptOutItem(sha256=value, source=source))
        else:
            items.append(OptOutItem(pdq=bytes.fromhex(value), pdq_quality=100, source=source))
    if not items:
        raise ValidationFailed("the hash list holds no hashes")
    return _store(session, items, actor=actor, source=source)


def _store(session: Session, items: list[OptOutItem], *, actor: str, source: str) -> list[OptOutItem]:
    session.add_all(items)
    session.flush()
    audit.append(session, actor=actor, action=OPTOUT_ADDED, subject="optout",
                 details={"item_ids": [i.id for i in items], "source": source})
    # every accepted upload is checked against them by a re-scan job (dispatched after the commit)
    rescan.request(session, trigger=OPTOUT_ADDED, actor=actor, items=[("optout", i.id) for i in items])
    return items
