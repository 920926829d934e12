"""The ``steward`` command: the commands live in modules by area; this table lists them in help order."""

from __future__ import annotations

import sys

import typer

from steward.cli import backtest, delivery, images, keys, models, monitoring, serving, stack

app = typer.Typer(
    name="steward",
    help="Keep machine-learning models healthy in production.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _main() -> None:
    """Keep machine-learning models healthy in production."""


COMMANDS = (
    models.init, models.adopt, models.train, models.validate, models.status, models.history, models.promote, models.rollback,
    delivery.canary, delivery.blue_green,
    serving.serve,
    monitoring.health, monitoring.ledger, monitoring.ledger_resolve, monitoring.drift, monitoring.maintenance,
    monitoring.model_card, monitoring.compact, backtest.backtest,
    stack.up, stack.down, stack.stack_status, stack.rotate_credentials, stack.deployments, stack.worker,
    delivery.ab_test, delivery.shadow,
    models.example, stack.demo,
)
for command in COMMANDS:
    app.command()(command)  # the name is the function's, with dashes: blue_green -> blue-green
app.add_typer(keys.app)
app.add_typer(images.app)  # `steward images build`


def main() -> None:  # pragma: no cover - console-script entry point
    sys.exit(app())
