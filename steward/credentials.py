"""Credentials of the control plane: who may write to MLflow and Prefect in the production profile.

With MLflow's REST API alone, whoever reaches an unauthenticated MLflow server could create a
version, move an alias or rewrite the traffic plan. In the production profile MLflow runs its
basic-auth app and Prefect its API auth string; only Steward's processes get the credentials.

Where each credential comes from, first match wins:

1. the environment: ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` (MLflow's client reads
   them itself) and ``PREFECT_API_AUTH_STRING`` (Prefect's); ``steward up`` passes them to every
   service it starts, so inside the stack the environment always wins;
2. the files ``steward up --profile production`` generated once under ``<home>/secrets`` (0600), so
   a command run by the home's owner with ``STEWARD_HOME`` set works without exporting them;
3. for MLflow only, the Prefect Secret block named by ``STEWARD_MLFLOW_CREDENTIALS_BLOCK``, read by
   flow runs (:mod:`tasks.credentials`) where neither exists, e.g. a worker on another machine.
   Prefect's own auth string cannot come from a block, which is read through the API it protects.

No secret is logged, put on a command line, or written to a pid file. No Prefect import here.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

MLFLOW_USERNAME_ENV = "MLFLOW_TRACKING_USERNAME"
MLFLOW_PASSWORD_ENV = "MLFLOW_TRACKING_PASSWORD"
PREFECT_AUTH_ENV = "PREFECT_API_AUTH_STRING"
PREFECT_SERVER_AUTH_ENV = "PREFECT_SERVER_API_AUTH_STRING"
MLFLOW_ADMIN_USERNAME_ENV = "MLFLOW_AUTH_ADMIN_USERNAME"
MLFLOW_ADMIN_PASSWORD_ENV = "MLFLOW_AUTH_ADMIN_PASSWORD"
MLFLOW_AUTH_CONFIG_ENV = "MLFLOW_AUTH_CONFIG_PATH"
MLFLOW_FLASK_KEY_ENV = "MLFLOW_FLASK_SERVER_SECRET_KEY"
STEWARD_USER = "steward"  # MLflow's admin account and the user part of Prefect's auth string
MLFLOW_AUTH_APP = "basic-auth"
# authenticated users Steward did not create (read-only accounts an admin adds) may read every model
DEFAULT_MLFLOW_PERMISSION = "READ"
# MLflow checks a password against its scrypt hash on every request (~0.3 s a request on one worker, 30x a
# cached check: benchmarks/mlflow_auth.py); a good check is cached this long. A password changed through
# MLflow's API is refused at once on the worker that changed it, on other workers within this time.
MLFLOW_AUTH_CACHE_SECONDS = 60


class CredentialsError(RuntimeError):
    """A credential is missing or unreadable; the message says which and what to do."""


@dataclass(frozen=True)
class ControlPlaneCredentials:
    """What Steward's processes present to MLflow and Prefect."""

    mlflow_username: str
    mlflow_password: SecretStr
    prefect_auth_string: SecretStr  # ``user:password``, as Prefect's basic auth expects

    def client_environment(self) -> dict[str, str]:
        """For Steward's own processes: gateways, the worker and its flow runs, the CLI."""
        return {MLFLOW_USERNAME_ENV: self.mlflow_username,
                MLFLOW_PASSWORD_ENV: self.mlflow_password.get_secret_value(),
                PREFECT_AUTH_ENV: self.prefect_auth_string.get_secret_value()}

    def prefect_server_environment(self) -> dict[str, str]:
        # the server's own services are clients of its API too
        value = self.prefect_auth_string.get_secret_value()
        return {PREFECT_SERVER_AUTH_ENV: value, PREFECT_AUTH_ENV: value}


