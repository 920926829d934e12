"""MLflow credentials from a Prefect Secret block, for flow runs that get them neither from the environment nor the home.

Precedence (docs/security.md): the environment, then the files ``steward up`` wrote under the home,
then the block named by ``STEWARD_MLFLOW_CREDENTIALS_BLOCK``. The block holds
``{"username": ..., "password": ...}``; MLflow's client reads the variables set here on every request.
"""

from __future__ import annotations

import os

from prefect.blocks.system import Secret

from steward.config import Settings
from steward.credentials import MLFLOW_PASSWORD_ENV, MLFLOW_USERNAME_ENV, CredentialsError


def apply_mlflow_credentials_block(settings: Settings) -> bool:
    """Export the block's MLflow credentials unless the environment has them; True if the block was used."""
    name = settings.mlflow_credentials_block
    if not name or os.environ.get(MLFLOW_PASSWORD_ENV):
        return False
    try:
        value = Secret.load(name).get()
    except ValueError as error:
        raise CredentialsError(f"STEWARD_MLFLOW_CREDENTIALS_BLOCK={name}: no Prefect Secret block of that name "
                               f"({error}); create it or unset the setting") from None
    if not isinstance(value, dict) or not value.get("username") or not value.get("password"):
        raise CredentialsError(f"the Prefect Secret block {name!r} must hold a JSON object with a non-empty "
                               "\"username\" and \"password\" (MLflow's account for Steward)")
    os.environ[MLFLOW_USERNAME_ENV] = str(value["username"])
    os.environ[MLFLOW_PASSWORD_ENV] = str(value["password"])
    return True
