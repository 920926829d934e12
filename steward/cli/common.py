"""What every ``steward`` command shares: the consoles, the common options, and one invocation helper.

Flows are imported by :meth:`Invocation.run_flow`, after ``apply_environment()`` has pointed Prefect and
MLflow at the Steward home: both libraries read their settings when first imported.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from steward.config import Settings, apply_environment, reset_settings

console = Console()
errors = Console(stderr=True)

HomeOption = Annotated[
    Path | None, typer.Option("--home", help="Steward home folder (default: $STEWARD_HOME or ./.steward).")
]
SpecArgument = Annotated[Path, typer.Argument(help="Path of the model spec (YAML).")]
AsOfOption = Annotated[
    datetime | None, typer.Option(help="End of the period looked at, in UTC (default: now).")
]

ErrorTypes = Callable[[], tuple[type[Exception], ...]]


def fail(message: str, code: int = 1) -> NoReturn:
    errors.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code=code)


def exit_unless(succeeded: bool) -> None:
    """Exit 1 after the output when the command's procedure did not reach its goal."""
    if not succeeded:
        raise typer.Exit(code=1)


def user_errors() -> tuple[type[Exception], ...]:
    """Errors a user can cause and fix: printed as a message, never as a traceback."""
    from steward.registry.errors import RegistryError
    from steward.spec import SpecError
    from steward.training.data import DataError

    return (SpecError, DataError, RegistryError, FileNotFoundError)


def no_user_errors() -> tuple[type[Exception], ...]:
    """For a long-running process whose errors stay tracebacks."""
    return ()


def registry_errors() -> tuple[type[Exception], ...]:
    from steward.registry.errors import RegistryError

    return (RegistryError,)


def check_spec(spec: Path, code: int = 1) -> None:
    """Fail fast on a bad spec, before a flow run (and an embedded Prefect server) starts."""
    from steward.spec import SpecError, load_spec

    try:
        load_spec(spec)
    except SpecError as error:
        fail(str(error), code)


@dataclass(frozen=True)
class Invocation:
    """One run of a command: the environment applied and its specs checked, so flows may be imported."""

    settings: Settings
    error_exit: int = 1

    def registry(self):
        from steward.registry.adapter import Registry

        return Registry.from_settings(self.settings)

    def run_flow(self, flow: str, *, status: str | None = None, errors: ErrorTypes = user_errors,
                 **parameters: Any) -> Any:
        """Import ``flow`` ("module:function") and run it; a user's error exits with its message."""
        module, name = flow.split(":")
        run = getattr(importlib.import_module(module), name)
        try:
            with console.status(status) if status else nullcontext():
                return run(**parameters)
        except errors() as error:
            fail(str(error), self.error_exit)


def begin(home: Path | None, *specs: Path, error_exit: int = 1) -> Invocation:
    """Point Prefect and MLflow at the home (``--home`` wins over the environment), then check the specs."""
    if home is not None:
        os.environ["STEWARD_HOME"] = str(home)
    reset_settings()
    invocation = Invocation(apply_environment(), error_exit)
    for spec in specs:
        check_spec(spec, error_exit)
    return invocation
