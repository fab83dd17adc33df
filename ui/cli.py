"""Entry point of the `mimicsafe` console script: the core CLI plus `serve`, which needs gradio."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from mimicsafe import (  # noqa: F401  (importing a cli_* module registers its commands)
    accounts,
    cli_gate,  # keys, sign, portfolio, optout, check, upload, review
    cli_provenance,  # generate, watermark, verify
    cli_train,  # train, jobs, lora
    cli_trust,  # rescan, lineage
)
from mimicsafe.cli import app, run, state_of


@app.command("serve")
def serve(
    ctx: typer.Context,
    host: Annotated[str | None,
                    typer.Option("--host", help="Listen address (default from settings: 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port (default from settings: 7860).")] = None,
    embedded_worker: Annotated[bool, typer.Option("--embedded-worker/--no-embedded-worker",
                                                  help="Run a job worker inside this process.")] = True,
) -> None:
    """Serve the web app (and, by default, a job worker beside it)."""
    state = state_of(ctx)
    settings = state.settings
    _private_gradio_temp(settings.home_dir)
    from mimicsafe.jobs import build_queue, run_worker
    from ui.app import build_app

    logging.basicConfig(level=settings.log_level)
    instance = state.instance()
    with instance.transaction() as session:
        admin_password = None if settings.admin_password is None else settings.admin_password.get_secret_value()
        generated = accounts.ensure_initial_admin(session=session, home=settings.home_dir, password=admin_password)
    if generated:
        typer.echo(f"Created the first admin account 'admin' with password: {generated}\n"
                   f"(also saved, readable only by you, in {settings.home_dir / accounts.INITIAL_PASSWORD_FILE})")
    blocks = build_app(instance)
    blocks.queue(default_concurrency_limit=4)
    blocks.launch(server_name=host or settings.host, server_port=port or settings.port,
                  prevent_thread_lock=True, show_error=False, quiet=True)
    typer.echo(f"MimicSafe is serving on http://{host or settings.host}:{port or settings.port}")
    try:
        if embedded_worker:
            run_worker(build_queue(instance))  # blocks until SIGINT/SIGTERM
        else:
            blocks.block_thread()
    finally:
        blocks.close()


def _private_gradio_temp(home: Path) -> None:
    """Gradio's temporary files (uploads, previews, downloads) under home, not the host-wide temp folder,
    readable by this account only: the folder is 0700 and this process creates files 0600 and
    directories 0700 (umask 077). Gradio reads the folder from GRADIO_TEMP_DIR, so it is set before
    gradio is imported."""
    os.umask(0o077)
    folder = home / "gradio-temp"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    folder.chmod(0o700)
    os.environ["GRADIO_TEMP_DIR"] = str(folder)


def main() -> NoReturn:
    sys.exit(run(app))
