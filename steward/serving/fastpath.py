"""A fitted scikit-learn pipeline's preprocessing replayed on numpy arrays, with identical results.

Scoring a few rows through a fitted ``Pipeline`` costs milliseconds that have nothing to do with
the model: every step re-validates its input (``check_array``, feature-name checks, narwhals
and pandas dtype probes), the ``ColumnTransformer`` selects columns from a DataFrame with
``.loc`` and runs its transformers through joblib, and ``OneHotEncoder`` checks every value
against its categories, and ``prepare_features`` builds a DataFrame first, while the
arithmetic takes microseconds.

``compile_pipeline`` walks a fitted pipeline once, when a version loads, and keeps what each
preprocessing step computes from its fitted state:

* ``SimpleImputer``: the fill value of each column, applied where the input is missing (NaN,
  by the same test scikit-learn uses for float and object arrays);
* ``StandardScaler``: ``(x - mean_) / scale_``, the same two float64 operations in the same order;
* ``OneHotEncoder``: for each input column, the output block of every known category, asked of
  the encoder itself (so ``drop``, ``min_frequency``/``max_categories`` and ``handle_unknown``
  behave as fitted); a value it has not seen is encoded by the encoder too, then remembered;
* ``ColumnTransformer`` (dense output) and nested ``Pipeline``: column selection by name,
  transformer weights and ``np.hstack``, as scikit-learn does them.

The final estimator is then called on the resulting array exactly as ``Pipeline`` calls it, so
``predict_proba`` / ``predict`` run scikit-learn's own code on an identical matrix and give
bit-identical results. Anything else (another transformer type, sparse output, pandas output,
``passthrough`` columns, a bare estimator) is not compiled: ``compile_pipeline`` raises
``Unsupported`` and the version is scored through ``Pipeline`` as before. ``verify`` compares
both paths on rows built from the spec when a version loads; a version whose compiled path
differs in any bit is scored the plain way.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

MAX_LEARNED_VALUES = 1024  # unseen values an encoder column remembers; beyond, they are encoded each time


class Unsupported(Exception):
    """The pipeline holds something this module does not replay; score it through scikit-learn."""


def _default_output(estimator: Any) -> None:
    config = getattr(estimator, "_sklearn_output_config", {})
    if config.get("transform", "default") != "default":
        raise Unsupported(f"{type(estimator).__name__} is set to {config['transform']} output")


def default_output() -> bool:
    """scikit-learn's global ``transform_output`` is the default (arrays), which the compiled path assumes."""
    import sklearn

    return sklearn.get_config().get("transform_output", "default") == "default"


def _is_nan_scalar(value: Any) -> bool:
    return isinstance(value, float | np.floating) and math.isnan(value)


def _missing_mask(X: np.ndarray) -> np.ndarray:
    """scikit-learn's ``_get_mask(X, np.nan)`` for float and object arrays."""
    return np.isnan(X) if X.dtype.kind == "f" else X != X


# ---------------------------------------------------------------------- steps
# Each step is a small picklable object (the shadow process receives versions pickled) that
# maps a 2-D array to the array the fitted transformer would return for it.
class _Imputer:
    def __init__(self, imputer: Any, dtype: np.dtype) -> None:
        if imputer.add_indicator or not _is_nan_scalar(imputer.missing_values):
            raise Unsupported("SimpleImputer with add_indicator or a missing value other than NaN")
        fit_dtype = getattr(imputer, "_fit_dtype", None)
        fill_dtype = getattr(imputer, "_fill_dtype", None)
        if fit_dtype is None or fill_dtype is None:
            raise Unsupported("SimpleImputer without the fitted dtypes this module reads")
        # SimpleImputer._validate_input keeps object input as object when fitted on object, and
        # float64 input as float64; any other pairing converts, which is not replayed here.
        if not ((dtype.kind == "O" and fit_dtype.kind == "O") or (dtype == np.float64 and fit_dtype == np.float64)):
            raise Unsupported(f"SimpleImputer fitted on {fit_dtype} scoring {dtype}")
        statistics = imputer.statistics_
        if not imputer.keep_empty_features and _missing_mask(np.asarray(statistics)).any():
            raise Unsupported("SimpleImputer drops columns without observed values")
        self.fill = statistics.astype(fill_dtype, copy=False)
        if self.fill.dtype != dtype:
            raise Unsupported(f"SimpleImputer fills {self.fill.dtype} into {dtype}")
        self.dtype = dtype

    def __call__(self, X: np.ndarray) -> np.ndarray:
        if X.shape[1] != len(self.fill):
            raise ValueError(f"X has {X.shape[1]} features per sample, expected {len(self.fill)}")
        mask = _missing_mask(X)
        return np.where(mask, self.fill, X) if mask.any() else X  # no later step writes into its input


