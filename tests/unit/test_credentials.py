"""The control plane's credentials: generated once and owner-only, the environment wins, nothing on a command line."""

from __future__ import annotations

import configparser
import json
import os
from unittest.mock import patch

import pytest

from steward.config import Settings, apply_environment
from steward.credentials import (
    MLFLOW_AUTH_CACHE_SECONDS,
    MLFLOW_PASSWORD_ENV,
    MLFLOW_USERNAME_ENV,
    PREFECT_AUTH_ENV,
    STEWARD_USER,
    ControlPlaneSecrets,
    CredentialsError,
)


def test_credentials_are_generated_once_owner_only(tmp_path):
    secrets = ControlPlaneSecrets(tmp_path / "home")
    first = secrets.ensure(environ={})
    again = secrets.ensure(environ={})
    assert again == first
    assert first.mlflow_username == STEWARD_USER
    assert first.prefect_auth_string.get_secret_value().startswith(f"{STEWARD_USER}:")
    assert len(first.mlflow_password.get_secret_value()) >= 32
    for path in (secrets.folder, secrets.mlflow_password_file, secrets.prefect_auth_file, secrets.flask_key_file,
                 secrets.mlflow_auth_config):
        assert path.stat().st_mode & 0o077 == 0, path
    assert secrets.load(environ={}) == first


def test_the_auth_config_names_the_database_under_the_home_and_holds_no_password(tmp_path):
    secrets = ControlPlaneSecrets(tmp_path / "home")
    credentials = secrets.ensure(environ={})
    parser = configparser.ConfigParser()
    parser.read(secrets.mlflow_auth_config)
    assert parser["mlflow"]["database_uri"] == f"sqlite:///{secrets.mlflow_auth_database}"
    assert parser["mlflow"]["admin_username"] == STEWARD_USER
    assert "admin_password" not in parser["mlflow"]
    assert parser["mlflow"].getint("auth_cache_ttl_seconds") == MLFLOW_AUTH_CACHE_SECONDS  # no scrypt per request
    assert credentials.mlflow_password.get_secret_value() not in secrets.mlflow_auth_config.read_text()
    server = secrets.mlflow_server_environment(credentials)
    assert server["MLFLOW_AUTH_ADMIN_PASSWORD"] == credentials.mlflow_password.get_secret_value()
    assert server["MLFLOW_AUTH_CONFIG_PATH"] == str(secrets.mlflow_auth_config)


def test_the_environment_wins_and_is_not_written_down(tmp_path):
    secrets = ControlPlaneSecrets(tmp_path / "home")
    environ = {MLFLOW_USERNAME_ENV: "ops-steward", MLFLOW_PASSWORD_ENV: "from-a-vault-123456",
               PREFECT_AUTH_ENV: "steward:from-a-vault"}
    credentials = secrets.ensure(environ=environ)
    assert credentials.client_environment() == environ
    assert not secrets.mlflow_password_file.exists() and not secrets.prefect_auth_file.exists()
    assert "admin_username = ops-steward" in secrets.mlflow_auth_config.read_text()


def test_loading_without_credentials_says_how_to_get_them(tmp_path):
    with pytest.raises(CredentialsError, match="steward up --profile production"):
        ControlPlaneSecrets(tmp_path / "home").load(environ={})


def test_commands_in_the_home_read_its_credentials_unless_the_environment_has_them(tmp_path):
    home = tmp_path / "home"
    with patch.dict(os.environ):  # apply_environment exports into os.environ: restore all of it after
        for variable in (MLFLOW_USERNAME_ENV, MLFLOW_PASSWORD_ENV, PREFECT_AUTH_ENV):
            os.environ.pop(variable, None)
        apply_environment(Settings(home=home))  # no files: nothing exported (the embedded profile)
        assert MLFLOW_PASSWORD_ENV not in os.environ and PREFECT_AUTH_ENV not in os.environ
        generated = ControlPlaneSecrets(home).ensure(environ={})
        apply_environment(Settings(home=home))
        assert os.environ[MLFLOW_PASSWORD_ENV] == generated.mlflow_password.get_secret_value()
        assert os.environ[MLFLOW_USERNAME_ENV] == STEWARD_USER
        assert os.environ[PREFECT_AUTH_ENV] == generated.prefect_auth_string.get_secret_value()
        os.environ[MLFLOW_PASSWORD_ENV] = "explicit-one"
        apply_environment(Settings(home=home))
        assert os.environ[MLFLOW_PASSWORD_ENV] == "explicit-one"


