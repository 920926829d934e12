"""``steward serve``: the gateway in this process."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from steward.cli.common import HomeOption, begin, errors, fail


def serve(
    models: Annotated[list[str], typer.Argument(help="Registered model names to serve (by their aliases).")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    poll_interval: Annotated[float, typer.Option(help="Seconds between registry polls.")] = 0.5,
    log_mode: Annotated[str, typer.Option(help="Prediction log: batched, durable or off.")] = "batched",
    flush_interval: Annotated[float, typer.Option(help="Seconds between Parquet flushes of the log.")] = 2.0,
    wal_dir: Annotated[Path | None, typer.Option(help="Durable mode: local write-ahead log folder.")] = None,
    store_uri: Annotated[str | None, typer.Option(help="Prediction log URL (default: the settings').")] = None,
    max_batch_rows: Annotated[int, typer.Option(help="Rows one predict request may carry.")] = 1000,
    rate_limit: Annotated[float | None, typer.Option(help="Predict requests/s per client (default: off).")] = None,
    rate_burst: Annotated[int | None, typer.Option(help="Rate-limit bucket size (default: 2x the rate).")] = None,
    out_of_range: Annotated[str, typer.Option(help="Values outside a feature's range: reject or allow.")] = "reject",
    shadow_inline_max_ms: Annotated[float, typer.Option(
        help="Shadow copies of a challenger whose 16-row model call takes at most this long are scored on the "
             "event loop; a slower one's in the shadow process (0: always there).")] = 0.5,
    advertise_url: Annotated[str | None, typer.Option(
        help="URL at which flows reach this gateway's admin API (default: http://<host>:<port>); rollbacks and "
             "promotions tell the gateway there and wait for it.")] = None,
    max_text_length: Annotated[int, typer.Option(help="Characters in one text value; longer ones get 422.")] = 1024,
    header_timeout: Annotated[float, typer.Option(help="Seconds a client may take to send its headers.")] = 10.0,
    body_timeout: Annotated[float, typer.Option(help="Seconds a client may take to send its body.")] = 30.0,
    max_connections: Annotated[int, typer.Option(help="Open connections beyond which requests get 503.")] = 1000,
    stale_after: Annotated[float, typer.Option(
        help="Age of the registry view beyond which /readyz says degraded.")] = 30.0,
    unready_after: Annotated[float | None, typer.Option(
        help="Age of the registry view beyond which /readyz answers 503 (default: never).")] = None,
    log_level: Annotated[str, typer.Option(help="JSON log level.")] = "info",
    gc_tuning: Annotated[bool, typer.Option(
        help="Run the garbage collector's young generation less often (docs/gateway.md); --no-gc-tuning "
             "keeps Python's thresholds.")] = True,
    home: HomeOption = None,
) -> None:
    """Serve models by alias, split traffic by the registry's plan, log every prediction (docs/gateway.md)."""
    from pydantic import ValidationError

    from steward.serving import GatewayConfig
    from steward.serving import serve as run_gateway

    invocation = begin(home)
    settings = invocation.settings
    try:
        config = GatewayConfig(
            models=tuple(models), poll_interval=poll_interval, log_mode=log_mode, flush_interval=flush_interval,
            wal_dir=wal_dir, store_uri=store_uri, max_batch_rows=max_batch_rows, rate_limit=rate_limit,
            rate_burst=rate_burst, out_of_range=out_of_range, shadow_inline_max_ms=shadow_inline_max_ms,
            admin_token=settings.admin_token, admin_url=advertise_url, keys_file=settings.keys_file,
            control_key=settings.control_key, max_text_length=max_text_length, header_timeout=header_timeout,
            body_timeout=body_timeout, max_connections=max_connections, stale_after=stale_after,
            unready_after=unready_after,
        )
    except ValidationError as error:
        fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()))
    registry = invocation.registry()
    missing = [name for name in config.models if not registry.model_exists(name)]
    if missing:
        fail(f"no model named {missing} in {settings.resolved_tracking_uri}; train one with `steward train`")
    if settings.admin_token is None:
        errors.print("[yellow]no STEWARD_ADMIN_TOKEN: the admin API and forced arms are refused[/]")
    if settings.control_key is None:
        errors.print("[yellow]no STEWARD_CONTROL_KEY: this gateway follows any change written to MLflow[/]")
    if not settings.keys_file.exists():
        errors.print(f"[yellow]no client keys ({settings.keys_file}): predict and feedback are open to anyone who "
                     "reaches this gateway; create keys with `steward keys create` before exposing it[/]")
    run_gateway(config, host=host, port=port, log_level=log_level, tune_gc=gc_tuning)
