"""Request payloads and their validation against a model version's feature schema.

The schema comes from the spec the version was trained with (types, ranges, categories,
nullability) and is cross-checked against the version's MLflow signature when the version
is loaded. Validation returns the values normalised the way ``prepare_features`` types them
(float or None for numeric features, text or None otherwise), so the same values are scored
and logged. Every problem found is reported, each naming its field.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from steward.spec import FeatureType, ModelSpec, OutOfRangePolicy

MAX_ROWS_NAMED = 5
DEFAULT_MAX_TEXT_LENGTH = 1024  # characters in one text value (category, entity id, label)
PAYLOAD_FORMATS = ("dataframe_split", "dataframe_records", "inputs", "instances")


@dataclass(frozen=True)
class Problem:
    field: str
    message: str

    def describe(self) -> str:
        return f"{self.field}: {self.message}"


class RequestError(ValueError):
    """A request the gateway refuses; ``status`` is the HTTP status and ``problems`` name the fields."""

    def __init__(self, status: int, message: str, problems: Sequence[Problem] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.problems = tuple(problems)

    def body(self) -> dict[str, Any]:
        return {
            "error": self.message,
            "problems": [{"field": p.field, "message": p.message} for p in self.problems],
        }


class SchemaMismatch(ValueError):
    """A version whose spec and MLflow signature disagree; it is not loaded."""


@dataclass(frozen=True)
class Payload:
    """A request's rows, column by column."""

    columns: dict[str, list[Any]]
    rows: int


def parse_payload(document: Any, *, max_rows: int) -> Payload:
    """Read an MLflow scoring payload: ``dataframe_split``, ``dataframe_records``, ``inputs`` or ``instances``.

    ``inputs`` and ``instances`` take the tabular shapes MLflow's scoring server takes for a model
    with a column signature: a list of row objects, or one object of columns (a list of values each).
    """
    if not isinstance(document, dict):
        raise RequestError(400, "the body must be a JSON object with one of " + ", ".join(f"`{f}`" for f in PAYLOAD_FORMATS))
    formats = [key for key in PAYLOAD_FORMATS if key in document]
    others = sorted(set(document) - set(PAYLOAD_FORMATS))
    if len(formats) != 1 or others:
        raise RequestError(
            400,
            "send exactly one of " + ", ".join(f"`{f}`" for f in PAYLOAD_FORMATS)
            + (f"; not supported here: {others}" if others else ""),
        )
    given = document[formats[0]]
    if formats[0] == "dataframe_split":
        return _split(given, max_rows)
    if formats[0] == "dataframe_records":
        return _records(given, max_rows)
    return _tensor_style(formats[0], given, max_rows)


def _tensor_style(name: str, given: Any, max_rows: int) -> Payload:
    """``inputs`` / ``instances``: rows as objects, or columns as an object of lists."""
    if isinstance(given, list) and all(isinstance(row, dict) for row in given):
        return _records(given, max_rows)
    if isinstance(given, dict) and given and all(isinstance(column, list) for column in given.values()):
        lengths = {len(column) for column in given.values()}
        if len(lengths) != 1:
            raise RequestError(422, f"`{name}` columns have different lengths {sorted(lengths)}: give one value per row in each")
        rows = lengths.pop()
        _check_rows(rows, max_rows)
        return Payload({str(column): list(values) for column, values in given.items()}, rows)
    raise RequestError(400, f"`{name}` must be a list of row objects or an object mapping each column to its list of "
                            "values; rows without column names cannot be matched to the model's features")


def _check_rows(rows: int, max_rows: int) -> None:
    if rows == 0:
        raise RequestError(422, "the request has no rows: send at least one")
    if rows > max_rows:
        raise RequestError(413, f"the request has {rows} rows; this gateway takes at most {max_rows} per request: split it")


def _split(split: Any, max_rows: int) -> Payload:
    if not isinstance(split, dict) or not isinstance(split.get("columns"), list) or not isinstance(split.get("data"), list):
        raise RequestError(400, "`dataframe_split` must be an object with a `columns` list and a `data` list of rows")
    columns, data = split["columns"], split["data"]
    if not all(isinstance(name, str) for name in columns):
        raise RequestError(400, "`dataframe_split.columns` must be a list of column names (strings)")
    duplicates = sorted({name for name in columns if columns.count(name) > 1}) if len(set(columns)) < len(columns) else []
    if duplicates:
        raise RequestError(422, f"columns {duplicates} appear more than once", [Problem(d, "duplicate column") for d in duplicates])
    _check_rows(len(data), max_rows)
    width = len(columns)
    bad = [i for i, row in enumerate(data) if not isinstance(row, list) or len(row) != width]
    if bad:
        raise RequestError(
            422, f"rows {bad[:MAX_ROWS_NAMED]} do not have one value per column ({width} columns): "
            "each row of `data` must be a list in the order of `columns`",
        )
    return Payload(dict(zip(columns, map(list, zip(*data, strict=True)), strict=True)), len(data))  # rows checked above


