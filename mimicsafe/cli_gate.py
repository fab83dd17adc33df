"""CLI commands of the ownership gate: keys, sign, portfolio, optout, check, upload, review."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mimicsafe import index_builds
from mimicsafe import keys as keys_service
from mimicsafe import optout as optout_service
from mimicsafe import portfolio as portfolio_service
from mimicsafe import review as review_service
from mimicsafe import uploads as upload_service
from mimicsafe.cli import EXIT_BAD_INPUT, EXIT_REFUSED, app, emit, fail, state_of
from mimicsafe.context import Instance
from mimicsafe.errors import ValidationFailed
from mimicsafe.imaging import NamedFile
from ownership.index_store import BuildError, read_meta
from ownership.signatures import sign_manifest, write_keypair

keys_app = typer.Typer(help="Signing keys: generate, register, revoke.", no_args_is_help=True)
portfolio_app = typer.Typer(help="Portfolios: submit works, verify them (admin).", no_args_is_help=True)
optout_app = typer.Typer(help="The do-not-train registry.", no_args_is_help=True)
review_app = typer.Typer(help="The admin review queue of rejected uploads.", no_args_is_help=True)
index_app = typer.Typer(help="The persistent index build every process opens.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(portfolio_app, name="portfolio")
app.add_typer(optout_app, name="optout")
app.add_typer(review_app, name="review")
app.add_typer(index_app, name="index")

Files = Annotated[list[Path], typer.Argument(help="Image files.", exists=True, dir_okay=False, readable=True)]


def _read(paths: list[Path]) -> list[NamedFile]:
    return [NamedFile(name=p.name, data=p.read_bytes()) for p in paths]


def _dispatch_rescans(instance: Instance) -> list[int]:
    """After a commit that protected works: hand their re-scan to the job queue (a worker runs it)."""
    from mimicsafe.trust import rescan  # keeps `--help` fast

    return rescan.start(instance)


# keys ------------------------------------------------------------------------------------------------
@keys_app.command("generate")
def keys_generate(ctx: typer.Context,
                  out: Annotated[Path, typer.Option("--out", help="Directory for the key pair.")]) -> None:
    """Make an Ed25519 key pair: OUT/mimicsafe_ed25519 (0600) and OUT/mimicsafe_ed25519.pub."""
    state = state_of(ctx)
    try:
        private, public = write_keypair(out)
    except FileExistsError as exc:
        fail(f"{exc.filename or out} exists; refusing to overwrite a key", EXIT_BAD_INPUT)
    emit(state, {"private_key": str(private), "public_key": str(public)},
         f"private key: {private} (keep it secret)\npublic key:  {public} (register it: mimicsafe keys register)")


@keys_app.command("register")
def keys_register(ctx: typer.Context, username: str,
                  public_key_file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)]) -> None:
    """Register a public key (ours, or an OpenSSH ed25519 key) for USERNAME."""
    state = state_of(ctx)
    with state.instance().transaction() as session:
        key = keys_service.register_key(session=session, username=username,
                                        public_key_text=public_key_file.read_bytes(), actor="cli")
        emit(state, {"username": username, "fingerprint": key.fingerprint},
             f"registered {key.fingerprint} for {username}")


@keys_app.command("revoke")
def keys_revoke(ctx: typer.Context, username: str, fingerprint: str) -> None:
    """Revoke a key: signatures made with it no longer prove anything."""
    state = state_of(ctx)
    with state.instance().transaction() as session:
        keys_service.revoke_key(session=session, username=username, fingerprint=fingerprint, actor="cli")
    emit(state, {"username": username, "fingerprint": fingerprint, "revoked": True}, f"revoked {fingerprint}")


@keys_app.command("list")
def keys_list(ctx: typer.Context, username: str) -> None:
    """List USERNAME's keys."""
    state = state_of(ctx)
    with state.instance().transaction() as session:
        rows = [{"fingerprint": k.fingerprint, "revoked": k.revoked_at is not None}
                for k in keys_service.list_keys(session=session, username=username)]
    emit(state, {"keys": rows}, "\n".join(f"{r['fingerprint']} {'revoked' if r['revoked'] else ''}" for r in rows)
         or "no keys")


