"""CLI commands of training: train, jobs (list/show/cancel), lora (list/export/delete/retrain).

The operator acts for the artist named on the command line: the services check that the job or model
belongs to that artist (or that the name is an admin's).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from mimicsafe.cli import EXIT_REFUSED, app, emit, fail, state_of
from mimicsafe.training import service

jobs_app = typer.Typer(help="Training jobs: list, show progress, cancel.", no_args_is_help=True)
lora_app = typer.Typer(help="Trained LoRA models: list, export, delete, retrain a suspended one.",
                       no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")
app.add_typer(lora_app, name="lora")

POLL_S = 0.5
# A queued job nobody has claimed after this long most likely has no worker: say so once (and keep waiting).
NO_WORKER_WARN_S = 10.0


def _read_captions(folder: Path | None) -> dict[str, str] | None:
    if folder is None:
        return None
    return {path.stem: path.read_text(encoding="utf-8").strip() for path in sorted(folder.glob("*.txt"))}


def _job_text(view: dict[str, Any]) -> str:
    loss = f"{view['loss']:.4f}" if view["loss"] is not None else "-"
    eta = f"{view['eta_seconds']:.0f}s" if view["eta_seconds"] is not None else "-"
    where = f", queue position {view['queue_position']}" if view["queue_position"] else ""
    text = f"job {view['job_id']} ({view['artist']}): {view['status']}{where}, step {view['step']}/" \
           f"{view['total_steps']}, loss {loss}, eta {eta}"
    if view["model_id"] is not None:
        text += f", model {view['model_id']}"
    if view["error"]:
        text += f"\n  error: {view['error']}"
    return text


def follow(view: dict[str, Any], read_view: Callable[[], dict[str, Any]], *, echo: Callable[[str], None],
           clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Poll a job until it finishes, echoing each new step, and warn once if no worker claims it."""
    started, last_step, warned = clock(), view["step"], False
    while view["status"] not in service.FINISHED:
        sleep(POLL_S)
        view = read_view()
        if view["step"] != last_step:
            last_step = view["step"]
            echo(_job_text(view))
        if view["status"] == "queued" and not warned and clock() - started >= NO_WORKER_WARN_S:
            warned = True
            echo(f"warning: no worker has started job {view['job_id']} after {NO_WORKER_WARN_S:.0f} s. Is one "
                 "running? Start one with `mimicsafe worker` (or `mimicsafe serve`) on this instance; this command "
                 "keeps waiting (Ctrl-C stops waiting, the job stays queued).")
    return view


@app.command("train")
def train(
    ctx: typer.Context,
    username: str,
    preset: Annotated[str, typer.Option("--preset", help="tiny, sd15 or sdxl (configs/presets/).")] = "tiny",
    steps: Annotated[int | None, typer.Option("--steps", min=1,
                                              help="Optimizer steps (default: the preset's).")] = None,
    captions: Annotated[Path | None, typer.Option("--captions", exists=True, file_okay=False,
                                                  help="Folder of NAME.txt captions for uploads named NAME.*")] = None,
    wait: Annotated[bool, typer.Option("--wait",
                                       help="Follow the job until it ends (a worker must be running).")] = False,
) -> None:
    """Queue a LoRA training on USERNAME's accepted uploads (run `mimicsafe worker` or `serve` to process it)."""
    from mimicsafe.jobs import build_queue

    state = state_of(ctx)
    instance = state.instance()
    job = service.submit_training(instance=instance, queue=build_queue(instance), username=username, actor=username,
                                  preset=preset, steps=steps, captions=_read_captions(captions))
    with instance.reading() as session:
        view = service.get_job(session=session, job_id=job.id, actor=username).to_json()
    if not wait:
        emit(state, view, _job_text(view))
        return
    typer.echo(_job_text(view), err=True)

    def read_view() -> dict[str, Any]:
        with instance.reading() as session:
            return service.get_job(session=session, job_id=job.id, actor=username).to_json()

    view = follow(view, read_view, echo=lambda text: typer.echo(text, err=True))
    emit(state, view, _job_text(view))
    if view["status"] != "completed":
        raise typer.Exit(EXIT_REFUSED)


