"""Commands of a model's life in the registry: example data, train, validate, status, history, promote,
rollback, and the serverless walk-through ``steward example``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from steward.cli.common import HomeOption, Invocation, SpecArgument, begin, console, fail, registry_errors

ModelArgument = Annotated[str, typer.Argument(help="Model name.")]


def init(
    directory: Annotated[Path, typer.Argument(help="Where to write the example (or the spec).")] = Path("."),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing example.")] = False,
    from_data: Annotated[Path | None, typer.Option(
        "--from-data", help="Draft spec.yaml from this Parquet or CSV file instead of writing the example.")] = None,
    from_model: Annotated[str | None, typer.Option(
        "--from-model", help="Write a spec from this version's signature: models:/NAME/VERSION.")] = None,
    target: Annotated[str | None, typer.Option(help="With --from-data or --from-model: the label column.")] = None,
    timestamp: Annotated[str | None, typer.Option(help="With --from-data: the event time column, if any.")] = None,
    name: Annotated[str | None, typer.Option(help="With --from-data: the model name (default: the file's name).")
                    ] = None,
    task: Annotated[str, typer.Option(help="With --from-model: binary_classification, multiclass_classification "
                                           "or regression.")] = "binary_classification",
    score_column: Annotated[str | None, typer.Option(
        help="With --from-model, for a python-function model: the output column with the positive class's "
             "probability.")] = None,
    home: HomeOption = None,
) -> None:
    """Write the example credit-default spec and its training data, draft a spec from your data file
    (``--from-data``), or write one from a registered model's signature (``--from-model``)."""
    if from_data is not None and from_model is not None:
        fail("pass --from-data or --from-model, not both")
    if from_data is not None:
        _init_from_data(directory, from_data, target, timestamp, name, force)
        return
    if from_model is not None:
        _init_from_model(directory, from_model, target, task, score_column, force, home)
        return
    from steward.simulation.examples import write_example

    with console.status("generating example data with the scenario simulator"):
        try:
            spec_path = write_example(directory, overwrite=force)
        except FileExistsError as error:
            fail(str(error))
    console.print(f"wrote [bold]{spec_path}[/] and its data; next: [bold]steward train {spec_path}[/]")


def _init_from_model(directory: Path, uri: str, target: str | None, task: str, score_column: str | None,
                     force: bool, home: Path | None) -> None:
    import yaml

    from steward.spec import Task

    if not target:
        fail("the signature cannot tell which column is the label: pass --target COLUMN")
    if task not in {t.value for t in Task}:
        fail(f"--task {task!r} is not one of {', '.join(t.value for t in Task)}")
    registry = begin(home).registry()
    try:
        document = registry.spec_document_for(uri, target=target, task=task, score_column=score_column)
    except registry_errors() as error:
        fail(str(error))
    path = directory / f"{document['name']}.yaml" if directory.is_dir() or not directory.suffix else directory
    if path.exists() and not force:
        fail(f"{path} exists; pass --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    console.print(f"wrote [bold]{path}[/] from {uri}'s signature; review the features (ranges, categories) and "
                  f"data.path, then: [bold]steward adopt {document['name']} --spec {path} --reference URL "
                  f"--holdout URL[/]")


def adopt(
    model: Annotated[str, typer.Argument(help="Registered model name (as the team registered it).")],
    spec: Annotated[Path, typer.Option(help="The model's spec (`steward init --from-model` writes one).")],
    reference: Annotated[str, typer.Option(help="Reference data for drift: a path or any fsspec URL.")],
    holdout: Annotated[str, typer.Option(help="Labelled held-out data for the gate: a path or any fsspec URL.")],
    version: Annotated[str | None, typer.Option(help="Version to adopt (default: the newest).")] = None,
    alias: Annotated[str | None, typer.Option(help="Adopt the version one of the team's aliases names.")] = None,
    home: HomeOption = None,
) -> None:
    """Bring a version registered by plain MLflow code under maintenance (the adopt flow); its other versions,
    aliases and tags stay as they were."""
    invocation = begin(home, spec)
    outcome = invocation.run_flow("flows.adopt:adopt", status=f"adopting {model}", model=model,
                                  spec_path=str(spec), reference=reference, holdout=holdout, version=version,
                                  alias=alias)
    console.print(f"[bold]{outcome.model} v{outcome.version}[/] ({outcome.flavor}, scores: {outcome.scores}) "
                  f"adopted; lineage: {outcome.lineage}")
    if not outcome.passed:
        fail(f"{outcome.model} v{outcome.version} was {outcome.action} by the gate: {outcome.summary}")
    console.print(f"[green]passed the gate[/] and is now [bold]{outcome.action}[/]")


