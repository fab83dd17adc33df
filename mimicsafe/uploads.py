"""Uploads: every file an artist offers for training passes the gate; the verdict is stored with it.

`check_files` runs the gate and stores nothing. `upload_files` stores the file (content-addressed, so
a retry after a crash reuses it) and then, in one transaction, the upload row, its verdict, its place
in the review queue and the audit entry — all of them or none.

The gate's expensive work (decoding, fingerprints and local features, metadata and C2PA, signature
checks) must not run while the write transaction is open: on SQLite that transaction holds the one
write lock, so one large upload would stall every other writer. `upload` (and `prepare_uploads` with
`upload_files(prepared=…)`, for callers that manage their own transactions) therefore judges each
file first, reading in read-only transactions, and only then opens the write transaction. There the
decision is made consistent with the state being committed: see `_still_holds`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from mimicsafe import audit
from mimicsafe.accounts import get_user
from mimicsafe.blobs import BlobStore
from mimicsafe.context import Instance
from mimicsafe.db.models import Upload, User, utcnow
from mimicsafe.errors import PermissionDenied, RateLimited
from mimicsafe.imaging import NamedFile, decode_limits, display_name
from mimicsafe.keys import registered_keys
from mimicsafe.registry import Registry
from mimicsafe.settings import Settings
from ownership import reasons
from ownership.fingerprint import Fingerprint
from ownership.policy import POLICY_VERSION, Evidence, Searchable, evaluate
from ownership.policy import Upload as GateUpload
from ownership.signatures import RegisteredKey, parse_manifest
from ownership.types import Match

# Rejections an admin cannot usefully override: there is no image to look at, or it is already in.
NOT_REVIEWABLE = {reasons.UNDECODABLE, reasons.TOO_LARGE, reasons.UNSUPPORTED_FORMAT, reasons.DUPLICATE}


@dataclass(frozen=True)
class Outcome:
    evidence: Evidence
    upload_id: int | None = None
    review_state: str = "none"

    def to_json(self) -> dict:
        payload = self.evidence.verdict.to_json()
        if self.upload_id is not None:
            payload["upload_id"] = self.upload_id
            payload["review"] = self.review_state
        return payload


@dataclass(frozen=True)
class Prepared:
    """One file judged before the write transaction, with every input the gate's decision used.

    The policy (`ownership.policy.evaluate`) is a pure function of the file, its signature, the match
    index's answer, the artist's keys and whether the file repeats an accepted upload. If those last
    three are unchanged when the write transaction runs, the verdict is the one evaluating it there
    would give."""

    file: NamedFile
    signature: bytes | None
    evidence: Evidence
    lookup: tuple[Fingerprint, str | None] | None  # what the gate searched for; None: it never got that far
    matches: tuple[Match, ...]
    keys: tuple[RegisteredKey, ...]
    duplicate: bool
    registry_position: int | None = None  # the audit log position the index answer reflects (or later)


def signature_for(file: NamedFile, signatures: Sequence[NamedFile]) -> bytes | None:
    """Which of the given signature files speaks for `file`: its `FILE.sig`, else a manifest that
    lists it, else the only signature given."""
    for sig in signatures:
        if sig.name == f"{file.name}.sig":
            return sig.data
    sha256 = hashlib.sha256(file.data).hexdigest()
    for sig in signatures:
        if sig.data.lstrip().startswith(b"{"):
            try:
                if parse_manifest(sig.data).entries_for(sha256):
                    return sig.data
            except Exception:  # a malformed manifest is judged by the gate, when it is the only one
                continue
    return signatures[0].data if len(signatures) == 1 else None


def _artist(session: Session, username: str) -> User:
    user = get_user(session=session, username=username)
    if user.disabled:
        raise PermissionDenied(f"account {username} is disabled")
    if user.consent_withdrawn_at is not None:
        raise PermissionDenied(f"{username} withdrew consent; uploads are closed for this account")
    return user


UPLOAD_WINDOW = timedelta(hours=1)


def require_upload_allowance(session: Session, settings: Settings, username: str, count: int) -> None:
    """Refuse a batch that would take the account past `uploads_per_hour` (rejected files count too).
    Counted from the stored uploads, so every web server, the CLI and the API share one limit."""
    _require_allowance(session, settings, get_user(session=session, username=username), count)


def _require_allowance(session: Session, settings: Settings, user: User, count: int) -> None:
    since = utcnow() - UPLOAD_WINDOW
    recent = session.scalar(select(func.count()).select_from(Upload).where(
        Upload.user_id == user.id, Upload.created_at >= since)) or 0
    if recent + count > settings.uploads_per_hour:
        left = max(settings.uploads_per_hour - recent, 0)
        raise RateLimited(f"upload limit reached: {settings.uploads_per_hour} files per hour per account; "
                          f"{recent} in the last hour, {left} left, {count} sent. Nothing was stored; "
                          "try again later or send fewer files")


def _review_item_for(session: Session, user_id: int, sha256: str) -> Upload | None:
    """The review item an artist's rejected file already has (same artist, same content), if any: a file
    sent again joins it instead of queueing another copy for an admin."""
    return session.scalar(select(Upload).where(
        Upload.user_id == user_id, Upload.sha256 == sha256, Upload.decision == "rejected",
        Upload.review_state != "none", Upload.repeat_of_id.is_(None)).order_by(Upload.id).limit(1))


def _accepted_shas(session: Session, user_id: int) -> set[str]:
    rows = session.scalars(select(Upload.sha256).where(
        Upload.user_id == user_id, Upload.deleted_at.is_(None), Upload.suspended_at.is_(None),
        or_(Upload.decision == "accepted", Upload.review_state == "overridden")))
    return set(rows)


class _Recording:
    """The index, remembering what the gate asked it and what it answered."""

    def __init__(self, index: Searchable) -> None:
        self._index = index
        self.lookup: tuple[Fingerprint, str | None] | None = None
        self.matches: tuple[Match, ...] = ()

    def search(self, fingerprint: Fingerprint, *, sha256: str | None = None) -> list[Match]:
        found = self._index.search(fingerprint, sha256=sha256)
        self.lookup, self.matches = (fingerprint, sha256), tuple(found)
        return found


class _Latest:
    """The registry as last committed, each look-up in a read-only transaction of its own, begun just
    before it. (A reader whose snapshot predates what the shared index has already applied would make
    the registry rebuild the index from the tables: `Registry._refresh`.)"""

    def __init__(self, instance: Instance) -> None:
        self._instance = instance
        self.position: int | None = None

    def search(self, fingerprint: Fingerprint, *, sha256: str | None = None) -> list[Match]:
        registry = self._instance.registry
        with self._instance.reading() as session:
            self.position = registry.position(session)  # read first: the search sees at least this much
            return registry.search(session, fingerprint, sha256=sha256)


def _judge(searchable: Searchable, settings: Settings, user: User, keys: Sequence[RegisteredKey],
           file: NamedFile, signature: bytes | None, previous: set[str]) -> Prepared:
    index = _Recording(searchable)
    evidence = evaluate(
        GateUpload(file_name=display_name(file.name), data=file.data, artist=user.username, signature=signature),
        index=index,
        artist_keys=keys,
        limits=decode_limits(settings),
        previous_uploads=previous,
        min_pdq_quality=settings.pdq_min_quality,
    )
    return Prepared(file, signature, evidence, index.lookup, index.matches, tuple(keys),
                    evidence.verdict.sha256 in previous)


def check_files(*, session: Session, registry: Registry, settings: Settings, username: str,
                files: Sequence[NamedFile], signatures: Sequence[NamedFile] = ()) -> list[Outcome]:
    """The gate's verdicts, nothing stored."""
    user = _artist(session, username)
    previous = _accepted_shas(session, user.id)
    keys = registered_keys(session=session, user_id=user.id)
    index = registry.snapshot(session)
    return [Outcome(_judge(index, settings, user, keys, f, signature_for(f, signatures), previous).evidence)
            for f in files]


