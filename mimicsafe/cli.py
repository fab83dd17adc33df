"""The `mimicsafe` command line. Thin: parse, call a service, print. Exit status 0 success,
1 refused request, 2 bad usage or bad input (see DESIGN.md).

`serve` is added by `ui.cli`, because only ui/ may import gradio; the console script points there.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from mimicsafe import accounts, audit
from mimicsafe.context import Instance, open_instance
from mimicsafe.db import migrate
from mimicsafe.errors import AuthError, MimicSafeError, PermissionDenied, RateLimited
from mimicsafe.settings import Settings, SettingsError, load_settings

EXIT_OK, EXIT_REFUSED, EXIT_BAD_INPUT = 0, 1, 2

GLOBAL_FLAGS = ("--json",)
GLOBAL_VALUED = ("--home",)


def global_options_first(args: list[str]) -> list[str]:
    """Move the global options found after the command to the front, so that `mimicsafe user list --json`
    means `mimicsafe --json user list`: one convention, either position. Nothing after `--` moves."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        if arg in GLOBAL_FLAGS or arg.split("=", 1)[0] in GLOBAL_VALUED and "=" in arg:
            front.append(arg)
        elif arg in GLOBAL_VALUED and i + 1 < len(args):
            front.extend(args[i:i + 2])
            i += 1
        else:
            rest.append(arg)
        i += 1
    return front + rest


class _Root(TyperGroup):
    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # ctx: typer's vendored click Context
        return super().parse_args(ctx, global_options_first(args))


app = typer.Typer(
    cls=_Root,
    name="mimicsafe",
    help="MimicSafe: train a style model only on your own verified art; generate watermarked references.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema migrations.", no_args_is_help=True)