# sign ------------------------------------------------------------------------------------------------
@app.command("sign")
def sign(
    ctx: typer.Context,
    files: Files,
    key: Annotated[Path, typer.Option("--key", help="Private key file.", exists=True, dir_okay=False)],
    artist: Annotated[str, typer.Option("--artist", help="Your username.")],
    out: Annotated[Path | None, typer.Option("--out", help="Manifest file (default: mimicsafe-manifest.json).")] = None,
) -> None:
    """Write one signed manifest for a batch of files (works offline; needs no account access)."""
    state = state_of(ctx)
    out = out or Path("mimicsafe-manifest.json")
    try:
        manifest = sign_manifest(private_key_path_or_bytes=key, artist=artist, files=list(files))
    except Exception as exc:  # a wrong or locked key file, a bad name: explain, do not trace back
        fail(f"could not sign: {getattr(exc, 'detail', exc)}", EXIT_BAD_INPUT)
    out.write_bytes(manifest)
    emit(state, {"manifest": str(out), "files": len(files)}, f"signed {len(files)} file(s) into {out}")


# portfolio -------------------------------------------------------------------------------------------
@portfolio_app.command("add")
def portfolio_add(ctx: typer.Context, username: str, files: Files,
                  evidence: Annotated[str | None, typer.Option(
                      "--evidence", help="Where the works were first published.")] = None) -> None:
    """Submit works to USERNAME's portfolio; they protect nothing until an admin verifies them."""
    state = state_of(ctx)
    instance = state.instance()
    with instance.transaction() as session:
        items = portfolio_service.add_items(session=session, blobs=instance.blobs, settings=instance.settings,
                                            username=username, files=_read(files), evidence_url=evidence, actor="cli")
        rows = [{"id": i.id, "file": i.file_name, "sha256": i.sha256, "status": i.status} for i in items]
    emit(state, {"items": rows}, "\n".join(f"#{r['id']} {r['file']}: {r['status']}" for r in rows))


@portfolio_app.command("verify")
def portfolio_verify(ctx: typer.Context, username: str,
                     admin: Annotated[str, typer.Option("--admin", help="The admin approving.")],
                     note: Annotated[str, typer.Option("--note", help="Why (e.g. what evidence was checked).")] = "",
                     item: Annotated[list[int] | None,
                                     typer.Option("--item", help="Only these item ids.")] = None) -> None:
    """Verify USERNAME's pending works: from now on they are protected for everyone."""
    state = state_of(ctx)
    instance = state.instance()
    with instance.transaction() as session:
        verified, refused = portfolio_service.verify_items(session=session, registry=instance.registry,
                                                           username=username, admin=admin, note=note, item_ids=item)
        refused_rows = [{"id": i.id, "reason": why} for i, why in refused]
        payload: dict = {"verified": [i.id for i in verified], "refused": refused_rows}
    payload["rescans"] = _dispatch_rescans(instance) if verified else []
    lines = [f"verified {len(verified)} work(s) of {username}"] + [f"NOT verified #{i['id']}: {i['reason']}"
                                                                  for i in refused_rows]
    lines += [f"re-scan #{r} of the accepted uploads queued (mimicsafe rescan show {r})" for r in payload["rescans"]]
    emit(state, payload, "\n".join(lines))
    if refused:
        raise typer.Exit(EXIT_REFUSED)


@portfolio_app.command("deny")
def portfolio_deny(ctx: typer.Context, username: str,
                   admin: Annotated[str, typer.Option("--admin")],
                   note: Annotated[str, typer.Option("--note", help="Why the works are denied.")],
                   item: Annotated[list[int], typer.Option("--item", help="Item ids to deny.")]) -> None:
    """Deny pending works (they never become protected or proof)."""
    state = state_of(ctx)
    with state.instance().transaction() as session:
        denied = portfolio_service.deny_items(session=session, username=username, admin=admin, note=note, item_ids=item)
    emit(state, {"denied": [i.id for i in denied]}, f"denied {len(denied)} work(s)")


# optout ----------------------------------------------------------------------------------------------
@optout_app.command("add")
def optout_add(ctx: typer.Context, files: Files,
               source: Annotated[str, typer.Option("--source", help="Who asked, and how to reach them.")] = "") -> None:
    """Register works that must never be trained on (their fingerprints, not the images, are kept)."""
    state = state_of(ctx)
    instance = state.instance()
    with instance.transaction() as session:
        items = optout_service.add_files(session=session, settings=instance.settings, files=_read(files),
                                         source=source, actor="cli")
        ids = [i.id for i in items]
    rescans = _dispatch_rescans(instance)
    emit(state, {"added": ids, "rescans": rescans}, f"added {len(ids)} work(s) to the do-not-train registry; "
         f"re-scan of the accepted uploads queued: {', '.join(f'#{r}' for r in rescans)}")


