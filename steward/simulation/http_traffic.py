"""Send scenario rows to a running gateway over HTTP, and their labels to its feedback endpoint.

The demo, the delivery flows' tests and the benchmarks drive the real gateway with it.
Requests go only to the base URL given (a loopback address in tests) and every run is
bounded by a row count or a duration.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

import httpx
import numpy as np
import pandas as pd

from steward.registry.traffic import EVENT_TIME_HEADER
from steward.spec import ModelSpec

LABELS_PER_CALL = 1000  # the gateway's default limit per feedback call


@dataclass
class TrafficSummary:
    sent: int = 0
    ok: int = 0
    client_errors: int = 0  # 4xx: the request was refused
    server_errors: int = 0  # 5xx or transport failures
    labels_sent: int = 0
    by_arm: dict[str, int] = field(default_factory=dict)
    request_ids: list[str] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return self.server_errors


def _records(frame: pd.DataFrame, spec: ModelSpec) -> list[dict]:
    columns = list(spec.feature_names)
    if spec.entity_column and spec.entity_column in frame.columns:
        columns.append(spec.entity_column)
    subset = frame[columns].astype(object).where(frame[columns].notna(), None)
    return subset.to_dict(orient="records")


def _plain(value: object) -> object:
    return value.item() if isinstance(value, np.generic) else value


class TrafficSender:
    """Posts one row per request with a few concurrent connections; optionally sends labels back."""

    def __init__(
        self,
        base_url: str,
        spec: ModelSpec,
        *,
        concurrency: int = 4,
        send_labels: bool = True,
        timeout: float = 10.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.spec = spec
        self.concurrency = concurrency
        self.send_labels = send_labels
        self._client = httpx.Client(base_url=self.base_url, timeout=timeout, headers=headers or {},
                                    limits=httpx.Limits(max_connections=concurrency))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.summary = TrafficSummary()

    def close(self) -> None:
        self.stop()
        self._client.close()

    def __enter__(self) -> TrafficSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _post_one(self, record: dict, label: object | None) -> None:
        path = f"/v1/models/{self.spec.name}/predict"
        try:
            response = self._client.post(path, json={"dataframe_records": [record]})
        except httpx.HTTPError:
            with self._lock:
                self.summary.sent += 1
                self.summary.server_errors += 1
            return
        body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
        with self._lock:
            self.summary.sent += 1
            if response.status_code < 400:
                self.summary.ok += 1
                arm = body.get("arm") or "mixed"
                self.summary.by_arm[arm] = self.summary.by_arm.get(arm, 0) + 1
                self.summary.request_ids.append(body.get("request_id", ""))
            elif response.status_code < 500:
                self.summary.client_errors += 1
            else:
                self.summary.server_errors += 1
        if self.send_labels and label is not None and response.status_code < 400 and body.get("request_id"):
            feedback = {"labels": [{"request_id": body["request_id"], "row": 0, "label": label}]}
            answer = self._client.post(f"/v1/models/{self.spec.name}/feedback", json=feedback)
            if answer.status_code < 400:
                with self._lock:
                    self.summary.labels_sent += 1

    def _rows(self, frame: pd.DataFrame) -> Iterator[tuple[dict, object | None]]:
        labels = frame[self.spec.target].tolist() if self.spec.target in frame.columns else [None] * len(frame)
        for record, label in zip(_records(frame, self.spec), labels, strict=True):
            yield record, _plain(label)

    def send(self, frame: pd.DataFrame, *, duration: float | None = None, rate_per_second: float | None = None) -> (
        TrafficSummary
    ):
        """Send every row of ``frame`` (or until ``duration`` seconds or ``stop()``); blocks."""
        deadline = time.monotonic() + duration if duration else None
        interval = 1.0 / rate_per_second if rate_per_second else 0.0
        with ThreadPoolExecutor(self.concurrency) as pool:
            pending = []
            next_at = time.monotonic()
            for record, label in self._rows(frame):
                if self._stop.is_set() or (deadline and time.monotonic() >= deadline):
                    break
                if interval:
                    next_at += interval
                    time.sleep(max(0.0, next_at - time.monotonic()))
                pending.append(pool.submit(self._post_one, record, label))
                if len(pending) >= 4 * self.concurrency:
                    pending.pop(0).result()
            for future in pending:
                future.result()
        return self.summary

    def replay(self, frame: pd.DataFrame, *, rows_per_request: int = 20, labels_at: datetime | None = None) -> (
        TrafficSummary
    ):
        """Send recorded rows with their own times, then their labels as if they arrived at ``labels_at``.

        Each request carries ``rows_per_request`` consecutive rows (by the spec's timestamp
        column) and the gateway's event-time header set to its first row's time, so the log
        files it under the day it happened. Needs the admin token in ``headers``. Labels go
        in batches to the feedback endpoint once every request has been answered.
        """
        time_column = self.spec.timestamp_column
        if not time_column or time_column not in frame.columns:
            raise ValueError(f"replaying needs the rows' times: the frame has no {time_column!r} column")
        ordered = frame.sort_values(time_column, kind="stable").reset_index(drop=True)
        records = _records(ordered, self.spec)
        times = pd.to_datetime(ordered[time_column], utc=True)
        starts = range(0, len(ordered), rows_per_request)
        answered: list[tuple[int, str]] = []  # (first row, request id)

        def post(first: int) -> None:
            chunk = records[first:first + rows_per_request]
            headers = {EVENT_TIME_HEADER: times.iloc[first].isoformat()}
            try:
                response = self._client.post(f"/v1/models/{self.spec.name}/predict",
                                             json={"dataframe_records": chunk}, headers=headers)
            except httpx.HTTPError:
                response = None
            with self._lock:
                self.summary.sent += 1
                if response is not None and response.status_code < 400:
                    self.summary.ok += 1
                    answered.append((first, response.json()["request_id"]))
                elif response is not None and response.status_code < 500:
                    self.summary.client_errors += 1
                else:
                    self.summary.server_errors += 1

        with ThreadPoolExecutor(self.concurrency) as pool:
            list(pool.map(post, starts))
        if self.send_labels and labels_at is not None and self.spec.target in ordered.columns:
            labels = ordered[self.spec.target].tolist()
            items = [
                {"request_id": request_id, "row": row, "label": _plain(labels[first + row])}
                for first, request_id in sorted(answered)
                for row in range(min(rows_per_request, len(ordered) - first))
            ]
            for begin in range(0, len(items), LABELS_PER_CALL):
                answer = self._client.post(f"/v1/models/{self.spec.name}/feedback",
                                           json={"labels": items[begin:begin + LABELS_PER_CALL]},
                                           headers={EVENT_TIME_HEADER: labels_at.isoformat()})
                answer.raise_for_status()
                self.summary.labels_sent += answer.json()["accepted"]
        return self.summary

    def start(self, frame: pd.DataFrame, *, rate_per_second: float | None = None, loop: bool = True) -> None:
        """Send in a background thread until ``stop()``; with ``loop`` the frame repeats."""
        def run() -> None:
            while not self._stop.is_set():
                self.send(frame, rate_per_second=rate_per_second)
                if not loop:
                    break

        self._stop.clear()
        self._thread = threading.Thread(target=run, name="steward-traffic", daemon=True)
        self._thread.start()

    def stop(self) -> TrafficSummary:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None
        return self.summary