def prepare_uploads(*, instance: Instance, username: str, files: Sequence[NamedFile],
                    signatures: Sequence[NamedFile] = ()) -> list[Prepared]:
    """The gate's work for `upload_files`, outside any write transaction: what it reads, it reads in
    short read-only transactions. Each file within the upload limit is stored first: a crash later
    leaves a whole blob that the retry reuses, never a half one (see mimicsafe/blobs.py)."""
    settings = instance.settings
    with instance.reading() as session:
        user = _artist(session, username)
        _require_allowance(session, settings, user, len(files))  # before any expensive work
        previous = _accepted_shas(session, user.id)
        keys = registered_keys(session=session, user_id=user.id)
    prepared = []
    for file in files:
        if len(file.data) <= settings.max_upload_bytes:
            instance.blobs.put(file.data)
        latest = _Latest(instance)
        judged = _judge(latest, settings, user, keys, file, signature_for(file, signatures), previous)
        prepared.append(replace(judged, registry_position=latest.position))
    return prepared


def _still_holds(session: Session, registry: Registry, prepared: Prepared, keys: Sequence[RegisteredKey],
                 previous: set[str]) -> bool:
    """Would the gate decide the same now, inside the write transaction? The inputs that can change
    between the read and the write are compared: the artist's keys (one may have been revoked), whether
    the file now repeats an accepted upload (the same file sent twice at once), and — the one that
    matters most — the index's answer for the same fingerprint, looked up again here. On SQLite this
    transaction holds the write lock, so the look-up sees every work verified before it and none can
    be verified until it commits: a work verified between the read and the write is never missed. On
    PostgreSQL the look-up sees what was committed when it runs, as it did when the whole gate ran in
    this transaction; what remains is the window between this look-up and the commit, which was there
    before and is now shorter. The look-up runs only when the registry changed since the prepared one
    (`Registry.changed_since`): usually nothing was verified in between, and the search stays outside
    the lock."""
    if set(keys) != set(prepared.keys) or (prepared.evidence.verdict.sha256 in previous) != prepared.duplicate:
        return False
    if prepared.lookup is None:  # not decodable: no index answer, keys or history can change that verdict
        return True
    if prepared.registry_position is not None and not registry.changed_since(session, prepared.registry_position):
        return True
    fingerprint, sha256 = prepared.lookup
    return tuple(registry.search(session, fingerprint, sha256=sha256)) == prepared.matches


