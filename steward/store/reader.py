"""The prediction store: the log's Parquet parts under one fsspec URL, and reading them back.

Layout (see docs/store.md)::

    <store_uri>/predictions/model=<name>/date=<YYYY-MM-DD>/part-<flush id>.parquet
    <store_uri>/labels/model=<name>/date=<YYYY-MM-DD>/part-<flush id>.parquet

One row per scored input row; readers give the ``f_<feature>`` columns back under their real
names. ``PredictionStore`` also writes whole parts, atomically (the writer thread and a WAL
replay call it), so that one class owns the layout. Everything goes through fsspec, so the same
code serves a local folder or an object store.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from steward.store.partition import MANIFEST_FOLDER, Manifest, PartitionView, partition_view
from steward.store.records import FEATURE_PREFIX, LABELS, PREDICTIONS, Batch, PartKey, StoreError, to_tables
from steward.store.writer import LogMode, LogWriter

if TYPE_CHECKING:
    from steward.config import Settings


class PredictionStore:
    """Reads and writes the prediction log under one fsspec URL."""

    def __init__(self, uri: str, storage_options: dict[str, Any] | None = None) -> None:
        self.uri = uri.rstrip("/")
        self.storage_options = {**object_store_defaults(self.uri), **(storage_options or {})}
        self.fs, self.root = fsspec.core.url_to_fs(self.uri, **self.storage_options)
        self.root = self.root.rstrip("/")
        self.local = isinstance(self.fs, LocalFileSystem)

    @classmethod
    def from_settings(cls, settings: Settings) -> PredictionStore:
        return cls(settings.resolved_store_uri)

    def __repr__(self) -> str:
        return f"PredictionStore({self.uri!r})"

    # ------------------------------------------------------------------ writing
    def partition_path(self, dataset: str, model: str, day: str) -> str:
        return f"{self.root}/{dataset}/model={model}/date={day}"

    def write_batches(self, batches: Iterable[Batch], flush_id: str, *, sync: bool = False) -> int:
        """Write one Parquet part per dataset, model and day; returns the rows written.

        Part names derive from ``flush_id``, so writing the same batches again (a WAL replay)
        replaces the parts instead of duplicating rows.
        """
        return self.write_tables({key: [table] for key, table in to_tables(batches).items()}, flush_id, sync=sync)

    def write_tables(self, tables: dict[PartKey, list[pa.Table]], flush_id: str, *, sync: bool = False) -> int:
        """Write converted batches: one part per (dataset, model, day), rows in the order logged.

        Not sorted: a part is one Parquet row group (a flush's rows, far under pyarrow's 1M-row
        groups), so sorting by version could never let a reader skip a group: it only cost the
        writer CPU (``benchmarks/log_writer.py`` measures the writer with and without it).
        """
        written = 0
        for (kind, model, day), parts in sorted(tables.items()):
            try:
                merged = [pa.concat_tables(parts, promote_options="default")]
            except pa.ArrowInvalid:  # a feature changed type between versions: keep the tables apart
                merged = parts
            for index, table in enumerate(merged):
                name = f"part-{flush_id}.parquet" if len(merged) == 1 else f"part-{flush_id}-{index}.parquet"
                self._write_part(self.partition_path(kind, model, day), name, table, sync)
                written += table.num_rows
        return written

    def _write_part(self, folder: str, name: str, table: pa.Table, sync: bool) -> None:
        final = f"{folder}/{name}"
        options = {"compression": "zstd", "use_dictionary": dictionary_columns(table.schema)}
        if not self.local:  # an object store PUT is atomic: readers never see half a file
            with self.fs.open(final, "wb") as handle:
                pq.write_table(table, handle, **options)
            return
        self.fs.makedirs(folder, exist_ok=True)
        partial = f"{folder}/.{name}.tmp"  # dot-prefixed: readers skip it until the rename
        # Arrow's own file, not a Python one: through a Python file object every page the
        # writer emits takes the GIL back from the event loop and is copied into a bytes object.
        with pa.OSFile(partial, "wb") as sink:
            pq.write_table(table, sink, **options)
        if sync:
            descriptor = os.open(partial, os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
        os.replace(partial, final)

    def writer(self, mode: LogMode = LogMode.BATCHED, **options: Any) -> LogWriter:
        return LogWriter(self, mode, **options)

    # ------------------------------------------------------------------ reading
    def _files(self, dataset: str, model: str, start: datetime | None, end: datetime | None) -> list[str]:
        """Part files of the days that overlap [start, end): partition pruning by listing."""
        first = start.date().isoformat() if start else None
        last = (end - timedelta(microseconds=1)).date().isoformat() if end else None
        files = []
        for day in self.days(dataset, model):
            if (first and day < first) or (last and day > last):
                continue
            path = self.partition_path(dataset, model, day)
            try:
                files += [f"{path}/{leaf}" for leaf in self.partition_view(path).readable]
            except FileNotFoundError:  # removed by retention since the listing
                continue
        return files

    def days(self, dataset: str, model: str) -> list[str]:
        """The ``YYYY-MM-DD`` days with a partition of ``model`` in ``dataset``, oldest first."""
        try:
            folders = self.fs.ls(f"{self.root}/{dataset}/model={model}", detail=False)
        except FileNotFoundError:
            return []
        leaves = (folder.rstrip("/").rsplit("/", 1)[-1] for folder in folders)
        return sorted(leaf.removeprefix("date=") for leaf in leaves if leaf.startswith("date="))

    def partition_view(self, folder: str) -> PartitionView:
        """One partition's files as a reader sees them: compacted files replace the parts they merged."""
        leaves = [path.rstrip("/").rsplit("/", 1)[-1] for path in self.fs.ls(folder, detail=False)]
        return partition_view(leaves, self.manifests(folder) if MANIFEST_FOLDER in leaves else ())

    def manifests(self, folder: str) -> list[Manifest]:
        """The compaction manifests of one partition (unreadable ones are skipped: they never committed)."""
        found = []
        try:
            paths = self.fs.ls(f"{folder}/{MANIFEST_FOLDER}", detail=False)
        except FileNotFoundError:
            return []
        for path in sorted(paths):
            if not path.endswith(".json") or path.rsplit("/", 1)[-1].startswith("."):
                continue
            try:
                with self.fs.open(path, "r", encoding="utf-8") as handle:
                    found.append(Manifest.from_json(handle.read()))
            except (FileNotFoundError, ValueError, KeyError):
                continue
        return found

    def arrow_filesystem(self) -> Any:
        if self.local:
            import pyarrow.fs

            return pyarrow.fs.LocalFileSystem()
        return self.fs

    def _read(self, files: list[str], expression: ds.Expression | None) -> pa.Table:
        filesystem = self.arrow_filesystem()
        # Files written before a feature was added lack its column: read with the union schema
        # so the column comes back as nulls instead of failing the read.
        schemas = [fragment.physical_schema for fragment in ds.dataset(files, filesystem=filesystem).get_fragments()]
        dataset = ds.dataset(files, schema=pa.unify_schemas(schemas), format="parquet", filesystem=filesystem)
        return dataset.to_table(filter=expression)

    def read_predictions(
        self,
        model: str,
        start: datetime,
        end: datetime,
        version: str | None = None,
        *,
        served_only: bool = False,
    ) -> pd.DataFrame:
        """Logged predictions with ``start <= time < end``, features under their real names.

        Only the day partitions that overlap the window are opened; the filters are applied by
        Arrow as it reads.
        """
        start, end = as_utc(start, "start"), as_utc(end, "end")
        files = self._files(PREDICTIONS, model, start, end)
        if not files:
            return _empty_predictions(model)
        expression = (pc.field("time") >= pa.scalar(start, pa.timestamp("us", tz="UTC"))) & (
            pc.field("time") < pa.scalar(end, pa.timestamp("us", tz="UTC"))
        )
        if version is not None:
            expression &= pc.field("version") == str(version)
        if served_only:
            expression &= pc.field("served")
        frame = self._read(files, expression).to_pandas()
        frame.insert(0, "model", model)
        return frame.rename(columns=_feature_names(frame.columns))

    def read_labels(self, model: str, start: datetime | None = None, end: datetime | None = None) -> pd.DataFrame:
        """Labels received with ``start <= time < end`` (either bound may be open)."""
        start = as_utc(start, "start") if start is not None else None
        end = as_utc(end, "end") if end is not None else None
        files = self._files(LABELS, model, start, end)
        if not files:
            return pd.DataFrame(
                {
                    "request_id": pd.Series(dtype=object),
                    "row": pd.Series(dtype="int32"),
                    "label": pd.Series(dtype=object),
                    "time": pd.Series(dtype="datetime64[us, UTC]"),
                }
            )
        expression = None
        if start is not None:
            expression = pc.field("time") >= pa.scalar(start, pa.timestamp("us", tz="UTC"))
        if end is not None:
            upper = pc.field("time") < pa.scalar(end, pa.timestamp("us", tz="UTC"))
            expression = upper if expression is None else expression & upper
        return self._read(files, expression).to_pandas()



