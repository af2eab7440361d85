"""webhook.config: sources and their order, strictness, one clear line per problem."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from webhook.cli import main
from webhook.config import ConfigError, EnforcementMode, FailureMode, Settings, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("NODELIMITS_"):
            monkeypatch.delenv(key)


def config_file(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_defaults_are_safe() -> None:
    settings = load_settings()
    assert settings.admission.mode is EnforcementMode.DENY
    assert settings.admission.failure_mode is FailureMode.CLOSED
    assert settings.platform.verify_tls is True
    assert settings.platform.deadline < settings.admission.timeout_seconds
    assert settings == Settings()


def test_environment_sets_nested_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODELIMITS_CACHE__TTL", "30")
    monkeypatch.setenv("NODELIMITS_ADMISSION__KINDS", "Pod,Job")
    settings = load_settings()
    assert settings.cache.ttl == 30
    assert settings.admission.kinds == ("Pod", "Job")


def test_yaml_file_sets_values(tmp_path: Path) -> None:
    path = config_file(tmp_path, {"cache": {"ttl": 5}, "admission": {"mode": "warn"}})
    settings = load_settings(path)
    assert (settings.cache.ttl, settings.admission.mode) == (5, EnforcementMode.WARN)


def test_environment_wins_over_the_yaml_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NODELIMITS_CACHE__TTL", "7")
    settings = load_settings(config_file(tmp_path, {"cache": {"ttl": 5, "max_stale": 99}}))
    assert (settings.cache.ttl, settings.cache.max_stale) == (7, 99)


def test_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODELIMITS_SERVER__PORT", "1000")
    assert load_settings(server={"port": 2000}).server.port == 2000


def test_config_file_can_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NODELIMITS_CONFIG_FILE", str(config_file(tmp_path, {"log_level": "DEBUG"})))
    assert load_settings().log_level == "DEBUG"


def test_misspelt_key_fails(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(config_file(tmp_path, {"cache": {"tll": 5}}))
    assert caught.value.problems == ["NODELIMITS_CACHE__TLL: Extra inputs are not permitted"]


def test_each_problem_is_one_line_naming_its_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODELIMITS_CACHE__TTL", "-1")
    monkeypatch.setenv("NODELIMITS_ADMISSION__MODE", "block")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert len(caught.value.problems) == 2
    assert caught.value.problems[0].startswith("NODELIMITS_CACHE__TTL: ")
    assert caught.value.problems[1].startswith("NODELIMITS_ADMISSION__MODE: ")


def test_deadline_must_stay_below_the_webhook_timeout() -> None:
    with pytest.raises(ConfigError, match=r"platform.deadline \(6.0s\) must be below"):
        load_settings(platform={"deadline": 6}, admission={"timeout_seconds": 5})


def test_token_source_needs_its_credentials() -> None:
    with pytest.raises(ConfigError, match="token_source=password needs user, password, org_id"):
        load_settings(platform={"token_source": "password"})


def test_secrets_are_not_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(
        platform={
            "token_source": "aksk",
            "access_key": "AK-123",
            "secret_key": "SK-456",
            "user": "u",
        }
    )
    assert "SK-456" not in repr(settings)
    assert "SK-456" not in str(settings.model_dump())


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_settings(tmp_path / "absent.yaml")


def test_cli_prints_one_error_line_per_problem_and_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODELIMITS_CACHE__TTL", "soon")
    result = CliRunner().invoke(main, ["limits", "TeslaM40"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: NODELIMITS_CACHE__TTL: ")
    assert "Traceback" not in result.output


def test_kind_names_are_the_core_kinds_and_the_kind_table() -> None:
    """admission.kinds' Literal is spelled out; it must stay the kinds that have handlers."""
    from typing import get_args

    from webhook.config import CORE_KINDS, TABLE_KINDS, KindName
    from webhook.serve.handlers import HANDLERS

    assert get_args(KindName) == CORE_KINDS + TABLE_KINDS
    assert {h.kind for h in HANDLERS} == set(CORE_KINDS) | set(TABLE_KINDS)
    with pytest.raises(ConfigError, match="ADMISSION__KINDS"):
        load_settings(admission={"kinds": ["Job.batch.example.com"]})