@optout_app.command("import")
def optout_import(ctx: typer.Context, hash_list: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
                  source: Annotated[str, typer.Option("--source")] = "") -> None:
    """Import a hash list: lines `sha256:<hex>` or `pdq:<hex>`."""
    state = state_of(ctx)
    instance = state.instance()
    with instance.transaction() as session:
        items = optout_service.import_hashes(session=session, text=hash_list.read_text(errors="replace"),
                                             source=source or hash_list.name, actor="cli")
        count = len(items)
    rescans = _dispatch_rescans(instance)
    emit(state, {"added": count, "rescans": rescans}, f"imported {count} hash(es); re-scan of the accepted uploads "
         f"queued: {', '.join(f'#{r}' for r in rescans)}")


# check / upload ---------------------------------------------------------------------------------------
SignatureOpt = Annotated[list[Path] | None, typer.Option(
    "--signature", help="A manifest from `mimicsafe sign` or FILE.sig from ssh-keygen -Y sign (repeatable).",
    exists=True, dir_okay=False)]


def _print_outcomes(state, outcomes: list[upload_service.Outcome]) -> None:  # type: ignore[no-untyped-def]
    payload = [o.to_json() for o in outcomes]
    lines = []
    for o in outcomes:
        v = o.evidence.verdict
        lines.append(f"{v.file}: {v.decision.upper()}" + (f" (upload #{o.upload_id}, review: {o.review_state})"
                                                          if o.upload_id is not None else ""))
        lines += [f"  - {r.code}: {r.detail}" for r in v.reasons]
    emit(state, payload if len(payload) != 1 else payload[0], "\n".join(lines))  # type: ignore[arg-type]
    if any(o.evidence.verdict.decision == "rejected" for o in outcomes):
        raise typer.Exit(EXIT_REFUSED)


@app.command("check")
def check(ctx: typer.Context, username: str, files: Files, signature: SignatureOpt = None) -> None:
    """Run the gate on FILES as USERNAME's uploads; nothing is stored. Exit 1 if any is rejected."""
    state = state_of(ctx)
    instance = state.instance()
    with instance.reading() as session:  # stores nothing: no need to wait for the write lock
        outcomes = upload_service.check_files(session=session, registry=instance.registry, settings=instance.settings,
                                              username=username, files=_read(files), signatures=_read(signature or []))
    _print_outcomes(state, outcomes)


@app.command("upload")
def upload(ctx: typer.Context, username: str, files: Files, signature: SignatureOpt = None) -> None:
    """Upload FILES for USERNAME: verdicts stored; accepted files become training-eligible, rejected ones
    go to review. Exit 1 if any is rejected."""
    state = state_of(ctx)
    instance = state.instance()
    outcomes = upload_service.upload(instance=instance, username=username, files=_read(files),
                                     signatures=_read(signature or []))
    _print_outcomes(state, outcomes)


# review ----------------------------------------------------------------------------------------------
def _item_json(item: review_service.ReviewItem) -> dict:
    u = item.upload
    return {"upload_id": u.id, "artist": item.artist, "file": u.file_name, "sha256": u.sha256,
            "state": u.review_state, "times_sent": item.count, "verdict": u.verdict, "reasons": item.reason_codes,
            "suspensions": list(item.suspensions),
            "decisions": [{"action": d.action, "note": d.note, "at": d.created_at.isoformat()} for d in item.decisions]}


@review_app.command("list")
def review_list(ctx: typer.Context, admin: Annotated[str, typer.Option("--admin")],
                state_filter: Annotated[str, typer.Option(
                    "--state", help="pending, upheld, overridden or all.")] = "pending") -> None:
    """List the review queue."""
    state = state_of(ctx)
    if state_filter not in ("pending", "upheld", "overridden", "all"):
        raise ValidationFailed("--state: choose pending, upheld, overridden or all")
    with state.instance().transaction() as session:
        items = review_service.list_items(session=session, admin=admin,
                                          state=None if state_filter == "all" else state_filter)  # type: ignore[arg-type]
        rows = [_item_json(i) for i in items]
    text = "\n".join(f"#{r['upload_id']} {r['artist']}/{r['file']} [{r['state']}] "
                     + (f"(sent {r['times_sent']} times) " if r["times_sent"] > 1 else "")
                     + ", ".join(r["reasons"]) for r in rows)
    emit(state, {"items": rows}, text or "the review queue is empty")