class _Scaler:
    def __init__(self, scaler: Any, dtype: np.dtype) -> None:
        if dtype != np.float64:
            raise Unsupported(f"StandardScaler on {dtype} input")
        self.mean = np.asarray(scaler.mean_, dtype=np.float64) if scaler.with_mean else None
        self.scale = (np.asarray(scaler.scale_, dtype=np.float64)
                      if scaler.with_std and scaler.scale_ is not None else None)
        self.dtype = np.dtype(np.float64)

    def __call__(self, X: np.ndarray) -> np.ndarray:
        # StandardScaler.transform: X -= mean_; X /= scale_ on a float64 copy; the same operations.
        out = X - self.mean if self.mean is not None else X.copy()
        if self.scale is not None:
            np.divide(out, self.scale, out=out)
        return out


class _EncoderColumn:
    """One input column of a fitted OneHotEncoder: value -> row of its output block."""

    def __init__(self, encoder: _OneHot, column: int, categories: np.ndarray) -> None:
        self.encoder = encoder
        self.column = column
        known = [c for c in categories.tolist() if not _is_nan_scalar(c)]
        values: list[Any] = list(known)
        self.nan_code: int | None = None
        if len(known) < len(categories):
            self.nan_code = len(known)
            values.append(np.nan)
        self.table = encoder.encode(column, values)
        self.codes: dict[Any, int] = {value: i for i, value in enumerate(known)}
        self.learned = 0

    def __call__(self, values: np.ndarray) -> np.ndarray:
        codes, nan_code = self.codes, self.nan_code
        missing = -1 if nan_code is None else nan_code
        found = [codes.get(v, -1) if v == v else missing for v in values.tolist()]
        table = self.table  # read after the codes: _learn extends the table before the codes
        if -1 not in found:
            return table[found]
        index = np.array(found, dtype=np.intp)
        unknown = np.flatnonzero(index < 0)
        index[unknown] = 0
        block = table[index]
        new_values = [values[i] for i in unknown]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rows = self.encoder.encode(self.column, new_values)
        block[unknown] = rows
        for warning in caught:  # said on every call, as the encoder itself does
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
        if not caught and self.learned < MAX_LEARNED_VALUES:
            self._learn(new_values, rows)
        return block

    def _learn(self, values: list[Any], rows: np.ndarray) -> None:
        additions: list[np.ndarray] = []
        codes: dict[Any, int] = {}
        nan_code = self.nan_code
        for value, row in zip(values, rows, strict=True):
            position = len(self.table) + len(additions)
            if _is_nan_scalar(value):
                if nan_code is None:
                    nan_code = position
                    additions.append(row)
                continue
            try:
                if value in self.codes or value in codes:
                    continue
                codes[value] = position
            except TypeError:  # unhashable: encoded again next time
                continue
            additions.append(row)
        if additions:
            self.table = np.vstack([self.table, np.asarray(additions, dtype=self.table.dtype)])
            self.codes.update(codes)
            self.nan_code = nan_code
            self.learned += len(codes)


