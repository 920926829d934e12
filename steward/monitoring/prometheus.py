"""A Prometheus server's files for Steward's gateways: its config, the alert rules and the scrape targets.

``steward up --with-prometheus`` writes them under ``<home>/prometheus`` and runs Debian's ``prometheus``
on them; the integration test writes the same files with a 1 s scrape and short rule timing. Gateways are
listed in a ``file_sd`` targets file that Prometheus re-reads when it changes, so every replica is scraped
without restarting Prometheus. No process handling here: ``steward.stack`` starts and stops the server.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from steward.monitoring.alerts import GATEWAY_JOB, RuleTiming, render_alert_rules
from steward.spec import ModelSpec

CONFIG_FILE = "prometheus.yml"
RULES_FILE = "alerts.yml"
TARGETS_FILE = "gateways.json"
TOKEN_FILE = "gateway-token"
DATA_DIR = "data"


class PrometheusSetupError(RuntimeError):
    """Prometheus cannot be set up as asked: says what is missing and how to get it."""


@dataclass(frozen=True)
class ScrapeSettings:
    """How often Prometheus scrapes the gateways and evaluates the alert rules, and the rules' timing."""

    scrape_interval: str = "15s"
    evaluation_interval: str = "15s"
    rule_timing: RuleTiming = RuleTiming()


@dataclass(frozen=True)
class PrometheusFiles:
    """Where one Prometheus server's files are: pass ``config`` and ``data`` to the binary."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def rules(self) -> Path:
        return self.root / RULES_FILE

    @property
    def targets(self) -> Path:
        return self.root / TARGETS_FILE

    @property
    def token(self) -> Path:
        return self.root / TOKEN_FILE

    @property
    def data(self) -> Path:
        return self.root / DATA_DIR


def prometheus_binary() -> str:
    """The ``prometheus`` executable on PATH (Debian's package installs /usr/bin/prometheus)."""
    found = shutil.which("prometheus")
    if found is None:
        raise PrometheusSetupError("the prometheus executable is not on PATH: install it (apt-get install prometheus) "
                                   "or start the stack without --with-prometheus")
    return found


def prometheus_config(files: PrometheusFiles, scrape: ScrapeSettings, *, bearer_token: bool) -> dict[str, Any]:
    """The server's config: one job scraping every gateway listed in the targets file, the rules loaded."""
    job: dict[str, Any] = {
        "job_name": GATEWAY_JOB,
        "metrics_path": "/metrics",
        "file_sd_configs": [{"files": [str(files.targets)], "refresh_interval": "30s"}],
    }
    if bearer_token:  # /metrics needs a key once the gateway has client keys; the admin token may view
        job["authorization"] = {"type": "Bearer", "credentials_file": str(files.token)}
    return {
        "global": {"scrape_interval": scrape.scrape_interval, "evaluation_interval": scrape.evaluation_interval},
        "rule_files": [str(files.rules)],
        "scrape_configs": [job],
    }


def gateway_targets(addresses: Iterable[str]) -> list[dict[str, Any]]:
    """The ``file_sd`` document listing gateways by ``host:port``."""
    listed = sorted(dict.fromkeys(addresses))
    if not listed:
        raise PrometheusSetupError("no gateway to scrape: Prometheus needs at least one gateway address (host:port)")
    return [{"targets": listed, "labels": {}}]


def write_prometheus_files(files: PrometheusFiles, specs: Sequence[ModelSpec], gateways: Iterable[str],
                           scrape: ScrapeSettings = ScrapeSettings(), *, bearer_token: str | None = None) -> None:
    """Write the config, the specs' alert rules and the targets (and the token, owner-only) under ``files.root``."""
    gateways = list(gateways)
    gateway_targets(gateways)  # refuse an empty list before writing anything
    files.data.mkdir(parents=True, exist_ok=True)
    if bearer_token:
        files.token.write_text(bearer_token)
        os.chmod(files.token, 0o600)
    else:
        files.token.unlink(missing_ok=True)
    files.rules.write_text(render_alert_rules(specs, scrape.rule_timing))
    write_targets(files, gateways)
    files.config.write_text(yaml.safe_dump(prometheus_config(files, scrape, bearer_token=bool(bearer_token)),
                                           sort_keys=False))


def write_targets(files: PrometheusFiles, gateways: Iterable[str]) -> None:
    """Replace the targets file in one rename, so Prometheus never reads half of it."""
    partial = files.targets.with_suffix(".json.tmp")
    partial.write_text(json.dumps(gateway_targets(gateways), indent=2))
    partial.replace(files.targets)


def prometheus_command(files: PrometheusFiles, host: str, port: int) -> tuple[str, ...]:
    """The command line of a Prometheus server on ``host:port`` with its data under ``files.data``."""
    return (prometheus_binary(), f"--config.file={files.config}", f"--storage.tsdb.path={files.data}",
            f"--web.listen-address={host}:{port}", "--storage.tsdb.retention.time=15d")