def test_the_production_plan_authenticates_both_servers_and_passes_credentials_only_at_launch(
        write_spec, tmp_path, monkeypatch):
    from steward.stack import Profile, StackConfig, plan_services

    monkeypatch.setenv("STEWARD_ADMIN_TOKEN", "plan-token")
    monkeypatch.setenv("STEWARD_POSTGRES_PASSWORD", "secret-pw-1")
    for variable in (MLFLOW_USERNAME_ENV, MLFLOW_PASSWORD_ENV, PREFECT_AUTH_ENV):
        monkeypatch.delenv(variable, raising=False)
    settings = Settings(home=tmp_path / "home")
    services = {s.name: s for s in plan_services(settings, StackConfig(spec_paths=(str(write_spec()),),
                                                                       profile=Profile.PRODUCTION))}
    credentials = ControlPlaneSecrets(settings.home).ensure(environ={})
    password, auth_string = credentials.mlflow_password.get_secret_value(), credentials.prefect_auth_string.get_secret_value()
    assert services["mlflow"].command[1:4] == ("server", "--app-name", "basic-auth")
    for service in services.values():
        written = " ".join(service.command) + json.dumps(service.env)
        assert password not in written and auth_string not in written, service.name
    assert services["prefect"].secret_env()["PREFECT_SERVER_API_AUTH_STRING"] == auth_string
    assert services["mlflow"].secret_env()["MLFLOW_AUTH_ADMIN_PASSWORD"] == password
    for name in ("gateway-1", "worker"):
        assert services[name].secret_env() == credentials.client_environment(), name


def test_the_embedded_plan_stays_unauthenticated(write_spec, tmp_path):
    from steward.stack import StackConfig, plan_services

    services = plan_services(Settings(home=tmp_path / "home"), StackConfig(spec_paths=(str(write_spec()),)))
    mlflow = next(s for s in services if s.name == "mlflow")
    assert "--app-name" not in mlflow.command
    assert all(s.secret_env is None for s in services)


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root Steward runs PostgreSQL as another user")
def test_the_database_server_may_pass_through_the_owner_only_home_and_nothing_more(tmp_path):
    import pwd
    import stat

    from steward.postgres import Cluster, server_user

    home = tmp_path / "home"
    Settings(home=home).ensure_home()
    account = pwd.getpwnam(server_user())
    Cluster(home, 5432).let_server_through_home(account)
    Settings(home=home).ensure_home()  # every command closes the home again: the traverse bit stays
    assert stat.S_IMODE(home.stat().st_mode) == 0o710 and home.stat().st_gid == account.pw_gid
    assert stat.S_IMODE((home / "mlflow").stat().st_mode) == 0o700
    home.chmod(0o755)  # opened by hand: closed again, still passable by the server's group
    Settings(home=home).ensure_home()
    assert stat.S_IMODE(home.stat().st_mode) == 0o710


def test_a_home_shared_with_the_containers_group_is_open_to_that_group_and_closed_to_others(tmp_path):
    import stat

    from steward.config import HomeAccess

    home = tmp_path / "shared"
    home.mkdir()
    home.chmod(0o2777)  # setgid, as the compose stack's data folder; "others" too, by mistake
    previous = os.umask(0o022)
    try:
        Settings(home=home, home_access=HomeAccess.GROUP).ensure_home()
        written = home / "prefect.yaml"
        written.write_text("deployments: []\n")
        (home / "predictions").mkdir()
    finally:
        os.umask(previous)
    assert stat.S_IMODE(home.stat().st_mode) == 0o2770
    assert stat.S_IMODE(written.stat().st_mode) == 0o660
    assert stat.S_IMODE((home / "predictions").stat().st_mode) & 0o777 == 0o770
    assert stat.S_IMODE((home / "mlflow").stat().st_mode) & 0o777 == 0o770
