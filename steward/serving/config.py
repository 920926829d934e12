"""What one gateway process serves and how."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from steward.serving.schema import DEFAULT_MAX_TEXT_LENGTH
from steward.spec import OutOfRangePolicy
from steward.store.writer import LogMode


class GatewayConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    models: tuple[str, ...] = Field(min_length=1, description="Registered model names this gateway serves.")
    poll_interval: float = Field(default=0.5, gt=0, le=300, description="Seconds between registry polls.")
    log_mode: LogMode = LogMode.BATCHED
    store_uri: str | None = Field(default=None, description="Prediction log URL; default: the settings' store_uri.")
    flush_interval: float = Field(default=2.0, gt=0, description="Seconds between Parquet flushes of the log.")
    wal_dir: Path | None = Field(default=None, description="Durable mode: local write-ahead log folder.")
    max_log_queue: int = Field(
        default=200_000, ge=1,
        description="Log rows accepted but not yet written, beyond which rows are dropped (batched) or refused (durable).",
    )
    max_batch_rows: int = Field(default=1000, ge=1, description="Rows one predict request may carry.")
    max_body_bytes: int = Field(default=8 * 2**20, ge=1024)
    max_feedback_labels: int = Field(default=10_000, ge=1)
    max_text_length: int = Field(
        default=DEFAULT_MAX_TEXT_LENGTH, ge=1, le=1_000_000,
        description="Characters in one text value (category, entity id, label); longer ones are refused with a 422.",
    )
    default_model: str | None = Field(
        default=None, description="The model `POST /invocations` scores (MLflow's scoring API); default: the first served.",
    )
    rate_limit: float | None = Field(default=None, gt=0, description="Predict requests per second per client.")
    rate_burst: int | None = Field(default=None, ge=1, description="Bucket size; default twice the rate.")
    client_header: str | None = Field(
        default=None, description="Header naming the client for rate limiting (set it behind a trusted proxy)."
    )
    out_of_range: OutOfRangePolicy = OutOfRangePolicy.REJECT
    shadow_collect_seconds: float = Field(
        default=1.0, ge=0, description="How long the shadow worker gathers copies into one batch (shadow process)."
    )
    shadow_inline_max_ms: float = Field(
        default=0.5, ge=0, description="A challenger whose model call on 16 rows takes at most this long scores its "
        "shadow copies on the event loop, after the answers; a slower one in the shadow process (0: always there).",
    )
    warm_versions: int = Field(default=2, ge=0, description="Extra versions per model kept loaded.")
    header_timeout: float = Field(default=10.0, gt=0, description="Seconds a client may take to send a request's "
                                  "headers (from connecting, or from the last answer); slower ones are dropped.")
    body_timeout: float = Field(default=30.0, gt=0, description="Seconds a client may take to send a request's body.")
    max_connections: int = Field(default=1000, ge=1, description="Open connections beyond which requests get 503.")
    registry_timeout: float = Field(
        default=10.0, gt=0, description="Seconds one registry poll may take before it counts as stalled (reported in "
        "/admin/status and /metrics; the next poll waits for the stalled one instead of piling up).",
    )
    stale_after: float = Field(
        default=30.0, gt=0, description="Age of the gateway's view of the registry beyond which /readyz says "
        "`degraded` (a rollback made since then may not be followed yet).",
    )
    unready_after: float | None = Field(
        default=None, gt=0, description="Age of the view beyond which /readyz answers 503; default never: a registry "
        "outage should not take every gateway out of the load balancer at once.",
    )
    admin_token: SecretStr | None = None
    control_key: SecretStr | None = Field(
        default=None, description="STEWARD_CONTROL_KEY: given, the gateway follows only registry changes Steward "
        "signed with it and serves only versions whose validation record it signed (steward.control).",
    )
    unverified_grace: float = Field(
        default=30.0, gt=0, description="Seconds an unsigned registry state may last (Steward writes the seal just "
        "after the change) before it raises a critical finding; it is never followed either way.",
    )
    keys_file: Path | None = Field(
        default=None, description="Client keys (`steward keys create`); once it holds a key, predict and feedback "
        "need one. None: no keys, predict and feedback open (the embedded demo).",
    )
    admin_url: str | None = Field(
        default=None, description="The URL at which flows reach this gateway's admin API; given, the gateway joins "
        "the fleet (steward.serving.fleet) so rollbacks and promotions tell it at once instead of waiting for its poll.",
    )

    @model_validator(mode="after")
    def _unique_models(self) -> GatewayConfig:
        if len(set(self.models)) != len(self.models):
            raise ValueError(f"models: {list(self.models)} names a model twice")
        if self.registry_timeout >= self.stale_after:
            raise ValueError(f"registry_timeout ({self.registry_timeout:g}s) must be shorter than stale_after "
                             f"({self.stale_after:g}s), or a single slow poll would read as a stale view")
        if self.unready_after is not None and self.unready_after < self.stale_after:
            raise ValueError("unready_after must be at least stale_after: a view is degraded before it is unready")
        if self.default_model is not None and self.default_model not in self.models:
            raise ValueError(f"default_model: {self.default_model!r} is not one of the served models {list(self.models)}")
        return self

    @property
    def invocations_model(self) -> str:
        """The model MLflow clients reach at ``POST /invocations``."""
        return self.default_model or self.models[0]

    @property
    def burst(self) -> int:
        if self.rate_burst is not None:
            return self.rate_burst
        return max(1, int(2 * (self.rate_limit or 0)))
