"""The FastAPI application: routes only; the handling lives in ``Gateway`` and ``Admin``."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_CONTENT_TYPE
from starlette.concurrency import run_in_threadpool
from starlette.routing import Route

from steward.serving import openapi
from steward.serving.admin import Admin
from steward.serving.auth import Action
from steward.serving.config import GatewayConfig
from steward.serving.gateway import Gateway
from steward.serving.responses import error_response
from steward.serving.schema import RequestError

if TYPE_CHECKING:
    from steward.registry.adapter import Registry
    from steward.store.reader import PredictionStore

log = logging.getLogger(__name__)


def _telemetry() -> dict[str, bool] | None:
    """FastAPI's OpenTelemetry instrumentation if OpenTelemetry is configured when the app is made
    (e.g. under ``opentelemetry-instrument``); otherwise off, rather than looked up on every request."""
    try:
        configured = FastAPI()._native_telemetry.enabled()
    except AttributeError:  # another FastAPI: leave its defaults
        return None
    return None if configured else {"tracing": False, "metrics": False, "logs": False}


def create_app(
    config: GatewayConfig, *, registry: Registry | None = None, store: PredictionStore | None = None
) -> FastAPI:
    """A gateway app serving ``config.models``; the registry and store default to the settings'."""
    gateway = Gateway(config, registry=registry, store=store)
    admin = Admin(gateway)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(gateway.start)
        try:
            yield
        finally:
            await gateway.batcher.idle()  # shadow copies still on the loop reach the log too
            await run_in_threadpool(gateway.stop)

    app = FastAPI(title="Steward gateway", lifespan=lifespan, openapi_url="/openapi.json", docs_url="/docs",
                  redoc_url=None, telemetry=_telemetry())
    app.state.gateway = gateway

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, error: RequestError) -> Response:
        return error_response(error)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path,
                      extra={"event": "unhandled_error", "path": request.url.path})
        return JSONResponse({"error": f"internal error ({type(error).__name__}); see the gateway's logs", "problems": []},
                            500)

    @app.post("/v1/models/{name}/predict", summary="Score rows (MLflow dataframe_split or dataframe_records)")
    async def predict(name: str, request: Request) -> Response:
        return await gateway.predict(name, request)

    async def predict_route(request: Request) -> Response:
        return await gateway.predict(request.path_params["name"], request)

    # Predict is served by a plain Starlette route placed in front of the FastAPI route above,
    # which stays for the OpenAPI docs: FastAPI's per-request parameter solving and response
    # wrapping cost more CPU than a one-row prediction itself. The app's middleware and
    # exception handlers apply to it as to every route.
    app.router.routes.insert(0, Route("/v1/models/{name}/predict", predict_route, methods=["POST"]))

    @app.post("/invocations", summary="MLflow's scoring API on the default model: answers {\"predictions\": [...]}")
    async def invocations(request: Request) -> Response:
        return await gateway.predict(config.invocations_model, request, mlflow_answer=True)

    @app.post("/v1/models/{name}/feedback", summary="Labels for logged predictions, by request id and row")
    async def feedback(name: str, request: Request) -> Response:
        return await gateway.feedback(name, request)

    @app.get("/healthz", summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz", summary="Every served model is loaded and digest-verified")
    async def readyz() -> Response:
        readiness = gateway.readiness()
        return JSONResponse(readiness.describe(), 200 if readiness.serving else 503)

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics(request: Request) -> Response:
        if gateway.keys_required():
            admin.authorize(request, Action.VIEW)
        if "application/openmetrics-text" in request.headers.get("accept", ""):
            return Response(gateway.render_metrics(openmetrics=True), media_type=OPENMETRICS_CONTENT_TYPE)
        return Response(gateway.render_metrics(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/admin/status", summary="Loaded versions, plans, problems and log state")
    async def admin_status(request: Request) -> dict[str, Any]:
        admin.authorize(request, Action.VIEW)
        return admin.status()

    @app.post("/admin/refresh", summary="Re-read the registry now (all models)")
    async def admin_refresh(request: Request) -> dict[str, Any]:
        admin.authorize(request, Action.OPERATE)
        return await admin.refresh(None)

    @app.post("/admin/models/{name}/refresh", summary="Re-read the registry now (one model); the answer says what "
              "it serves. A body {\"expect\": {champion, challenger, plan}} answers at once if it serves that already.")
    async def admin_refresh_model(name: str, request: Request) -> dict[str, Any]:
        admin.authorize(request, Action.OPERATE)
        told = request.headers.get("content-length", "0") not in ("", "0")
        return await admin.refresh(name, await gateway.read_json(request) if told else None)

    @app.post("/admin/log/flush", summary="Write every queued prediction and label to the log now")
    async def admin_flush_log(request: Request) -> dict[str, Any]:
        """For a reader that must see what was just acknowledged (a backfill, then its maintenance run)."""
        admin.authorize(request, Action.OPERATE)
        return await admin.flush_log()

    @app.put("/admin/models/{name}/traffic-plan", summary="Store a new traffic plan in the registry and apply it")
    async def admin_set_plan(name: str, request: Request) -> dict[str, Any]:
        actor = admin.authorize(request, Action.CONFIGURE)
        return await admin.set_plan(name, await gateway.read_json(request), actor)

    def truthful_openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, routes=app.routes)
            for path, operations in document["paths"].items():
                for method, operation in operations.items():
                    declared = OPERATIONS.get((method, path))
                    if declared is not None:
                        operation.update(declared)
            for name in ("HTTPValidationError", "ValidationError"):  # FastAPI's, which these routes never answer
                document.get("components", {}).get("schemas", {}).pop(name, None)
            app.openapi_schema = openapi.add_security_schemes(document)
        return app.openapi_schema

    app.openapi = truthful_openapi  # type: ignore[method-assign]
    return app


OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/v1/models/{name}/predict"): openapi.PREDICT,
    ("post", "/invocations"): openapi.INVOCATIONS,
    ("post", "/v1/models/{name}/feedback"): openapi.FEEDBACK,
    ("get", "/readyz"): openapi.READYZ,
    ("get", "/metrics"): openapi.METRICS,
    ("get", "/admin/status"): openapi.ADMIN_STATUS,
    ("post", "/admin/refresh"): openapi.ADMIN_REFRESH,
    ("post", "/admin/models/{name}/refresh"): openapi.ADMIN_REFRESH_MODEL,
    ("post", "/admin/log/flush"): openapi.ADMIN_FLUSH,
    ("put", "/admin/models/{name}/traffic-plan"): openapi.ADMIN_PLAN,
}