def _init_from_data(directory: Path, data: Path, target: str | None, timestamp: str | None, name: str | None,
                    force: bool) -> None:
    import re

    from steward.spec import SpecError, parse_spec
    from steward.training.data import DataError, draft_spec, read_frame, split_findings

    if not target:
        fail("--from-data needs --target: the column the model should predict")
    spec_path = directory / "spec.yaml"
    if spec_path.exists() and not force:
        fail(f"{spec_path} exists: pass --force to overwrite it, or choose another directory")
    model = name or re.sub(r"[^a-z0-9_-]+", "-", data.stem.lower()).strip("-_") or "model"
    directory.mkdir(parents=True, exist_ok=True)
    try:
        relative = data.resolve().relative_to(directory.resolve())
    except ValueError:
        relative = data.resolve()
    try:
        draft = draft_spec(read_frame(str(data)), name=model, target=target, timestamp=timestamp,
                           data_path=str(relative))
        spec = parse_spec(draft.document, source=f"the spec drafted from {data}")
    except (DataError, SpecError) as error:
        fail(str(error))
    spec_path.write_text(draft.to_yaml())
    console.print(f"wrote [bold]{spec_path}[/]: {spec.task.value} on {target!r}, {len(spec.features)} features"
                  + (f", positive_label {spec.positive_label!r}" if spec.positive_label is not None else ""))
    for reason in draft.left_out:
        console.print(f"[yellow]left out[/] {reason}")
    for finding in split_findings(spec):
        console.print(f"[yellow]note[/] {finding}")
    console.print(f"review it, then: [bold]steward train {spec_path}[/]")


def _retrain(invocation: Invocation, spec: Path, reason: str, force: bool) -> Any:
    result = invocation.run_flow("flows.retrain:retrain", status=f"training a candidate from {spec}",
                                 spec_path=str(spec), reason=reason, force=force)
    if not result.registered:
        from steward.training.train import RetrainSkip

        if result.skip is RetrainSkip.TOO_FEW_ROWS:
            fail(f"retrain skipped, too few rows: {result.skipped_because}")
        fail(f"retrain skipped: {result.skipped_because}; pass --force to retrain anyway")
    return result


def _validate(invocation: Invocation, spec: Path, version: str | None) -> Any:
    return invocation.run_flow("flows.validate:validate", status="validating the candidate against the champion",
                               spec_path=str(spec), version=version)


def train(
    spec: SpecArgument,
    reason: Annotated[str, typer.Option(help="Why this retrain runs; recorded with the version.")] = "manual run",
    force: Annotated[bool, typer.Option("--force", help="Ignore the spec's retrain cooldown and budget.")] = False,
    home: HomeOption = None,
) -> None:
    """Train and register a candidate version (the retrain flow)."""
    result = _retrain(begin(home, spec), spec, reason, force)
    console.print(
        f"registered [bold]{result.model} v{result.version}[/] ({result.semver}) as candidate; "
        + ", ".join(f"{k}={v:.4f}" for k, v in sorted(result.metrics.items()))
    )
    if result.slow_training:
        console.print("[yellow]training was slow against earlier runs; see the version's tags[/]")


def validate(
    spec: SpecArgument,
    version: Annotated[str | None, typer.Option(help="Version to validate (default: newest candidate).")] = None,
    home: HomeOption = None,
) -> None:
    """Gate a candidate against the champion (the validate flow)."""
    outcome = _validate(begin(home, spec), spec, version)
    _print_report(outcome.report)
    if not outcome.passed:
        fail(f"{outcome.model} v{outcome.version} was {outcome.action}; the registry's aliases are unchanged")
    console.print(f"[green]{outcome.model} v{outcome.version} passed[/] and is now [bold]{outcome.action}[/]")


def _print_report(report: Any) -> None:
    table = Table(title=f"validation of {report.model} v{report.candidate_version}")
    for column in ("check", "result", "reason"):
        table.add_column(column, overflow="fold")
    colours = {"passed": "green", "failed": "red", "skipped": "yellow", "inconclusive": "yellow"}
    for check in report.checks:
        table.add_row(check.name, f"[{colours[check.status.value]}]{check.status.value}[/]", check.reason)
    console.print(table)


def status(
    model: Annotated[str | None, typer.Argument(help="Model name (default: list the models).")] = None,
    all_models: Annotated[bool, typer.Option("--all", help="List every registered model, not only Steward's.")]
    = False,
    home: HomeOption = None,
) -> None:
    """Versions, aliases, lineage and the last validation of a model; without one, the models Steward maintains."""
    invocation = begin(home)
    registry = invocation.registry()
    if model is None:
        managed = set(registry.managed_models())
        names = registry.all_models() if all_models else sorted(managed)
        if not names:
            console.print("no models maintained by Steward yet; `steward train` or `steward adopt` one"
                          + ("" if all_models else " (`--all` lists every registered model)"))
        for name in names:
            champion = registry.alias_version(name, "champion") if name in managed else None
            mark = ("maintained" + (f", champion v{champion}" if champion else "")) if name in managed \
                else "not maintained by Steward"
            console.print(f"{name}  [dim]{mark}[/]", highlight=False)
        return
    if not registry.model_exists(model):
        fail(f"no model named {model!r} in {invocation.settings.resolved_tracking_uri}; "
             "train one with `steward train`")
    _print_status(registry, model)


