"""MLflow credentials from a Prefect Secret block: used only when the environment has none, refused when malformed."""

from __future__ import annotations

import os
from unittest.mock import patch

import pytest
from prefect.blocks.system import Secret

from steward.config import Settings
from steward.credentials import MLFLOW_PASSWORD_ENV, MLFLOW_USERNAME_ENV, CredentialsError
from tasks.credentials import apply_mlflow_credentials_block


def test_a_secret_block_fills_in_mlflow_credentials_the_environment_lacks(tmp_path, model_name):
    Secret(value={"username": "steward", "password": "from-the-block-123"}).save(f"{model_name}-mlflow", overwrite=True)
    settings = Settings(home=tmp_path / "home", mlflow_credentials_block=f"{model_name}-mlflow")
    with patch.dict(os.environ):
        os.environ.pop(MLFLOW_USERNAME_ENV, None)
        os.environ.pop(MLFLOW_PASSWORD_ENV, None)
        assert apply_mlflow_credentials_block(settings) is True
        assert (os.environ[MLFLOW_USERNAME_ENV], os.environ[MLFLOW_PASSWORD_ENV]) == ("steward", "from-the-block-123")
    with patch.dict(os.environ, {MLFLOW_USERNAME_ENV: "steward", MLFLOW_PASSWORD_ENV: "from-the-environment"}):
        assert apply_mlflow_credentials_block(settings) is False  # the environment wins
        assert os.environ[MLFLOW_PASSWORD_ENV] == "from-the-environment"
    assert apply_mlflow_credentials_block(Settings(home=tmp_path / "home")) is False  # no block named


def test_a_missing_or_malformed_block_says_what_to_fix(tmp_path, model_name):
    Secret(value="just-a-password").save(f"{model_name}-plain", overwrite=True)
    with patch.dict(os.environ):
        os.environ.pop(MLFLOW_PASSWORD_ENV, None)
        with pytest.raises(CredentialsError, match="\"username\" and \"password\""):
            apply_mlflow_credentials_block(Settings(home=tmp_path / "h", mlflow_credentials_block=f"{model_name}-plain"))
        with pytest.raises(CredentialsError, match="no Prefect Secret block"):
            apply_mlflow_credentials_block(Settings(home=tmp_path / "h", mlflow_credentials_block="no-such-block"))
        assert MLFLOW_PASSWORD_ENV not in os.environ