class _OneHot:
    def __init__(self, encoder: Any, dtype: np.dtype) -> None:
        _default_output(encoder)
        if dtype.kind not in "fO":
            raise Unsupported(f"OneHotEncoder on {dtype} input")
        widths = getattr(encoder, "_n_features_outs", None)
        if widths is None:
            raise Unsupported("OneHotEncoder without the fitted block widths this module reads")
        self.encoder = encoder
        self.input_dtype = dtype
        self.offsets = np.cumsum([0, *widths]).tolist()
        self.base = [cats[0] for cats in encoder.categories_]
        self.names = getattr(encoder, "feature_names_in_", None)
        self.columns = [_EncoderColumn(self, j, np.asarray(cats, dtype=object))
                        for j, cats in enumerate(encoder.categories_)]
        self.dtype = self.columns[0].table.dtype if self.columns else np.dtype(encoder.dtype)

    def encode(self, column: int, values: list[Any]) -> np.ndarray:
        """The encoder's own output block of ``column`` for each value (the other columns held known)."""
        query = np.empty((len(values), len(self.base)), dtype=self.input_dtype)
        query[:] = np.asarray(self.base, dtype=self.input_dtype)
        query[:, column] = np.asarray(values, dtype=self.input_dtype)
        if self.names is not None:  # fitted on a DataFrame: asked with one, as the pipeline would
            import pandas as pd

            query = pd.DataFrame(query, columns=self.names)
        out = self.encoder.transform(query)
        out = out.toarray() if hasattr(out, "toarray") else np.asarray(out)
        return np.ascontiguousarray(out[:, self.offsets[column]:self.offsets[column + 1]])

    def __call__(self, X: np.ndarray) -> np.ndarray:
        if X.shape[1] != len(self.columns):
            raise ValueError(f"X has {X.shape[1]} features, but OneHotEncoder is expecting {len(self.columns)} features")
        blocks = [column(X[:, j]) for j, column in enumerate(self.columns)]
        return np.hstack(blocks) if len(blocks) != 1 else blocks[0]


class _Chain:
    """A nested Pipeline's transformers, one after the other (``None``/``passthrough`` skipped)."""

    def __init__(self, pipeline: Any, dtype: np.dtype) -> None:
        _default_output(pipeline)
        self.steps = []
        for _, inner in pipeline.steps:
            if inner is None or (isinstance(inner, str) and inner == "passthrough"):
                continue
            step = _array_step(inner, dtype)
            self.steps.append(step)
            dtype = step.dtype
        self.dtype = dtype

    def __call__(self, X: np.ndarray) -> np.ndarray:
        for step in self.steps:
            X = step(X)
        return X


def _array_step(step: Any, dtype: np.dtype) -> Any:
    """Replay one fitted transformer on a 2-D array of ``dtype``; the result has ``.dtype``, the output's."""
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    kind = type(step)
    if kind is Pipeline:
        return _Chain(step, dtype)
    if kind is SimpleImputer:
        _default_output(step)
        return _Imputer(step, dtype)
    if kind is StandardScaler:
        _default_output(step)
        return _Scaler(step, dtype)
    if kind is OneHotEncoder:
        return _OneHot(step, dtype)
    raise Unsupported(f"{kind.__name__} is not replayed here")


# ---------------------------------------------------------------------- the ColumnTransformer
def stack_columns(arrays: Mapping[str, np.ndarray], names: Sequence[str], dtype: np.dtype) -> np.ndarray:
    """The columns as the 2-D array scikit-learn makes of the frame's selected columns (read-only:
    a block may be shared by the versions scoring one batch, and no step writes into its input)."""
    block = np.array([arrays[name] for name in names], dtype=dtype).T.copy()  # C-ordered, like a copy of the frame's
    block.flags.writeable = False
    return block


class Columns:
    """Prepared columns by name (``prepare_arrays``) and the blocks of them the transformers take."""

    def __init__(self, arrays: Mapping[str, np.ndarray], n: int) -> None:
        self.arrays = arrays
        self.n = n
        self._blocks: dict[tuple[tuple[str, ...], np.dtype], np.ndarray] = {}

    def __len__(self) -> int:
        return self.n

    def block(self, names: tuple[str, ...], dtype: np.dtype) -> np.ndarray:
        found = self._blocks.get((names, dtype))
        if found is None:
            found = self._blocks[(names, dtype)] = stack_columns(self.arrays, names, dtype)
        return found


def _columns_dtype(dtypes: Mapping[str, np.dtype], names: Sequence[str]) -> np.dtype:
    kinds = {dtypes[name] for name in names}
    if len(kinds) != 1:
        raise Unsupported(f"columns {list(names)} mix {sorted(map(str, kinds))}")
    return next(iter(kinds))


