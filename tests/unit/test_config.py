from __future__ import annotations

from pathlib import Path

import pytest

from steward.config import Settings, environment_for


def test_defaults_put_everything_under_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("STEWARD_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert settings.home == (tmp_path / ".steward").resolve()
    assert settings.resolved_tracking_uri == f"sqlite:///{tmp_path / '.steward' / 'mlflow' / 'mlflow.db'}"
    assert settings.resolved_store_uri.startswith(str(tmp_path / ".steward"))
    env = environment_for(settings)
    assert env["PREFECT_HOME"] == str(tmp_path / ".steward" / "prefect")
    assert env["DO_NOT_TRACK"] == "1" and env["MLFLOW_DISABLE_TELEMETRY"] == "true"
    # the embedded server's first start migrates a new database: more than Prefect's 20 s on a busy machine
    assert int(env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"]) >= 60


def test_a_configured_prefect_server_is_used_as_it_is(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("STEWARD_PREFECT_API_URL", "http://prefect.internal:4200/api")
    env = environment_for(Settings())
    assert env["PREFECT_API_URL"] == "http://prefect.internal:4200/api"
    assert "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" not in env


def test_yaml_file_and_environment_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    config = tmp_path / "custom.yaml"
    config.write_text(f"home: {tmp_path / 'from-yaml'}\nactor: yaml-actor\n")
    monkeypatch.setenv("STEWARD_CONFIG", str(config))
    monkeypatch.delenv("STEWARD_HOME", raising=False)
    monkeypatch.setenv("STEWARD_ACTOR", "env-actor")
    settings = Settings()
    assert settings.home == tmp_path / "from-yaml"
    assert settings.actor == "env-actor"


def test_missing_config_file_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("STEWARD_CONFIG", str(tmp_path / "absent.yaml"))
    with pytest.raises(FileNotFoundError, match="STEWARD_CONFIG"):
        Settings()


def test_unknown_setting_is_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    config = tmp_path / "steward.yaml"
    config.write_text("hme: /tmp/typo\n")
    monkeypatch.setenv("STEWARD_CONFIG", str(config))
    with pytest.raises(ValueError, match="hme"):
        Settings()


def test_telemetry_can_be_turned_on(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("STEWARD_TELEMETRY", "true")
    assert "DO_NOT_TRACK" not in environment_for(Settings())


def test_a_home_applied_later_replaces_the_default_one_but_never_a_users_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """`steward demo --home H` imported flows (which apply ./.steward) before applying H: MLflow's fluent API
    then wrote to ./.steward's store while the registry's client read H's ("No Experiment with id=1")."""
    from steward import config

    monkeypatch.setenv("STEWARD_HOME", str(tmp_path / "default"))
    for variable in (*environment_for(Settings()), "PREFECT_API_URL"):  # monkeypatch restores each at the end
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(config, "_exported", {})
    config.apply_environment(Settings())
    monkeypatch.setenv("STEWARD_PREFECT_API_URL", "http://prefect.internal:4200/api")
    monkeypatch.setenv("STEWARD_HOME", str(tmp_path / "chosen"))
    chosen = config.apply_environment(Settings())
    assert config.os.environ["MLFLOW_TRACKING_URI"] == chosen.resolved_tracking_uri
    assert config.os.environ["PREFECT_HOME"] == str(tmp_path / "chosen" / "prefect")
    assert "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" not in config.os.environ  # the first home's only

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    monkeypatch.setenv("STEWARD_HOME", str(tmp_path / "third"))
    config.apply_environment(Settings())
    assert config.os.environ["MLFLOW_TRACKING_URI"] == "http://mlflow.internal:5000"