def object_store_defaults(uri: str) -> dict[str, Any]:
    """fsspec options an object-store URI needs: listings never cached, as gateways add parts all the time.

    Credentials, region and endpoint come from the standard AWS variables (``AWS_ACCESS_KEY_ID``,
    ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL`` for an S3-compatible service),
    so the gateway, the flows and the Dask workers all find the same store from the URI alone.
    """
    protocol = uri.split("://", 1)[0] if "://" in uri else "file"
    return {"use_listings_cache": False} if protocol in {"s3", "s3a", "gs", "gcs", "abfs", "az"} else {}


def as_utc(value: datetime | str | pd.Timestamp, what: str) -> datetime:
    """The time as an aware UTC datetime (naive times are taken as UTC); ``what`` names it in errors."""
    stamp = pd.Timestamp(value)
    if stamp is pd.NaT:
        raise StoreError(f"{what}: got NaT; give a real time")
    stamp = stamp.tz_localize("UTC") if stamp.tz is None else stamp.tz_convert("UTC")
    return stamp.to_pydatetime()


def _feature_names(columns: Iterable[str]) -> dict[str, str]:
    return {c: c[len(FEATURE_PREFIX):] for c in columns if c.startswith(FEATURE_PREFIX)}


def _empty_predictions(model: str) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "request_id": pd.Series(dtype=object),
            "row": pd.Series(dtype="int32"),
            "time": pd.Series(dtype="datetime64[us, UTC]"),
            "version": pd.Series(dtype=object),
            "arm": pd.Series(dtype=object),
            "served": pd.Series(dtype=bool),
            "status": pd.Series(dtype=object),
            "prediction": pd.Series(dtype=object),
            "score": pd.Series(dtype="float64"),
            "latency_ms": pd.Series(dtype="float64"),
            "entity": pd.Series(dtype=object),
            "compute_ms": pd.Series(dtype="float64"),
        }
    )
    frame.insert(0, "model", pd.Series(dtype=object))
    return frame