@dataclass(frozen=True)
class ControlPlaneSecrets:
    """The files under ``<home>/secrets`` that hold the production profile's control-plane credentials."""

    home: Path

    @property
    def folder(self) -> Path:
        return self.home / "secrets"

    @property
    def mlflow_password_file(self) -> Path:
        return self.folder / "mlflow-password"

    @property
    def prefect_auth_file(self) -> Path:
        return self.folder / "prefect-auth-string"

    @property
    def flask_key_file(self) -> Path:
        """MLflow's CSRF key for its login forms; stable across restarts so sessions stay valid."""
        return self.folder / "mlflow-flask-key"

    @property
    def mlflow_auth_config(self) -> Path:
        return self.folder / "mlflow-auth.ini"

    @property
    def mlflow_auth_database(self) -> Path:
        """MLflow's users and permissions (password hashes only)."""
        return self.home / "mlflow" / "basic-auth.db"

    def ensure(self, environ: Mapping[str, str] | None = None) -> ControlPlaneCredentials:
        """The credentials ``steward up`` gives the servers and Steward's processes; generated once if missing.

        A value in the environment wins and is not written down (a secret store set it).
        """
        environ = os.environ if environ is None else environ
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.folder.chmod(0o700)
        password = environ.get(MLFLOW_PASSWORD_ENV) or self._read_or_create(self.mlflow_password_file)
        auth_string = environ.get(PREFECT_AUTH_ENV) or \
            self._read_or_create(self.prefect_auth_file, prefix=f"{STEWARD_USER}:")
        self._read_or_create(self.flask_key_file)
        self._write_mlflow_auth_config(environ.get(MLFLOW_USERNAME_ENV) or STEWARD_USER)
        return ControlPlaneCredentials(environ.get(MLFLOW_USERNAME_ENV) or STEWARD_USER, SecretStr(password),
                                       SecretStr(auth_string))

    def load(self, environ: Mapping[str, str] | None = None) -> ControlPlaneCredentials:
        """The credentials as they are now (environment first, then the files); never generates any."""
        environ = os.environ if environ is None else environ
        password = environ.get(MLFLOW_PASSWORD_ENV) or self._read(self.mlflow_password_file, MLFLOW_PASSWORD_ENV)
        auth_string = environ.get(PREFECT_AUTH_ENV) or self._read(self.prefect_auth_file, PREFECT_AUTH_ENV)
        return ControlPlaneCredentials(environ.get(MLFLOW_USERNAME_ENV) or STEWARD_USER, SecretStr(password),
                                       SecretStr(auth_string))

    def mlflow_server_environment(self, credentials: ControlPlaneCredentials) -> dict[str, str]:
        """For ``mlflow server --app-name basic-auth``: its config, its CSRF key, the admin account to bootstrap.

        MLflow creates the admin user from these on its first start only; later starts ignore them.
        """
        return {MLFLOW_AUTH_CONFIG_ENV: str(self.mlflow_auth_config),
                MLFLOW_FLASK_KEY_ENV: self._read(self.flask_key_file, MLFLOW_FLASK_KEY_ENV),
                MLFLOW_ADMIN_USERNAME_ENV: credentials.mlflow_username,
                MLFLOW_ADMIN_PASSWORD_ENV: credentials.mlflow_password.get_secret_value()}

    def client_environment_from_files(self, environ: Mapping[str, str]) -> dict[str, str]:
        """The client variables the environment lacks and this home's files hold (nothing when it has none)."""
        found: dict[str, str] = {}
        if MLFLOW_PASSWORD_ENV not in environ and self.mlflow_password_file.is_file():
            found[MLFLOW_PASSWORD_ENV] = self.mlflow_password_file.read_text().strip()
            found.setdefault(MLFLOW_USERNAME_ENV, environ.get(MLFLOW_USERNAME_ENV) or STEWARD_USER)
        if PREFECT_AUTH_ENV not in environ and self.prefect_auth_file.is_file():
            found[PREFECT_AUTH_ENV] = self.prefect_auth_file.read_text().strip()
        return found

    def rotate_mlflow_password(self, mlflow_url: str, timeout: float = 30.0) -> None:
        """Change Steward's MLflow password in MLflow, then in the home; Steward's processes need a restart after.

        In this order so a failure leaves both as they were. Refused when the password comes from the
        environment: the secret store that set it is where it changes.
        """
        import httpx

        if os.environ.get(MLFLOW_PASSWORD_ENV) and os.environ[MLFLOW_PASSWORD_ENV] != self._read_if_present(
                self.mlflow_password_file):
            raise CredentialsError(f"{MLFLOW_PASSWORD_ENV} comes from the environment: change the password in MLflow "
                                   "and in the secret store that sets it")
        current = self.load(environ={})
        old, new = current.mlflow_password.get_secret_value(), secrets.token_urlsafe(32)
        try:
            response = httpx.patch(
                f"{mlflow_url.rstrip('/')}/api/2.0/mlflow/users/update-password",
                json={"username": current.mlflow_username, "password": new, "current_password": old},
                auth=(current.mlflow_username, old), timeout=timeout)
        except httpx.HTTPError as error:
            raise CredentialsError(f"cannot reach MLflow at {mlflow_url} ({type(error).__name__}): is the stack "
                                   "up? Nothing was changed") from None
        if response.status_code != 200:
            raise CredentialsError(f"MLflow refused the new password (HTTP {response.status_code}: "
                                   f"{response.text[:200]}); nothing was changed")
        _write_owner_only(self.mlflow_password_file, new + "\n")

    def rotate_prefect_auth_string(self) -> None:
        """A new auth string in the home; the server and every client take it at the next ``steward up``."""
        if os.environ.get(PREFECT_AUTH_ENV) and os.environ[PREFECT_AUTH_ENV] != self._read_if_present(
                self.prefect_auth_file):
            raise CredentialsError(f"{PREFECT_AUTH_ENV} comes from the environment: change it in the secret store "
                                   "that sets it")
        _write_owner_only(self.prefect_auth_file, f"{STEWARD_USER}:{secrets.token_urlsafe(32)}\n")

    @staticmethod
    def _read_if_present(path: Path) -> str | None:
        return path.read_text().strip() if path.is_file() else None

    def _write_mlflow_auth_config(self, admin_username: str) -> None:
        self.mlflow_auth_database.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        text = (
            "# written by `steward up --profile production`; the admin password is passed in the environment\n"
            "[mlflow]\n"
            f"default_permission = {DEFAULT_MLFLOW_PERMISSION}\n"
            f"database_uri = sqlite:///{self.mlflow_auth_database}\n"
            f"admin_username = {admin_username}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            f"auth_cache_ttl_seconds = {MLFLOW_AUTH_CACHE_SECONDS}\n"
        )
        _write_owner_only(self.mlflow_auth_config, text)

    def _read_or_create(self, path: Path, prefix: str = "") -> str:
        if path.is_file():
            return path.read_text().strip()
        value = prefix + secrets.token_urlsafe(32)
        _write_owner_only(path, value + "\n")
        return value

    @staticmethod
    def _read(path: Path, variable: str) -> str:
        try:
            value = path.read_text().strip()
        except FileNotFoundError:
            raise CredentialsError(f"no {variable} in the environment and no {path}: start the stack once with "
                                   f"`steward up --profile production` (it generates it) or set {variable}") from None
        if not value:
            raise CredentialsError(f"{path} is empty: delete it (the next `steward up` generates one) or set {variable}")
        return value


def _write_owner_only(path: Path, text: str) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    path.chmod(0o600)