class _Columns:
    """The pipeline's ColumnTransformer, which takes the prepared frame: here its columns by name.

    Only a ColumnTransformer is replayed as the first step: its ``np.hstack`` gives the final
    estimator a C-ordered array whatever each transformer returned, so the matrix is identical
    in layout as well as in values (a BLAS product can round differently on another layout).
    """

    def __init__(self, step: Any, dtypes: Mapping[str, np.dtype]) -> None:
        from sklearn.compose import ColumnTransformer

        if type(step) is not ColumnTransformer:
            raise Unsupported(f"the first step is a {type(step).__name__}, not a ColumnTransformer")
        names_in = getattr(step, "feature_names_in_", None)
        if names_in is None:
            raise Unsupported("the ColumnTransformer was not fitted on a DataFrame")
        names_in = [str(name) for name in names_in]
        unknown = [name for name in names_in if name not in dtypes]
        if unknown:
            raise Unsupported(f"the ColumnTransformer reads columns {unknown} the spec does not prepare")
        _default_output(step)
        if step.sparse_output_:
            raise Unsupported("ColumnTransformer with sparse output")
        weights = step.transformer_weights or {}
        # (selected columns, their dtype, the replayed transformer, its weight)
        self.parts: list[tuple[tuple[str, ...], np.dtype, Any, Any]] = []
        out_dtypes = []
        for name, transformer, columns in step.transformers_:
            if isinstance(transformer, str) and transformer == "drop":
                continue
            indices = list(step._transformer_to_input_indices[name])
            if not indices:
                continue  # scikit-learn skips transformers without columns
            if np.isscalar(columns):
                raise Unsupported(f"transformer {name!r} takes one column as 1-D input")
            selected = tuple(names_in[i] for i in indices)
            dtype = _columns_dtype(dtypes, selected)
            replay = _array_step(transformer, dtype)
            weight = weights.get(name)
            self.parts.append((selected, dtype, replay, weight))
            out_dtypes.append(replay.dtype if weight is None else np.result_type(replay.dtype, weight))
        self.dtype = np.result_type(*out_dtypes) if out_dtypes else np.dtype(np.float64)

    def __call__(self, columns: Any) -> np.ndarray:
        blocks = []
        for selected, dtype, replay, weight in self.parts:
            out = replay(columns.block(selected, dtype))
            blocks.append(out if weight is None else out * weight)
        if not blocks:
            return np.zeros((len(columns), 0))
        return np.hstack(blocks)  # as ColumnTransformer._hstack: C-ordered, even for one block


# ---------------------------------------------------------------------- the final estimator
class _Final:
    """The final estimator's ``predict_proba`` and ``predict``, called as ``Pipeline`` calls them.

    For the linear models Steward trains by default (``LogisticRegression``; ``Ridge`` and
    ``LinearRegression``) the same arithmetic is done here, operation for operation as
    scikit-learn does it (``decision_function``, ``expit`` or ``softmax``), without the input
    checks around it: for a few rows those checks (narwhals' DataFrame detection, feature-name
    and finiteness checks) cost many times the arithmetic. An input those checks
    would refuse (not float64, another width, NaN or infinity) goes to the estimator itself,
    which raises as it always did. Any other estimator is always called itself.
    """

    def __init__(self, estimator: Any) -> None:
        from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge

        self.estimator = estimator
        self.kind = None
        coef = getattr(estimator, "coef_", None)
        if not isinstance(coef, np.ndarray) or coef.dtype != np.float64 or type(estimator) not in (
            LogisticRegression, Ridge, LinearRegression
        ):
            return
        self.width = getattr(estimator, "n_features_in_", None)
        self.intercept = estimator.intercept_
        if type(estimator) is LogisticRegression:
            self.kind = "logistic"
            self.coef = coef.T if coef.ndim == 2 else coef  # LinearClassifierMixin.decision_function
            self.binary = np.size(estimator.classes_) <= 2
        else:
            self.kind = "linear"
            self.coef = coef if coef.ndim == 1 else coef.T  # LinearModel._decision_function

    def _checked(self, X: np.ndarray) -> bool:
        """Whether X is what scikit-learn's checks pass through unchanged."""
        return (self.kind is not None and type(X) is np.ndarray and X.ndim == 2 and X.dtype == np.float64
                and X.shape[1] == self.width and bool(np.isfinite(X).all()))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        if self.kind != "logistic" or not self._checked(X):
            return self.estimator.predict_proba(X)
        scores = X @ self.coef + self.intercept
        if scores.ndim > 1 and scores.shape[1] == 1:
            scores = np.reshape(scores, (-1,))
        if self.binary:  # LinearClassifierMixin._predict_proba_lr
            from scipy import special

            prob = special.expit(scores, out=scores)
            return np.stack([1 - prob, prob], axis=1)
        # sklearn.utils.extmath.softmax(copy=False)
        scores -= np.reshape(np.max(scores, axis=1), (-1, 1))
        np.exp(scores, out=scores)
        scores /= np.reshape(np.sum(scores, axis=1), (-1, 1))
        return scores

    def predict(self, X: np.ndarray) -> np.ndarray:
        if self.kind != "linear" or not self._checked(X):
            return self.estimator.predict(X)
        return X @ self.coef + self.intercept


