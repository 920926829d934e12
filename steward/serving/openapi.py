"""What the gateway's OpenAPI document declares beyond FastAPI's defaults: bodies, answers and security.

Predict and feedback read their bodies themselves (FastAPI's parameter solving costs more than a
one-row prediction), so FastAPI cannot infer the bodies: they are declared here, with every status
each route can answer, so that schema-driven clients and fuzzers send real bodies.
"""

from __future__ import annotations

from typing import Any

ERROR = {
    "type": "object", "required": ["error", "problems"],
    "properties": {
        "error": {"type": "string"},
        "problems": {"type": "array", "items": {"type": "object", "required": ["field", "message"],
                                                 "properties": {"field": {"type": "string"},
                                                                "message": {"type": "string"}}}},
        "request_id": {"type": "string"},
    },
}
_ROW = {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean", "null"]}}
_COLUMNS = {"type": "object", "additionalProperties": {"type": "array", "items": {"type": ["string", "number", "boolean", "null"]}}}
PREDICT_BODY = {
    "description": "One of MLflow's scoring payloads; rows name their columns.",
    "oneOf": [
        {"type": "object", "required": ["dataframe_split"], "additionalProperties": False, "properties": {
            "dataframe_split": {"type": "object", "required": ["columns", "data"], "properties": {
                "columns": {"type": "array", "items": {"type": "string"}},
                "data": {"type": "array", "items": {"type": "array"}}}}}},
        {"type": "object", "required": ["dataframe_records"], "additionalProperties": False,
         "properties": {"dataframe_records": {"type": "array", "items": _ROW}}},
        {"type": "object", "required": ["inputs"], "additionalProperties": False,
         "properties": {"inputs": {"oneOf": [{"type": "array", "items": _ROW}, _COLUMNS]}}},
        {"type": "object", "required": ["instances"], "additionalProperties": False,
         "properties": {"instances": {"oneOf": [{"type": "array", "items": _ROW}, _COLUMNS]}}},
    ],
}
PREDICT_ANSWER = {
    "type": "object", "required": ["request_id", "model", "predictions"],
    "properties": {"request_id": {"type": "string"}, "model": {"type": "string"},
                   "version": {"type": ["string", "null"]}, "arm": {"type": ["string", "null"]},
                   "predictions": {"type": "array"}, "scores": {"type": "array"}, "classes": {"type": "array"},
                   "probabilities": {"type": "array"}, "versions": {"type": "array"}, "arms": {"type": "array"}},
}
FEEDBACK_BODY = {
    "type": "object", "required": ["labels"], "additionalProperties": False,
    "properties": {"labels": {"type": "array", "minItems": 1, "items": {
        "type": "object", "required": ["request_id", "label"], "additionalProperties": False,
        "properties": {"request_id": {"type": "string", "minLength": 1},
                       "row": {"type": "integer", "minimum": 0},
                       "label": {"type": ["string", "number", "boolean"]}}}}},
}
FEEDBACK_ANSWER = {"type": "object", "required": ["model", "accepted", "relabelled"],
                   "properties": {"model": {"type": "string"}, "accepted": {"type": "integer"},
                                  "relabelled": {"type": "integer"}}}
PLAN_BODY = {"type": "object", "required": ["plan", "reason"],
             "properties": {"plan": {"type": "object", "description": "A traffic plan: mode canary, ab, shadow or "
                                                                      "blue_green and its fields (docs/gateway.md)."},
                            "reason": {"type": "string", "minLength": 1}}}
REFRESH_BODY = {"type": "object", "properties": {"expect": {"type": "object"}}}

_MEANINGS = {
    400: "The body is not what the route reads", 401: "Credentials missing or not valid",
    403: "The identity lacks the role, or the feature is off", 404: "No such model here",
    408: "The client sent its body too slowly", 409: "Conflicts with the registry's state",
    413: "Too many rows or bytes", 415: "The body is not JSON", 422: "Values that fail validation",
    429: "Rate limited", 500: "A model failed to score (a gateway-side fault)",
    503: "Not ready, or the log could not record the request",
}


def _answers(ok: dict[str, Any] | None, *codes: int, ok_type: str = "application/json") -> dict[str, Any]:
    answers: dict[str, Any] = {"200": {"description": "OK"}}
    if ok is not None:
        answers["200"]["content"] = {ok_type: {"schema": ok}}
    for code in codes:
        answers[str(code)] = {"description": _MEANINGS[code], "content": {"application/json": {"schema": ERROR}}}
    return answers


def _body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"requestBody": {"required": required, "content": {"application/json": {"schema": schema}}}}


BEARER = [{"bearer": []}]
OPEN_OR_BEARER: list[dict[str, list[str]]] = [{}, {"bearer": []}]
PREDICT = {**_body(PREDICT_BODY), "security": OPEN_OR_BEARER,
           "responses": _answers(PREDICT_ANSWER, 400, 401, 403, 404, 408, 409, 413, 415, 422, 429, 500, 503)}
INVOCATIONS = {**_body(PREDICT_BODY), "security": OPEN_OR_BEARER,
               "responses": _answers({"type": "object", "required": ["predictions"],
                                      "properties": {"predictions": {"type": "array"}}},
                                     400, 401, 403, 408, 409, 413, 415, 422, 429, 500, 503)}
FEEDBACK = {**_body(FEEDBACK_BODY), "security": OPEN_OR_BEARER,
            "responses": _answers(FEEDBACK_ANSWER, 400, 401, 403, 404, 408, 409, 413, 415, 422, 503)}
READYZ = {"responses": {"200": {"description": "Serving (status ready or degraded)",
                                "content": {"application/json": {"schema": {"type": "object"}}}},
                        "503": {"description": "Unready", "content": {"application/json": {"schema": {"type": "object"}}}}}}
METRICS = {"security": OPEN_OR_BEARER, "responses": {
    "200": {"description": "Prometheus text; OpenMetrics when the Accept header asks for it",
            "content": {"text/plain": {"schema": {"type": "string"}},
                        "application/openmetrics-text": {"schema": {"type": "string"}}}},
    **{k: v for k, v in _answers(None, 401, 403, 503).items() if k != "200"}}}
ADMIN_STATUS = {"security": BEARER, "responses": _answers({"type": "object"}, 401, 403, 503)}
ADMIN_REFRESH = {"security": BEARER, "responses": _answers({"type": "object"}, 401, 403, 503)}
ADMIN_REFRESH_MODEL = {**_body(REFRESH_BODY, required=False), "security": BEARER,
                       "responses": _answers({"type": "object"}, 400, 401, 403, 404, 408, 413, 415, 422, 503)}
ADMIN_FLUSH = {"security": BEARER, "responses": _answers({"type": "object"}, 401, 403, 503)}
ADMIN_PLAN = {**_body(PLAN_BODY), "security": BEARER,
              "responses": _answers({"type": "object"}, 400, 401, 403, 404, 408, 409, 413, 415, 422, 503)}

SECURITY_SCHEMES = {"bearer": {"type": "http", "scheme": "bearer", "description": (
    "A client key (`steward keys create`) or the admin token. Predict and feedback need a key once the gateway "
    "has keys; the admin API needs a key with the route's role (docs/security.md).")}}


def add_security_schemes(document: dict[str, Any]) -> dict[str, Any]:
    document.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
    return document
