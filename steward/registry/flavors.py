"""Any MLflow model as one scoring interface: how a version is logged, loaded and scored, by flavor.

Every procedure (validation, serving, drift, health, the canary's evidence) scores a version through
``predict`` and, where the model gives scores, ``predict_proba`` and ``classes_``: a scikit-learn
estimator is used as it is (so the gateway's compiled fast path still applies), XGBoost and LightGBM
through their native flavors' scikit-learn classes, and anything else MLflow loads as a python
function through :class:`PyfuncScorer`. A model that gives no score has no ``predict_proba``, so the
checks that need one skip with :attr:`ScoreSource.NONE` instead of inventing one.
"""

from __future__ import annotations

import inspect
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from steward.registry.errors import RegistryError

if TYPE_CHECKING:
    from steward.spec import ModelSpec


class Flavor(StrEnum):
    """The MLflow flavor a version is loaded through; the first in this order that its MLmodel lists."""

    SKLEARN = "sklearn"
    XGBOOST = "xgboost"
    LIGHTGBM = "lightgbm"
    PYFUNC = "python_function"


class ScoreSource(StrEnum):
    """Where a classifier's scores come from; NONE: it gives labels only, so score-based checks skip."""

    PREDICT_PROBA = "predict_proba"
    OUTPUT_COLUMN = "output_column"
    NONE = "none"
    VALUE = "value"  # regression: the predicted value is the score


NATIVE_FLAVORS = (Flavor.SKLEARN, Flavor.XGBOOST, Flavor.LIGHTGBM)


def flavor_of_mlmodel(flavors: dict[str, Any]) -> Flavor:
    """The flavor to load with, from an MLmodel file's ``flavors`` section."""
    for flavor in Flavor:
        if flavor.value in flavors:
            return flavor
    raise RegistryError(
        f"the model's MLmodel lists flavors {sorted(flavors)}, none of which Steward loads; log it with a "
        "python_function flavor (mlflow.pyfunc.log_model) or one of sklearn, xgboost, lightgbm"
    )


def flavor_of_object(model: Any) -> Flavor:
    """The flavor a fitted model object is logged with."""
    import mlflow.pyfunc

    module = type(model).__module__.split(".")[0]
    if module == "xgboost":
        return Flavor.XGBOOST
    if module == "lightgbm":
        return Flavor.LIGHTGBM
    if isinstance(model, mlflow.pyfunc.PythonModel):
        return Flavor.PYFUNC
    if hasattr(model, "fit") and hasattr(model, "predict") and hasattr(model, "get_params"):
        return Flavor.SKLEARN
    raise RegistryError(
        f"cannot log a {type(model).__module__}.{type(model).__name__}: Steward registers scikit-learn estimators, "
        "XGBoost and LightGBM models (their scikit-learn classes) and mlflow.pyfunc.PythonModel instances"
    )


def read_flavor(local: Path) -> Flavor:
    """The flavor of a downloaded model folder."""
    from mlflow.models import Model

    try:
        return flavor_of_mlmodel(Model.load(str(local)).flavors)
    except RegistryError:
        raise
    except Exception as error:  # a missing or unreadable MLmodel: MLflow raises several types
        raise RegistryError(f"{local} holds no readable MLflow model (MLmodel): {error}") from error


def load_native(local: Path, flavor: Flavor) -> Any:
    """The model object MLflow's flavor gives back (scikit-learn, or XGBoost/LightGBM's own classes)."""
    import mlflow

    loader = {Flavor.SKLEARN: "sklearn", Flavor.XGBOOST: "xgboost", Flavor.LIGHTGBM: "lightgbm"}[flavor]
    return getattr(mlflow, loader).load_model(str(local))


def load_scorer(local: Path, spec: ModelSpec | None) -> tuple[Any, Flavor, ScoreSource]:
    """Load a downloaded model folder as something every procedure can score, and say where scores come from.

    A native model is returned as it is when it predicts like a scikit-learn estimator; anything else is
    wrapped around MLflow's python function. Any load failure is a RegistryError naming the flavor.
    """
    flavor = read_flavor(local)
    try:
        if flavor in NATIVE_FLAVORS:
            native = load_native(local, flavor)
            if hasattr(native, "predict") and (not _is_classifier(spec) or hasattr(native, "predict_proba")):
                return native, flavor, score_source_of(native, spec)
        import mlflow.pyfunc

        pyfunc = mlflow.pyfunc.load_model(str(local))
    except Exception as error:  # a model that cannot load here, for whatever reason its loader gives
        raise RegistryError(
            f"the model cannot be loaded through its {flavor.value} flavor here: {type(error).__name__}: {error}. "
            "Install the packages it was logged with (its requirements.txt) in Steward's environment"
        ) from error
    scorer = PyfuncScorer(pyfunc, spec)
    return scorer, flavor, score_source_of(scorer, spec)


def _is_classifier(spec: ModelSpec | None) -> bool:
    return spec is not None and spec.task.is_classification


def score_source_of(model: Any, spec: ModelSpec | None) -> ScoreSource:
    if spec is not None and not spec.task.is_classification:
        return ScoreSource.VALUE
    if isinstance(model, PyfuncScorer):
        return ScoreSource.OUTPUT_COLUMN if model.score_column else ScoreSource.NONE
    return ScoreSource.PREDICT_PROBA if hasattr(model, "predict_proba") else ScoreSource.NONE


# MLflow signature types -> the dtype a python function's schema enforcement accepts for that column.
_SIGNATURE_DTYPES = {
    "double": "float64", "float": "float32", "long": "int64", "integer": "int32", "boolean": "bool",
}