@jobs_app.command("list")
def jobs_list(ctx: typer.Context, username: str) -> None:
    """List USERNAME's training jobs, newest first."""
    state = state_of(ctx)
    with state.instance().reading() as session:
        views = [v.to_json() for v in service.list_jobs(session=session, username=username, actor=username)]
    emit(state, {"jobs": views}, "\n".join(_job_text(v) for v in views) or "no training jobs")


@jobs_app.command("show")
def jobs_show(ctx: typer.Context, username: str, job_id: int) -> None:
    """Progress of one of USERNAME's jobs: step, loss, ETA, queue position, samples."""
    state = state_of(ctx)
    with state.instance().reading() as session:
        view = service.get_job(session=session, job_id=job_id, actor=username).to_json()
    emit(state, view, _job_text(view))


@jobs_app.command("cancel")
def jobs_cancel(ctx: typer.Context, username: str, job_id: int) -> None:
    """Cancel a queued job, or stop a running one after its current step (its last checkpoint is kept)."""
    state = state_of(ctx)
    with state.instance().transaction() as session:
        job = service.cancel_job(session=session, job_id=job_id, actor=username)
        payload = {"job_id": job.id, "status": job.status, "cancel_requested": job.cancel_requested}
    emit(state, payload, f"job {job_id}: {payload['status']}"
         + (" (stops after the current step)" if payload["status"] == "running" else ""))


@lora_app.command("list")
def lora_list(ctx: typer.Context, username: str) -> None:
    """List USERNAME's trained LoRA models."""
    state = state_of(ctx)
    with state.instance().reading() as session:
        models = service.list_models(session=session, username=username, actor=username)
        states = service.model_states(session=session, models=models)
        rows: list[dict[str, Any]] = [
            {"model_id": m.id, "name": m.name, "job_id": m.job_id, "blob_sha256": m.blob_sha256,
             "created_at": m.created_at.isoformat(), "state": states[m.id]}
            for m in models]
    emit(state, {"models": rows}, "\n".join(f"{r['model_id']:>5}  {r['name']}  {r['blob_sha256'][:12]}  {r['state']}"
                                             for r in rows) or "no models")


@lora_app.command("export")
def lora_export(
    ctx: typer.Context,
    username: str,
    model_id: int,
    out: Annotated[Path, typer.Option("--out", help="File or folder to write the .safetensors to.")],
    fmt: Annotated[str, typer.Option("--format", help="diffusers or kohya key names.")] = "diffusers",
) -> None:
    """Write one of USERNAME's models as a .safetensors file (provenance in its header)."""
    state = state_of(ctx)
    name, data = service.export_model(instance=state.instance(), model_id=model_id, actor=username,
                                      fmt=fmt)  # type: ignore[arg-type]  # checked by the service
    target = out / name if out.is_dir() else out
    if target.exists():
        fail(f"{target} exists; refusing to overwrite it", 2)
    target.write_bytes(data)
    emit(state, {"file": str(target), "bytes": len(data), "format": fmt}, f"wrote {target} ({len(data)} bytes)")


@lora_app.command("delete")
def lora_delete(ctx: typer.Context, username: str, model_id: int) -> None:
    """Delete one of USERNAME's models (it can no longer be exported or used to generate)."""
    state = state_of(ctx)
    with state.instance().transaction() as session:
        service.delete_model(session=session, model_id=model_id, actor=username)
    emit(state, {"model_id": model_id, "deleted": True}, f"deleted model {model_id}")


@lora_app.command("retrain")
def lora_retrain(ctx: typer.Context, username: str, model_id: int) -> None:
    """Train a suspended model of USERNAME's again without its suspended uploads (same preset, steps, captions)."""
    from mimicsafe.jobs import build_queue
    from mimicsafe.trust.retrain import retrain_without_suspended

    state = state_of(ctx)
    instance = state.instance()
    job = retrain_without_suspended(instance=instance, queue=build_queue(instance), model_id=model_id, actor=username)
    with instance.reading() as session:
        view = service.get_job(session=session, job_id=job.id, actor=username).to_json()
    emit(state, view, _job_text(view))