def join_labels(predictions: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Predictions that have a label, with ``label`` and ``label_time`` columns added.

    A row labelled twice keeps its latest label. Shadow rows share their request id with the
    served row, so each gets the same label and metrics can be computed per version.
    """
    if labels.empty or predictions.empty:
        return predictions.iloc[0:0].assign(label=pd.Series(dtype=object), label_time=pd.Series(dtype="datetime64[us, UTC]"))
    latest = (
        labels.sort_values("time", kind="stable")
        .drop_duplicates(["request_id", "row"], keep="last")
        .rename(columns={"time": "label_time"})
    )
    return predictions.merge(latest, on=["request_id", "row"], how="inner", validate="many_to_one")


def typed_labels(labels: pd.Series, *, classification: bool) -> pd.Series:
    """Stored label text back to numbers when every label is numeric (integers for classes)."""
    numbers = pd.to_numeric(labels, errors="coerce")
    if numbers.isna().any():
        return labels.astype(object)
    if classification and (numbers % 1 == 0).all():
        return numbers.astype("int64")
    return numbers.astype("float64")


def dictionary_columns(schema: pa.Schema) -> list[str]:
    """The columns worth dictionary-encoding: text with few distinct values (version, arm, classes,
    categories), not request ids or floats.

    Parquet's default encodes every column with a dictionary first and falls back to plain
    encoding once it grows too large: for request ids, times and float features that is hashing
    every value for nothing (``benchmarks/log_writer.py`` measures the writer both ways).
    """
    return [field.name for field in schema if pa.types.is_string(field.type) and field.name != "request_id"]