user_app = typer.Typer(help="Accounts: artists and admins.", no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(user_app, name="user")
app.add_typer(audit_app, name="audit")


@dataclass
class CliState:
    home: Path | None = None
    as_json: bool = False
    _settings: Settings | None = None
    _instance: Instance | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            try:
                self._settings = load_settings(home=self.home)
            except SettingsError as exc:
                fail(str(exc), EXIT_BAD_INPUT)
        return self._settings

    def instance(self, *, upgrade: bool = True) -> Instance:
        if self._instance is None:
            self._instance = open_instance(self.settings, upgrade=upgrade)
        return self._instance


def fail(message: str, code: int) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def emit(state: CliState, payload: dict[str, Any], text: str) -> None:
    typer.echo(json.dumps(payload, indent=2, sort_keys=True) if state.as_json else text)


def state_of(ctx: typer.Context) -> CliState:
    return ctx.ensure_object(CliState)


@app.callback()
def _global(
    ctx: typer.Context,
    home: Annotated[Path | None, typer.Option(
        "--home", help="Data directory (default: $MIMICSAFE_HOME, else ./mimicsafe-data).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Global options may go before or after the command: `mimicsafe --home DIR COMMAND …`."""
    ctx.obj = CliState(home=home, as_json=as_json)


# db ------------------------------------------------------------------------------------------------
@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context, revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Apply migrations up to REVISION (default: the latest)."""
    state = state_of(ctx)
    instance = state.instance(upgrade=False)
    migrate.upgrade(instance.engine, revision)
    current = migrate.current_revision(instance.engine)
    emit(state, {"revision": current}, f"database at revision {current}")


@db_app.command("downgrade")
def db_downgrade(ctx: typer.Context,
                 revision: Annotated[str, typer.Argument(help="Target revision, e.g. base.")]) -> None:
    """Revert migrations down to REVISION (`base` empties the schema)."""
    state = state_of(ctx)
    instance = state.instance(upgrade=False)
    migrate.downgrade(instance.engine, revision)
    current = migrate.current_revision(instance.engine)
    emit(state, {"revision": current}, f"database at revision {current or 'base'}")


# user ----------------------------------------------------------------------------------------------
def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        # getpass would fall back to echoing the password, warn, and end in "Aborted." (exit 1)
        fail("no terminal to ask for the password: pipe it in with --password-stdin", EXIT_BAD_INPUT)
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


@user_app.command("create")
def user_create(
    ctx: typer.Context,
    username: str,
    role: Annotated[accounts.Role, typer.Option("--role", help="artist or admin.")] = "artist",
    password_stdin: Annotated[bool, typer.Option(
        "--password-stdin", help="Read the password from standard input.")] = False,
) -> None:
    """Create an account."""
    state = state_of(ctx)
    password = _read_password(password_stdin)
    with state.instance().transaction() as session:
        user = accounts.create_user(session=session, username=username, role=role, password=password, actor="cli")
        emit(state, {"username": user.username, "role": user.role}, f"created {user.role} {user.username}")


@user_app.command("disable")
def user_disable(ctx: typer.Context, username: str) -> None:
    """Disable an account: it can no longer log in; its data stays."""
    state = state_of(ctx)
    with state.instance().transaction() as session:
        accounts.set_disabled(session=session, username=username, disabled=True, actor="cli")
    emit(state, {"username": username, "disabled": True}, f"disabled {username}")


@user_app.command("enable")
def user_enable(ctx: typer.Context, username: str) -> None:
    """Enable a disabled account."""
    state = state_of(ctx)
    with state.instance().transaction() as session:
        accounts.set_disabled(session=session, username=username, disabled=False, actor="cli")
    emit(state, {"username": username, "disabled": False}, f"enabled {username}")


@user_app.command("logout")
def user_logout(ctx: typer.Context, username: str) -> None:
    """End every web session of an account at once (copied cookies included); it must log in again."""
    state = state_of(ctx)
    with state.instance().transaction() as session:
        ended = accounts.end_sessions(session=session, username=username, actor="cli", why="ended by an operator")
    emit(state, {"username": username, "sessions_ended": ended}, f"ended {ended} session(s) of {username}")


@user_app.command("list")
def user_list(ctx: typer.Context) -> None:
    """List accounts."""
    state = state_of(ctx)
    with state.instance().transaction() as session:
        users = accounts.list_users(session=session)
        rows = [{"username": u.username, "role": u.role, "disabled": u.disabled} for u in users]
    text = "\n".join(f"{r['username']:<32} {r['role']:<7} {'disabled' if r['disabled'] else ''}" for r in rows)
    emit(state, {"users": rows}, text or "no users")


# audit ---------------------------------------------------------------------------------------------
@audit_app.command("verify")
def audit_verify(ctx: typer.Context) -> None:
    """Check the audit log's hash chain; exit 1 and name the first bad entry if it was tampered with."""
    state = state_of(ctx)
    with state.instance().transaction() as session:
        report = audit.verify_chain(session)
    payload = {"ok": report.ok, "entries": report.entries, "first_bad_seq": report.first_bad_seq,
               "problem": report.problem}
    emit(state, payload, f"audit log intact: {report.entries} entries" if report.ok
         else f"audit log BROKEN at entry {report.first_bad_seq}: {report.problem}")
    if not report.ok:
        raise typer.Exit(EXIT_REFUSED)


# worker --------------------------------------------------------------------------------------------
@app.command("worker")
def worker(
    ctx: typer.Context,
    threads: Annotated[int, typer.Option("--threads", min=1, help="Worker threads.")] = 1,
) -> None:
    """Run a job worker in the foreground (Ctrl-C stops it after the current job)."""
    from mimicsafe.jobs import build_queue, run_worker  # keeps `--help` fast

    state = state_of(ctx)
    logging.basicConfig(level=state.settings.log_level)
    run_worker(build_queue(state.instance()), workers=threads)


def exit_status_for(exc: BaseException) -> int | None:
    """The exit status for a domain error (after printing it), or None if it is not ours to explain."""
    if isinstance(exc, AuthError | PermissionDenied | RateLimited):
        typer.echo(f"error: {exc}", err=True)
        return EXIT_REFUSED
    if isinstance(exc, MimicSafeError | SettingsError):
        typer.echo(f"error: {exc}", err=True)
        return EXIT_BAD_INPUT
    return None


def run(typer_app: typer.Typer) -> int:
    """Run the CLI, turning domain errors into a message and an exit status instead of a traceback.

    Usage errors are handled by typer itself (message and exit status 2).
    """
    try:
        typer_app()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (EXIT_OK if exc.code is None else EXIT_BAD_INPUT)
    except Exception as exc:
        status = exit_status_for(exc)
        if status is None:
            raise
        return status
    return EXIT_OK


def main() -> NoReturn:
    sys.exit(run(app))