def upload_files(*, session: Session, blobs: BlobStore, registry: Registry, settings: Settings, username: str,
                 files: Sequence[NamedFile], signatures: Sequence[NamedFile] = (),
                 prepared: Sequence[Prepared] | None = None) -> list[Outcome]:
    """Run the gate and store each file with its verdict. Accepted files become training-eligible;
    rejected ones (that an admin can judge) enter the review queue.

    With `prepared` (from `prepare_uploads`, for the same files) the verdicts judged there are reused
    when their inputs still hold, and judged again here when not; otherwise the gate runs here."""
    user = _artist(session, username)  # again: the account may have been disabled since it was prepared
    _require_allowance(session, settings, user, len(files))  # again, under the lock: exact
    previous = _accepted_shas(session, user.id)
    keys = registered_keys(session=session, user_id=user.id)
    if prepared is not None and [p.file for p in prepared] != list(files):
        raise ValueError("prepared: not the files being uploaded")
    outcomes = []
    for i, file in enumerate(files):
        ready = prepared[i] if prepared is not None else None
        if ready is None or not _still_holds(session, registry, ready, keys, previous):
            # the prepared entry's signature was found (and its file hashed) once already
            signature = ready.signature if ready is not None else signature_for(file, signatures)
            ready = _judge(registry.snapshot(session), settings, user, keys, file, signature, previous)
        evidence = ready.evidence
        verdict = evidence.verdict
        if prepared is None and len(file.data) <= settings.max_upload_bytes:
            blobs.put(file.data)  # before the row: a crash leaves only a blob (`prepare_uploads` stored it already)
        codes = {r.code for r in verdict.reasons}
        review = "pending" if verdict.decision == "rejected" and not codes & NOT_REVIEWABLE else "none"
        # The same rejected file again: one review item per artist and content, which counts its copies.
        item = _review_item_for(session, user.id, verdict.sha256) if review == "pending" else None
        row = Upload(user_id=user.id, sha256=verdict.sha256, file_name=display_name(file.name),
                     size_bytes=len(file.data),
                     decision=verdict.decision, verdict=verdict.to_json(), policy_version=POLICY_VERSION,
                     review_state="none" if item is not None else review,
                     repeat_of_id=item.id if item is not None else None,
                     # kept so that a work protected later can find this upload (mimicsafe.trust)
                     fingerprint=ready.lookup[0].to_bytes() if ready.lookup is not None else None)
        session.add(row)
        session.flush()
        details = {"upload_id": row.id, "sha256": verdict.sha256, "reasons": sorted(codes), "review": review}
        if item is not None:
            details["repeat_of"] = item.id
        audit.append(session, actor=username, action=f"upload.{verdict.decision}", subject=username, details=details)
        if verdict.decision == "accepted":
            previous.add(verdict.sha256)
        outcomes.append(Outcome(evidence, row.id, item.review_state if item is not None else review))
    return outcomes


def upload(*, instance: Instance, username: str, files: Sequence[NamedFile],
           signatures: Sequence[NamedFile] = ()) -> list[Outcome]:
    """`upload_files` with the gate's work done before the write transaction: what the app and the CLI
    call. The files are one unit: their rows and audit entries are committed together or not at all."""
    prepared = prepare_uploads(instance=instance, username=username, files=files, signatures=signatures)
    with instance.transaction() as session:
        return upload_files(session=session, blobs=instance.blobs, registry=instance.registry,
                            settings=instance.settings, username=username, files=files, signatures=signatures,
                            prepared=prepared)


def review_states(session: Session, rows: Sequence[Upload]) -> dict[int, str]:
    """Each upload's review state as its artist should read it: a repeat has its first copy's."""
    firsts = {r.repeat_of_id for r in rows if r.repeat_of_id is not None}
    state_of: dict[int, str] = {}
    if firsts:
        for upload_id, state in session.execute(select(Upload.id, Upload.review_state).where(Upload.id.in_(firsts))):
            state_of[upload_id] = state
    return {r.id: state_of.get(r.repeat_of_id, r.review_state) if r.repeat_of_id else r.review_state for r in rows}


def eligible_uploads(*, session: Session, user_id: int) -> list[Upload]:
    """What may enter this artist's training set: accepted by the gate, or overridden by an admin, and not
    suspended since (a work protected later matches it: mimicsafe.trust)."""
    return list(session.scalars(select(Upload).where(
        Upload.user_id == user_id, Upload.deleted_at.is_(None), Upload.suspended_at.is_(None),
        or_(Upload.decision == "accepted", Upload.review_state == "overridden")).order_by(Upload.id)))