def _print_status(registry: Any, model: str) -> None:
    table = Table(title=f"{model}")
    for column in ("version", "semver", "aliases", "stage", "validation", "data sha256", "rows", "code", "created"):
        table.add_column(column, overflow="fold")
    for info in registry.list_versions(model):
        table.add_row(
            info.version,
            info.semver or "",
            ", ".join(info.aliases),
            "archived" if info.archived else (info.stage or ""),
            info.tags.get("steward.validation.status", ""),
            (info.tags.get("steward.data_sha256") or "")[:12],
            info.tags.get("steward.data_rows", ""),
            (info.tags.get("steward.code_version") or "")[:12],
            info.created.strftime("%Y-%m-%d %H:%M"),
        )
    console.print(table)
    champion = registry.champion(model)
    if champion:
        console.print(f"[bold]champion v{champion.version}[/] lineage:")
        for key in ("data_source", "data_sha256", "data_rows", "data_window_start", "data_window_end",
                    "code_version", "training_seconds", "schema_fingerprint", "artifact_digest"):
            console.print(f"  {key:<20} {champion.tags.get(f'steward.{key}', '')}")
        console.print("  metrics              " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(champion.metrics.items())))
        console.print(f"  last validation      {champion.tags.get('steward.validation.summary', '')}")
    target = registry.rollback_target(model)
    console.print(f"rollback target: {'v' + target if target else 'none'}")


def history(model: ModelArgument, home: HomeOption = None) -> None:
    """Every alias change, rollback and archive of a model: when, who, what, why."""
    entries = begin(home).registry().history(model)
    if not entries:
        console.print(f"no recorded changes for {model!r}")
        return
    for entry in entries:
        console.print(entry.describe(), highlight=False)


def promote(
    model: ModelArgument,
    version: Annotated[str, typer.Argument(help="Version to make champion.")],
    reason: Annotated[str, typer.Option(help="Why; recorded in the history.")],
    home: HomeOption = None,
) -> None:
    """Make a validated version the champion (the old one stays the rollback target); returns once every live
    gateway serves it, or names the gateways that did not answer."""
    from steward.serving.fleet import Fleet, ServingTarget, tell_gateways

    invocation = begin(home)
    settings = invocation.settings
    registry = invocation.registry()
    try:
        entry = registry.promote(model, version, reason=reason)
        target = ServingTarget.of(registry.serving_state(model))
    except registry_errors() as error:
        fail(str(error))
    console.print(entry.describe(), highlight=False)
    _print_reach(tell_gateways(Fleet(settings.resolved_store_uri), model, target, settings.admin_token,
                               actor=settings.actor))


def _print_reach(reach) -> None:
    """Which gateways acknowledged a change; the ones that did not, in yellow (the change stands)."""
    colour = "green" if reach.acknowledged else "yellow"
    console.print(f"[{colour}]gateways:[/] {reach.describe()}", highlight=False)


def rollback(
    model: ModelArgument,
    reason: Annotated[str, typer.Option(help="Why; recorded in the history, the event and the incident.")],
    home: HomeOption = None,
) -> None:
    """Return the champion to the previous champion in one step (the rollback flow): traffic plan reset,
    any rollout in progress stopped, every live gateway told and waited for, event emitted, incident recorded."""
    invocation = begin(home)
    if not reason.strip():
        fail("say why with --reason: it goes into the history, the event and the incident")
    outcome = invocation.run_flow("flows.rollback:rollback", errors=registry_errors,
                                  model=model, reason=reason, actor=invocation.settings.actor)
    console.print(f"[bold]{outcome.model}[/] rolled back from v{outcome.from_version} to "
                  f"[bold]v{outcome.to_version}[/] by {outcome.actor}; incident {outcome.incident_id}")
    for stopped in outcome.stopped_rollouts:
        console.print(f"[yellow]stopped[/] {stopped}")
    if outcome.reach is not None:
        _print_reach(outcome.reach)


def example(home: HomeOption = None) -> None:
    """No servers: the example model trained, validated, made champion, its lineage shown."""
    from steward.simulation.examples import write_example

    invocation = begin(home)
    settings = invocation.settings
    spec_path = settings.home / "examples" / "credit_default" / "spec.yaml"
    if not spec_path.exists():
        with console.status("writing the example spec and generating its data"):
            spec_path = write_example(settings.home / "examples")
    console.rule("1. retrain")
    result = _retrain(invocation, spec_path, "steward example", force=True)
    console.print(f"candidate {result.model} v{result.version} ({result.semver})")
    console.rule("2. validate")
    outcome = _validate(invocation, spec_path, result.version)
    _print_report(outcome.report)
    console.print(f"{outcome.model} v{outcome.version}: {outcome.action}")
    console.rule("3. registry status and lineage")
    _print_status(invocation.registry(), outcome.model)
    console.print(
        f"\nstate is under [bold]{settings.home}[/]; try `steward history {outcome.model}` "
        f"or `uv run mlflow ui --backend-store-uri {settings.resolved_tracking_uri}`"
    )
