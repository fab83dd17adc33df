"""CLI commands of trust over time: re-scans (list, show, run), disputes (open, list, show, decide), lineage."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mimicsafe.accounts import get_user
from mimicsafe.cli import app, emit, state_of
from mimicsafe.db.models import Rescan
from mimicsafe.errors import NotFoundError
from mimicsafe.imaging import NamedFile
from mimicsafe.trust import disputes, rescan
from mimicsafe.trust import lineage as lineage_service

rescan_app = typer.Typer(help="Re-scans of the accepted uploads against newly protected works.", no_args_is_help=True)
dispute_app = typer.Typer(help="Claims that a verified work belongs to someone else; an admin decides.",
                          no_args_is_help=True)
app.add_typer(rescan_app, name="rescan")
app.add_typer(dispute_app, name="dispute")


def _line(p: dict) -> str:
    return (f"re-scan #{p['rescan_id']} ({p['trigger']}): {p['status']}, {p['position']}/{p['total']} work(s) done, "
            f"{p['suspended']} upload(s) suspended" + (f" — {p['error']}" if p["error"] else ""))


@rescan_app.command("list")
def rescan_list(ctx: typer.Context,
                limit: Annotated[int, typer.Option("--limit", min=1, help="The newest N.")] = 20) -> None:
    """The newest re-scans with their progress."""
    state = state_of(ctx)
    with state.instance().reading() as session:
        rows = [rescan.progress(r) for r in rescan.list_rescans(session, limit=limit)]
    emit(state, {"rescans": rows}, "\n".join(_line(r) for r in rows) or "no re-scans yet")


@rescan_app.command("show")
def rescan_show(ctx: typer.Context, rescan_id: int) -> None:
    """One re-scan's progress."""
    state = state_of(ctx)
    with state.instance().reading() as session:
        row = session.get(Rescan, rescan_id)
        if row is None:
            raise NotFoundError(f"re-scan {rescan_id} does not exist")
        payload = rescan.progress(row)
    emit(state, payload, _line(payload))


@rescan_app.command("run")
def rescan_run(ctx: typer.Context, rescan_id: int) -> None:
    """Run (or resume) a re-scan in this process, e.g. where no worker runs; a finished one is left as it is."""
    state = state_of(ctx)
    instance = state.instance()
    with instance.reading() as session:
        if session.get(Rescan, rescan_id) is None:
            raise NotFoundError(f"re-scan {rescan_id} does not exist")
    payload = rescan.run(instance, rescan_id)
    emit(state, payload, _line(payload))


@app.command("lineage")
def lineage(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(help="work, upload, dataset, model or generation.")],
    item_id: Annotated[int, typer.Argument(help="The row id (a work is a portfolio item).")],
    admin: Annotated[str, typer.Option("--admin", help="The admin asking (lineage names artists).")],
) -> None:
    """What was built on what, both ways, with states: works, uploads, datasets, models, generations."""
    state = state_of(ctx)
    with state.instance().reading() as session:
        found = lineage_service.lineage(session=session, admin=admin, kind=kind, item_id=item_id)
    emit(state, found.to_json(), found.text())


# disputes ---------------------------------------------------------------------------------------------
def _dispute_text(d: dict) -> str:
    head = f"dispute #{d['dispute_id']} on work #{d['work_id']} by {d['claimant']}: {d['state']}"
    lines = [head, f"  claim ({d['claim']['at']}): {d['claim']['note']}",
             f"  evidence: {d['claim']['evidence_url'] or '-'}; files: "
             + (", ".join(f"{f['name']} ({f['sha256'][:12]})" for f in d["claim"]["files"]) or "-")]
    if "owner" in d:
        w = d["work"]
        lines += [f"  owner {d['owner']}: {w['file']} ({w['sha256'][:12]}), submitted {w['submitted_at']}, "
                  f"verified {w['verified_at']}; evidence: {w['evidence_url'] or '-'}; note: {w['note'] or '-'}"]
    if d["decided_at"]:
        lines.append(f"  decided {d['decided_at']}: {d['decision_note']}")
    return "\n".join(lines)


@dispute_app.command("open")
def dispute_open(
    ctx: typer.Context,
    work_id: Annotated[int, typer.Argument(help="The verified work (portfolio item) claimed.")],
    by: Annotated[str, typer.Option("--by", help="The claimant's username.")],
    note: Annotated[str, typer.Option("--note", help="Why it is yours.")],
    evidence: Annotated[str | None, typer.Option("--evidence", help="Where you published it first.")] = None,
    file: Annotated[list[Path] | None, typer.Option("--file", help="Evidence file (repeatable).", exists=True,
                                                    dir_okay=False)] = None,
) -> None:
    """Claim that WORK_ID is yours; it stays protected for its owner until an admin decides."""
    state = state_of(ctx)
    instance = state.instance()
    files = [NamedFile(p.name, p.read_bytes()) for p in file or []]
    with instance.transaction() as session:
        row = disputes.open_dispute(session=session, blobs=instance.blobs, settings=instance.settings,
                                    work_id=work_id, claimant=by, evidence_url=evidence, note=note, files=files)
        payload = disputes.show_dispute(session=session, actor=by, dispute_id=row.id).to_json(for_admin=False)
    emit(state, payload, _dispute_text(payload))


@dispute_app.command("list")
def dispute_list(
    ctx: typer.Context,
    actor: Annotated[str, typer.Option("--as", help="Who asks: an admin sees all, anyone else their own claims.")],
    only: Annotated[str | None, typer.Option("--state", help="open, kept or transferred.")] = None,
) -> None:
    """List disputes."""
    state = state_of(ctx)
    with state.instance().reading() as session:
        admin = get_user(session=session, username=actor).role == "admin"
        rows = [v.to_json(for_admin=admin) for v in disputes.list_disputes(session=session, actor=actor, state=only)]
    emit(state, {"disputes": rows}, "\n".join(_dispute_text(r).splitlines()[0] for r in rows) or "no disputes")


@dispute_app.command("show")
def dispute_show(ctx: typer.Context, dispute_id: int,
                 actor: Annotated[str, typer.Option("--as", help="An admin (both sides), or the claimant.")]) -> None:
    """Show a dispute: to an admin, the claim beside the owner's evidence."""
    state = state_of(ctx)
    with state.instance().reading() as session:
        admin = get_user(session=session, username=actor).role == "admin"
        payload = disputes.show_dispute(session=session, actor=actor, dispute_id=dispute_id).to_json(for_admin=admin)
    emit(state, payload, _dispute_text(payload))


@dispute_app.command("decide")
def dispute_decide(
    ctx: typer.Context,
    dispute_id: int,
    decision: Annotated[str, typer.Argument(help="keep (the owner keeps it) or transfer (to the claimant).")],
    admin: Annotated[str, typer.Option("--admin")],
    note: Annotated[str, typer.Option("--note", help="Why (required; audited).")],
) -> None:
    """Decide a dispute. A transfer re-scans the accepted uploads against the work under its new owner."""
    state = state_of(ctx)
    instance = state.instance()
    with instance.transaction() as session:
        payload = disputes.decide(session=session, admin=admin, dispute_id=dispute_id, action=decision,  # type: ignore[arg-type]
                                  note=note).to_json(for_admin=True)
    payload["rescans"] = rescan.start(instance) if payload["state"] == "transferred" else []
    emit(state, payload, _dispute_text(payload))