class PyfuncScorer:
    """A python-function model scored like an estimator.

    ``predict`` gives the output's label column (``estimator.label_column``, or the only column);
    for a binary classifier whose spec names ``estimator.score_column``, ``predict_proba`` gives
    ``[1 - score, score]`` and ``classes_`` the spec's ``estimator.classes`` (default ``[0, 1]``).
    Rows are cast to the signature's column types first: the gateway and training give numbers as
    float64, and MLflow refuses a float64 column whose signature says long.
    """

    def __init__(self, pyfunc: Any, spec: ModelSpec | None) -> None:
        self.pyfunc = pyfunc
        estimator = spec.estimator if spec is not None else None
        self.score_column = estimator.score_column if estimator is not None else None
        self.label_column = estimator.label_column if estimator is not None else None
        binary = spec is not None and spec.task.value == "binary_classification"
        if self.score_column and not binary:
            raise RegistryError("estimator.score_column applies to binary classifiers only; remove it from the spec")
        classes = (estimator.classes if estimator is not None else None) or ((0, 1) if self.score_column else None)
        self.classes_ = np.asarray(list(classes)) if classes is not None else None
        signature = pyfunc.metadata.get_input_schema() if pyfunc.metadata is not None else None
        self._input_types = {
            column.name: _SIGNATURE_DTYPES.get(getattr(column.type, "name", str(column.type))) for column in (signature.inputs if signature else [])
            if getattr(column, "name", None)
        }

    def __getattr__(self, name: str) -> Any:
        if name == "predict_proba" and self.__dict__.get("score_column"):
            return self._predict_proba
        raise AttributeError(name)

    def conform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The rows with each column in its signature's type, where the values allow it."""
        conformed = frame.copy(deep=False)
        for column, dtype in self._input_types.items():
            if dtype is None or column not in conformed.columns:
                continue
            values = conformed[column]
            if dtype.startswith("int") and (values.isna().any() or (values % 1 != 0).any()):
                continue  # MLflow's own check then names the column
            conformed[column] = values.astype(dtype)
        return conformed

    def output(self, frame: pd.DataFrame) -> pd.DataFrame:
        raw = self.pyfunc.predict(self.conform(frame))
        if isinstance(raw, pd.DataFrame):
            return raw
        if isinstance(raw, pd.Series):
            return raw.to_frame(raw.name or "prediction")
        array = np.asarray(raw)
        if array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        if array.ndim != 1:
            raise RegistryError(
                f"the model's output has shape {array.shape}: name its score column in estimator.score_column "
                "by returning a DataFrame, or return one value per row"
            )
        return pd.DataFrame({"prediction": array})

    def _column(self, output: pd.DataFrame, name: str, field: str) -> pd.Series:
        if name not in output.columns:
            raise RegistryError(
                f"the model's output has columns {list(output.columns)}, not {name!r} that {field} names"
            )
        return output[name]

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        output = self.output(frame)
        if self.label_column:
            return self._column(output, self.label_column, "estimator.label_column").to_numpy()
        if self.score_column:
            scores = self._column(output, self.score_column, "estimator.score_column").to_numpy(dtype=float)
            return np.where(scores >= 0.5, self.classes_[1], self.classes_[0])
        if output.shape[1] != 1:
            raise RegistryError(
                f"the model's output has columns {list(output.columns)}: name the prediction in "
                "estimator.label_column (and the positive class's score in estimator.score_column)"
            )
        return output.iloc[:, 0].to_numpy()

    def _predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        scores = self._column(self.output(frame), self.score_column, "estimator.score_column").to_numpy(dtype=float)
        return np.column_stack([1.0 - scores, scores])


def log_model(model: Any, *, signature: Any, input_example: pd.DataFrame, trusted_types: list[str]) -> Any:
    """Log a fitted model with the flavor it belongs to; returns MLflow's ModelInfo."""
    import mlflow

    flavor = flavor_of_object(model)
    common = {"name": "model", "signature": signature, "input_example": input_example,
              "pip_requirements": serving_requirements(flavor)}
    if flavor is Flavor.SKLEARN:
        return mlflow.sklearn.log_model(model, skops_trusted_types=trusted_types, **common)
    if flavor is Flavor.XGBOOST:
        return mlflow.xgboost.log_model(model, **common)
    if flavor is Flavor.LIGHTGBM:
        return mlflow.lightgbm.log_model(model, **common)
    return mlflow.pyfunc.log_model(python_model=model, **common)


FLAVOR_PACKAGES = {Flavor.XGBOOST: "xgboost", Flavor.LIGHTGBM: "lightgbm"}


def serving_requirements(flavor: Flavor = Flavor.SKLEARN) -> list[str]:
    """What a model needs to load, pinned to the versions that trained it.

    Stating it explicitly keeps MLflow from inferring requirements (seconds per model, and
    it can pick up the whole development environment).
    """
    from importlib import metadata

    names = ["mlflow", "scikit-learn", "pandas", "numpy", "skops"]
    if flavor in FLAVOR_PACKAGES:
        names.append(FLAVOR_PACKAGES[flavor])
    pinned = []
    for name in names:
        distribution = {"xgboost": ("xgboost", "xgboost-cpu")}.get(name, (name,))
        for candidate in distribution:
            try:
                pinned.append(f"{name}=={metadata.version(candidate)}")
                break
            except metadata.PackageNotFoundError:
                continue
    return pinned


def model_output(model: Any, features: pd.DataFrame) -> Any:
    """What the model answers for ``features``, to infer a signature from: probabilities where it has them."""
    import mlflow.pyfunc

    if isinstance(model, mlflow.pyfunc.PythonModel):
        takes_context = "context" in inspect.signature(model.predict).parameters
        return model.predict(None, features) if takes_context else model.predict(features)
    return model.predict_proba(features) if hasattr(model, "predict_proba") else model.predict(features)
