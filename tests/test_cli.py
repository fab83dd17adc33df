"""Every command answers --help; README's CLI reference names every command; exit statuses."""

from __future__ import annotations

import io
import re
import sys

import pytest
import typer
from typer.testing import CliRunner

from mimicsafe.settings import REPO_ROOT
from ui.cli import app

runner = CliRunner()


def _command_paths(typer_app: typer.Typer, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = []
    for command in typer_app.registered_commands:
        name = command.name or command.callback.__name__.replace("_", "-")  # type: ignore[union-attr]
        paths.append((*prefix, name))
    for group in typer_app.registered_groups:
        assert group.name and group.typer_instance
        paths.extend(_command_paths(group.typer_instance, (*prefix, group.name)))
    return paths


COMMANDS = _command_paths(app)


def test_the_foundation_commands_exist() -> None:
    for path in [("serve",), ("worker",), ("db", "upgrade"), ("user", "create"), ("audit", "verify")]:
        assert path in COMMANDS


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_readme_cli_reference_is_complete() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    reference = readme.split("## Command line", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^mimicsafe (?:--\S+ \S+ )?((?:[a-z-]+ ?)+)", reference, flags=re.M))
    documented_paths = {tuple(d.split()) for d in documented}
    missing = [" ".join(p) for p in COMMANDS if not any(d[: len(p)] == p for d in documented_paths)]
    assert missing == [], f"README's command line reference does not mention: {missing}"


def test_user_create_and_exit_statuses(tmp_path) -> None:
    home = str(tmp_path / "h")
    ok = runner.invoke(app, ["--home", home, "--json", "user", "create", "alice", "--role", "artist",
                             "--password-stdin"], input="a long password\n")
    assert ok.exit_code == 0, ok.output
    assert '"username": "alice"' in ok.output
    taken = runner.invoke(app, ["--home", home, "user", "create", "alice", "--password-stdin"],
                          input="a long password\n")
    assert taken.exit_code != 0
    usage = runner.invoke(app, ["--home", home, "user", "frobnicate"])
    assert usage.exit_code == 2


def test_readme_lists_every_reason_code() -> None:
    from ownership.reasons import ALL_REASONS

    readme = (REPO_ROOT / "README.md").read_text()
    table = readme.split("## The gate's reason codes", 1)[1].split("\n## ", 1)[0]
    assert set(re.findall(r"^\| `([a-z_]+)`", table, flags=re.M)) == set(ALL_REASONS)


def _refusal(args: list[str], capsys, monkeypatch, stdin: str = "") -> str:
    """Run the CLI as the console script does (`run`, which turns domain errors into exit statuses) and
    return its message: exit 2 and one `error: …` line, never a traceback."""
    from mimicsafe.cli import run

    monkeypatch.setattr(sys, "argv", ["mimicsafe", *args])
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    assert run(app) == 2
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return out + err


@pytest.mark.parametrize("kind", ["a file", "under a file"])
def test_a_home_that_cannot_be_a_directory_is_a_clear_error(tmp_path, capsys, monkeypatch, kind: str) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    home = blocker if kind == "a file" else blocker / "home"
    message = _refusal(["--home", str(home), "user", "list"], capsys, monkeypatch)
    assert f"error: {'home' if kind == 'a file' else 'cannot create the home directory'} {home}" in message


def test_user_create_without_a_terminal_asks_for_password_stdin(tmp_path, capsys, monkeypatch) -> None:
    message = _refusal(["--home", str(tmp_path / "h"), "user", "create", "zed"], capsys, monkeypatch)
    assert "--password-stdin" in message and "Warning" not in message


def test_an_unknown_role_is_refused_before_the_password_is_read(tmp_path, capsys, monkeypatch) -> None:
    message = _refusal(["--home", str(tmp_path / "h"), "user", "create", "zed", "--role", "painter",
                        "--password-stdin"], capsys, monkeypatch, stdin="a long password\n")
    assert "Invalid value for '--role'" in message and "'painter'" in message
    assert not (tmp_path / "h").exists()  # refused while parsing: no instance was opened


@pytest.mark.parametrize("order", ["before", "after", "mixed"])
def test_global_options_work_before_or_after_the_command(tmp_path, order: str) -> None:
    home = str(tmp_path / "h")
    runner.invoke(app, ["--home", home, "user", "create", "alice", "--password-stdin"], input="a long password\n")
    args = {"before": ["--home", home, "--json", "user", "list"],
            "after": ["user", "list", "--json", f"--home={home}"],
            "mixed": ["--json", "user", "list", "--home", home]}[order]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert '"username": "alice"' in result.output


def test_nothing_after_a_double_dash_is_taken_for_a_global_option() -> None:
    from mimicsafe.cli import global_options_first

    assert global_options_first(["check", "u", "--json", "--", "--home", "x"]) == ["--json", "check", "u", "--",
                                                                                   "--home", "x"]


def test_user_names_match_the_rule_in_full_and_logout_ends_sessions(tmp_path) -> None:
    from datetime import timedelta

    from mimicsafe import accounts
    from mimicsafe.context import open_instance
    from mimicsafe.settings import load_settings

    home = str(tmp_path / "h")
    newline = runner.invoke(app, ["--home", home, "user", "create", "zed\n", "--password-stdin"],
                            input="a long password\n")
    assert newline.exit_code != 0 and "username 'zed\\n'" in str(newline.exception)  # `run` makes it exit 2
    assert runner.invoke(app, ["--home", home, "user", "create", "zed", "--password-stdin"],
                         input="a long password\n").exit_code == 0
    instance = open_instance(load_settings(home=home))
    with instance.transaction() as session:
        assert "zed\n" not in {u.username for u in accounts.list_users(session=session)}
        token = accounts.open_session(session=session, user=accounts.get_user(session=session, username="zed"),
                                      lifetime=timedelta(hours=1))
    ended = runner.invoke(app, ["--home", home, "--json", "user", "logout", "zed"])
    assert ended.exit_code == 0 and '"sessions_ended": 1' in ended.output, ended.output
    with instance.reading() as session:
        assert accounts.session_user(session=session, token=token) is None
    instance.engine.dispose()
