import re
from pathlib import Path

import pytest

from mimicsafe.settings import REPO_ROOT, Settings, SettingsError, load_settings


def test_defaults_come_from_the_config_file(tmp_path: Path) -> None:
    s = load_settings(home=tmp_path)
    assert s.port == 7860
    assert s.pdq_threshold == 31
    assert s.sqlalchemy_url == f"sqlite:///{tmp_path.resolve() / 'mimicsafe.db'}"
    assert s.huey_url == f"sqlite:///{tmp_path.resolve() / 'queue.db'}"
    assert s.uses_demo_model


def test_environment_overrides_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIMICSAFE_PORT", "9000")
    monkeypatch.setenv("MIMICSAFE_QUEUE_URL", "redis://localhost:6379/0")
    s = load_settings()
    assert s.port == 9000
    assert s.huey_url == "redis://localhost:6379/0"


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("MIMICSAFE_PORT", "eighty", "port"),
        ("MIMICSAFE_PORT", "70000", "port"),
        ("MIMICSAFE_MAX_UPLOAD_BYTES", "0", "max_upload_bytes"),
        ("MIMICSAFE_PDQ_THRESHOLD", "-1", "pdq_threshold"),
        ("MIMICSAFE_QUEUE_URL", "amqp://x", "queue_url"),
        ("MIMICSAFE_ENVIRONMENT", "staging", "environment"),
        ("MIMICSAFE_LOG_LEVEL", "LOUD", "log_level"),
    ],
)
def test_invalid_values_fail_naming_the_setting(monkeypatch: pytest.MonkeyPatch, variable: str, value: str,
                                                named: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=rf"\b{named}\b.*MIMICSAFE_{named.upper()}"):
        load_settings()


def test_unknown_setting_is_refused() -> None:
    with pytest.raises(SettingsError, match="no_such_setting"):
        load_settings(no_such_setting=1)


def test_production_refuses_the_development_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIMICSAFE_ENVIRONMENT", "production")
    with pytest.raises(SettingsError, match="secret_key"):
        load_settings()
    monkeypatch.setenv("MIMICSAFE_SECRET_KEY", "a-long-random-value-for-this-test-only")
    assert load_settings().environment == "production"


def test_secrets_are_not_shown_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIMICSAFE_ADMIN_PASSWORD", "hunter2hunter2")
    s = load_settings()
    assert "hunter2hunter2" not in repr(s)
    assert s.admin_password is not None and s.admin_password.get_secret_value() == "hunter2hunter2"


def test_readme_configuration_table_lists_every_setting() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `MIMICSAFE_([A-Z_]+)`", table, flags=re.M))
    assert documented == {name.upper() for name in Settings.model_fields}


def test_every_setting_is_described() -> None:
    for name, field in Settings.model_fields.items():
        assert field.description, f"setting {name} has no description"