def _records(records: Any, max_rows: int) -> Payload:
    if not isinstance(records, list):
        raise RequestError(400, "`dataframe_records` must be a list of objects, one per row")
    _check_rows(len(records), max_rows)
    bad = [i for i, record in enumerate(records) if not isinstance(record, dict)]
    if bad:
        raise RequestError(422, f"rows {bad[:MAX_ROWS_NAMED]} of `dataframe_records` are not objects")
    names: dict[str, None] = {}
    for record in records:
        names.update(dict.fromkeys(record))
    return Payload({name: [record.get(name) for record in records] for name in names}, len(records))


def _rows_text(rows: list[int]) -> str:
    shown = ", ".join(map(str, rows[:MAX_ROWS_NAMED]))
    return f"row {shown}" if len(rows) == 1 else f"rows {shown}" + (" …" if len(rows) > MAX_ROWS_NAMED else "")


@dataclass(frozen=True)
class _Rule:
    name: str
    type: FeatureType
    min: float | None
    max: float | None
    nullable: bool


class InputSchema:
    """What one model version accepts, and the validation of a request against it."""

    def __init__(self, spec: ModelSpec, *, out_of_range: OutOfRangePolicy, extra_fields: Sequence[str] = ()) -> None:
        self.spec = spec
        self.out_of_range = out_of_range
        self.rules = tuple(_Rule(f.name, f.type, f.min, f.max, f.nullable) for f in spec.features)
        self.feature_names = tuple(f.name for f in spec.features)
        self.numeric_names = tuple(f.name for f in spec.features if f.is_numeric)
        self.numeric_set = frozenset(self.numeric_names)
        passthrough = {spec.entity_column, spec.timestamp_column, *extra_fields} - {None}
        self.allowed = frozenset(self.feature_names) | frozenset(passthrough)

    @classmethod
    def for_version(
        cls, spec: ModelSpec, signature: dict[str, str], *, out_of_range: OutOfRangePolicy, label: str
    ) -> InputSchema:
        """The schema of a version, refusing one whose spec and signature name different inputs."""
        if signature and set(signature) != set(spec.feature_names):
            only_spec = sorted(set(spec.feature_names) - set(signature))
            only_signature = sorted(set(signature) - set(spec.feature_names))
            raise SchemaMismatch(
                f"{label}: spec features and MLflow signature differ (only in spec: {only_spec}; "
                f"only in signature: {only_signature}); register the version again from its spec"
            )
        return cls(spec, out_of_range=out_of_range)

    def validate(self, payload: Payload, *, allowed_extra: frozenset[str] = frozenset(),
                 row_numbers: Sequence[int] | None = None,
                 max_text_length: int = DEFAULT_MAX_TEXT_LENGTH) -> dict[str, list[Any]]:
        """The request's feature values, normalised; RequestError (422) lists every bad field."""
        columns, n = payload.columns, payload.rows
        numbers = row_numbers if row_numbers is not None else range(n)
        problems: list[Problem] = []
        unknown = [name for name in columns if name not in self.allowed and name not in allowed_extra]
        if unknown:
            problems += [
                Problem(name, f"unknown column; {self.spec.name} takes {list(self.feature_names)}") for name in unknown
            ]
        values: dict[str, list[Any]] = {}
        for rule in self.rules:
            column = columns.get(rule.name)
            if column is None:
                if rule.nullable:
                    values[rule.name] = [None] * n
                else:
                    problems.append(Problem(rule.name, f"missing required column ({rule.type.value})"))
                continue
            if rule.type in (FeatureType.NUMERIC, FeatureType.INTEGER):
                values[rule.name] = self._numeric(rule, column, numbers, problems)
            elif rule.type is FeatureType.BOOLEAN:
                values[rule.name] = _boolean(rule, column, numbers, problems)
            else:
                values[rule.name] = _categorical(rule, column, numbers, problems, max_text_length)
        if problems:
            message = "invalid input: " + "; ".join(p.describe() for p in problems)
            raise RequestError(422, message, problems)
        return values

    def _numeric(self, rule: _Rule, column: list[Any], numbers: Sequence[int], problems: list[Problem]) -> list[Any]:
        plain = self._plain_numbers(rule, column)
        if plain is not None:
            return plain
        out: list[Any] = []
        nulls, wrong, fractional, infinite, low, high = [], [], [], [], [], []
        examples: list[Any] = []
        lower = rule.min if rule.min is not None else -math.inf
        upper = rule.max if rule.max is not None else math.inf
        for i, value in zip(numbers, column, strict=True):
            kind = type(value)
            if value is None or (kind is float and value != value):  # JSON null or NaN
                nulls.append(i)
                out.append(None)
                continue
            if kind is bool or not isinstance(value, int | float):
                wrong.append(i)
                examples.append(value)
                out.append(None)
                continue
            try:
                number = float(value)
            except OverflowError:  # an integer beyond float range: as unusable as infinity
                number = math.inf
            if math.isinf(number):
                infinite.append(i)
            elif rule.type is FeatureType.INTEGER and not number.is_integer():
                fractional.append(i)
            elif number < lower:
                low.append(i)
            elif number > upper:
                high.append(i)
            out.append(number)
        if nulls and not rule.nullable:
            problems.append(Problem(rule.name, f"null in {_rows_text(nulls)}, but the feature is not nullable"))
        if wrong:
            shown = ", ".join(repr(v) for v in examples[:3])
            problems.append(Problem(rule.name, f"expected a number in {_rows_text(wrong)}, got {shown}"))
        if infinite:
            problems.append(Problem(rule.name, f"infinite value in {_rows_text(infinite)}: send a finite number"))
        if fractional:
            problems.append(Problem(rule.name, f"expected a whole number (integer feature) in {_rows_text(fractional)}"))
        if self.out_of_range is OutOfRangePolicy.REJECT:
            if low:
                problems.append(Problem(rule.name, f"below the minimum {rule.min:g} in {_rows_text(low)}"))
            if high:
                problems.append(Problem(rule.name, f"above the maximum {rule.max:g} in {_rows_text(high)}"))
        return out


    def _plain_numbers(self, rule: _Rule, column: list[Any]) -> list[float] | None:
        """The column as floats when every value is a finite number the rule accepts as it is (the
        usual request), in one quick pass; None sends the column through the full check above."""
        largest = sys.float_info.max
        lower, upper = -largest, largest  # also keeps out infinities
        if self.out_of_range is OutOfRangePolicy.REJECT:
            lower = max(lower, rule.min) if rule.min is not None else lower
            upper = min(upper, rule.max) if rule.max is not None else upper
        integer = rule.type is FeatureType.INTEGER
        out: list[float] = []
        append = out.append
        try:
            for value in column:
                kind = type(value)
                if kind is float:
                    number = value
                elif kind is int:
                    number = float(value)
                else:
                    return None
                if not lower <= number <= upper or (integer and not number.is_integer()):
                    return None  # NaN fails the comparison too
                append(number)
        except OverflowError:
            return None
        return out