@review_app.command("show")
def review_show(ctx: typer.Context, upload_id: int, admin: Annotated[str, typer.Option("--admin")]) -> None:
    """Show one rejected upload with its evidence and decisions."""
    state = state_of(ctx)
    with state.instance().transaction() as session:
        row = _item_json(review_service.show_item(session=session, admin=admin, upload_id=upload_id))
    lines = [f"upload #{row['upload_id']} by {row['artist']}: {row['file']} ({row['sha256']}) [{row['state']}]"]
    lines += [f"  reason {r['code']}: {r['detail']}" for r in row["verdict"]["reasons"]]
    lines += [f"  match {m['owner']} {m['method']} score {m['score']} kind {m.get('kind', 'copy')} "
              f"item {m['item_sha256']}" for m in row["verdict"]["matches"]]
    for s in row["suspensions"]:
        lines.append(f"  {s['reason']} [{s['state']}]: {s['protected']['kind']} #{s['protected']['id']} of "
                     f"{s['protected']['owner']} (re-scan {s['rescan_id']})")
        lines += [f"    match {m['method']} score {m['score']} kind {m.get('kind', 'copy')} item {m['item_sha256']}"
                  for m in s["matches"]]
    lines += [f"  decision {d['action']} at {d['at']}: {d['note']}" for d in row["decisions"]]
    emit(state, row, "\n".join(lines))


def _decide(ctx: typer.Context, upload_id: int, admin: str, note: str, action: str, override_match: bool) -> None:
    state = state_of(ctx)
    with state.instance().transaction() as session:
        item = review_service.decide(session=session, admin=admin, upload_id=upload_id, action=action,  # type: ignore[arg-type]
                                     note=note, override_match=override_match)
        row = _item_json(item)
    emit(state, row, f"upload #{upload_id}: {row['state']}")


@review_app.command("approve")
def review_approve(ctx: typer.Context, upload_id: int, admin: Annotated[str, typer.Option("--admin")],
                   note: Annotated[str, typer.Option("--note", help="Why the rejection is overridden (required).")],
                   override_match: Annotated[bool, typer.Option(
                       "--override-match", help="Confirm overriding a match with protected work.")] = False) -> None:
    """Override a rejection: the upload becomes training-eligible."""
    _decide(ctx, upload_id, admin, note, "approve", override_match)


@review_app.command("uphold")
def review_uphold(ctx: typer.Context, upload_id: int, admin: Annotated[str, typer.Option("--admin")],
                  note: Annotated[str, typer.Option("--note", help="Why the rejection stands (required).")]) -> None:
    """Uphold a rejection."""
    _decide(ctx, upload_id, admin, note, "uphold", False)





# index -----------------------------------------------------------------------------------------------
@index_app.command("build")
def index_build(ctx: typer.Context) -> None:
    """Write the index build of every registered work now and make it current (the worker keeps it
    current on its own; this is for a first build, or after a bulk import)."""
    state = state_of(ctx)
    info = index_builds.build_index(state.instance())
    emit(state, info.as_dict(), f"index build {info.name}: {info.works} works as of audit entry {info.position}, "
                                f"{info.bytes / 1e6:.1f} MB, {info.seconds:.1f} s")


@index_app.command("status")
def index_status(ctx: typer.Context) -> None:
    """The build in use, the audit position it covers, and the registry changes logged since."""
    state = state_of(ctx)
    instance = state.instance()
    path = index_builds.current_build(instance.settings)
    with instance.reading() as session:
        changes = index_builds.changes_since_build(instance.settings, session)
    payload: dict[str, object] = {"build": None if path is None else path.name, "changes_since": changes}
    if path is not None:
        try:
            meta = read_meta(path)
        except BuildError as exc:
            fail(str(exc), EXIT_BAD_INPUT)
        payload.update(position=meta["position"]["seq"], works=meta["works"])
    emit(state, payload, "no index build yet: processes load the tables" if path is None else
         f"index build {path.name}: {payload['works']} works as of audit entry {payload['position']}, "
         f"{changes} change(s) since")