class CompiledPipeline:
    """A fitted ``Pipeline`` whose preprocessing runs on numpy arrays; the final step is scikit-learn's own."""

    def __init__(self, pipeline: Any, dtypes: Mapping[str, np.dtype]) -> None:
        from sklearn.pipeline import Pipeline

        if type(pipeline) is not Pipeline:
            raise Unsupported(f"{type(pipeline).__name__} is not a scikit-learn Pipeline")
        _default_output(pipeline)
        steps = [step for _, step in pipeline.steps[:-1]
                 if step is not None and not (isinstance(step, str) and step == "passthrough")]
        if not steps:
            raise Unsupported("the pipeline has no preprocessing to replay")
        final = pipeline.steps[-1][1]
        if final is None or isinstance(final, str):
            raise Unsupported("the pipeline ends without an estimator")
        self.final = _Final(final)
        self.first = _Columns(steps[0], dtypes)
        self.rest = []
        dtype = self.first.dtype
        for step in steps[1:]:
            replay = _array_step(step, dtype)
            self.rest.append(replay)
            dtype = replay.dtype

    def transform(self, columns: Any) -> np.ndarray:
        """What the pipeline hands its final estimator for these rows.

        ``columns``: a ``Columns``, or anything with its ``block(names, dtype)`` and ``len()``.
        """
        X = self.first(columns)
        for replay in self.rest:
            X = replay(X)
        return X

    def predict_proba(self, columns: Any) -> np.ndarray:
        return self.final.predict_proba(self.transform(columns))

    def predict(self, columns: Any) -> np.ndarray:
        return self.final.predict(self.transform(columns))


def compile_pipeline(pipeline: Any, dtypes: Mapping[str, np.dtype]) -> CompiledPipeline:
    """Compile ``pipeline`` for inputs whose columns have ``dtypes``; ``Unsupported`` says why not."""
    try:
        return CompiledPipeline(pipeline, dtypes)
    except Unsupported:
        raise
    except Exception as error:  # an estimator shaped unlike what this module reads
        raise Unsupported(f"{type(error).__name__}: {error}") from error


def same_output(a: Any, b: Any) -> bool:
    """Bit-identical arrays: same shape, dtype and bytes (object arrays: equal elements)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.kind == "O":
        return bool(np.array_equal(a, b))
    return np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()


def verify(compiled: CompiledPipeline, pipeline: Any, frame: Any, arrays: Mapping[str, np.ndarray]) -> str | None:
    """Why the compiled path differs from ``pipeline`` on these rows, or None when every bit agrees.

    ``frame`` is the rows as ``prepare_features`` gives them, ``arrays`` the same rows as
    ``prepare_arrays`` gives them. Compares the matrix handed to the final estimator and the
    final estimator's output (``predict_proba`` when it has one, and ``predict``).
    """
    columns = Columns(arrays, len(frame))
    try:
        expected = pipeline[:-1].transform(frame)
        got = compiled.transform(columns)
        if not same_output(got, expected):
            return "the preprocessed rows differ from the pipeline's"
        methods = ["predict_proba", "predict"] if hasattr(pipeline, "predict_proba") else ["predict"]
        for method in methods:
            if not same_output(getattr(compiled, method)(columns), getattr(pipeline, method)(frame)):
                return f"{method} differs from the pipeline's"
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return None