def _boolean(rule: _Rule, column: list[Any], numbers: Sequence[int], problems: list[Problem]) -> list[Any]:
    out: list[Any] = []
    nulls, wrong = [], []
    for i, value in zip(numbers, column, strict=True):
        if value is None:
            nulls.append(i)
            out.append(None)
        elif type(value) is bool:
            out.append("true" if value else "false")
        elif isinstance(value, str) and value.lower() in ("true", "false"):
            out.append(value.lower())
        else:
            wrong.append(i)
            out.append(None)
    if nulls and not rule.nullable:
        problems.append(Problem(rule.name, f"null in {_rows_text(nulls)}, but the feature is not nullable"))
    if wrong:
        problems.append(Problem(rule.name, f"expected true or false in {_rows_text(wrong)}"))
    return out


def text_problem(value: str, max_length: int) -> str | None:
    """Why the log cannot store this text, or None: too long, or not valid Unicode (a lone surrogate)."""
    if len(value) > max_length:
        return f"longer than {max_length} characters"
    if not value.isascii():  # a flag read for ASCII text: the usual request pays nothing more
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "not valid Unicode (a lone UTF-16 surrogate such as \\ud800): send UTF-8 text"
    return None


def _categorical(
    rule: _Rule, column: list[Any], numbers: Sequence[int], problems: list[Problem], max_length: int
) -> list[Any]:
    # A category outside the spec's list is admitted: the model encodes it as unknown, and the
    # log keeps it so that drift checks see new categories arrive.
    out: list[Any] = []
    nulls, wrong, unstorable = [], [], []
    why = ""
    for i, value in zip(numbers, column, strict=True):
        if value is None:
            nulls.append(i)
            out.append(None)
        elif type(value) is str:
            problem = text_problem(value, max_length)
            if problem is not None:
                unstorable.append(i)
                why = problem
            out.append(value)
        else:
            wrong.append(i)
            out.append(None)
    if nulls and not rule.nullable:
        problems.append(Problem(rule.name, f"null in {_rows_text(nulls)}, but the feature is not nullable"))
    if wrong:
        problems.append(Problem(rule.name, f"expected a category name (a string) in {_rows_text(wrong)}"))
    if unstorable:
        problems.append(Problem(rule.name, f"text {why} in {_rows_text(unstorable)}"))
    return out


def check_entities(entities: Sequence[str | None], max_length: int) -> None:
    """RequestError (422) when an entity id (field or header) is text the log cannot store."""
    bad: list[int] = []
    why = ""
    for i, entity in enumerate(entities):
        if entity is not None and (problem := text_problem(entity, max_length)) is not None:
            bad.append(i)
            why = problem
    if bad:
        raise RequestError(422, f"invalid input: entity: text {why} in {_rows_text(bad)}",
                           [Problem("entity", f"text {why} in {_rows_text(bad)}")])


def select_rows(payload: Payload, rows: Sequence[int]) -> Payload:
    """The sub-payload of the given rows (an A/B request whose rows go to different arms)."""
    return Payload({name: [column[i] for i in rows] for name, column in payload.columns.items()}, len(rows))
