"""CLI commands of trust over time: re-scans (list, show, run) and lineage."""

from __future__ import annotations

from typing import Annotated

import typer

from mimicsafe.cli import app, emit, state_of
from mimicsafe.db.models import Rescan
from mimicsafe.errors import NotFoundError
from mimicsafe.trust import lineage as lineage_service
from mimicsafe.trust import rescan

rescan_app = typer.Typer(help="Re-scans of the accepted uploads against newly protected works.", no_args_is_help=True)
app.add_typer(rescan_app, name="rescan")


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
