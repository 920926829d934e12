"""The gateway's JSON responses: bodies written without FastAPI's encoder, errors with their headers."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse, Response

from steward.serving.schema import RequestError


def is_json_media_type(content_type: str) -> bool:
    """``application/json`` or a ``+json`` type, with any parameters (``; charset=utf-8``)."""
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body, separators=(",", ":")), status, headers, media_type="application/json")


def error_response(error: RequestError, request_id: str | None = None) -> Response:
    """The error's body (with the request id when there is one) and the headers its status calls for."""
    body = error.body()
    headers = {}
    if request_id:
        body["request_id"] = request_id
        headers["x-request-id"] = request_id
    if error.status == 401:
        headers["www-authenticate"] = "Bearer"
    if error.status == 429:
        headers["retry-after"] = str(max(1, round(getattr(error, "retry_after", 1))))
    return JSONResponse(body, error.status, headers)
