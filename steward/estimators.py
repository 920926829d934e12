"""Estimator factories a spec can name in ``estimator.factory``.

A factory receives the spec and its ``estimator.params`` and returns an unfitted
scikit-learn estimator that accepts the raw feature frame, so the model registered in
MLflow carries its own preprocessing and the gateway can feed it requests as they come.
"""

from __future__ import annotations

import importlib
from typing import Any

from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from steward.spec import ModelSpec, SpecError, Task

_DEFAULT_ESTIMATORS = {
    Task.BINARY_CLASSIFICATION: "sklearn.linear_model.LogisticRegression",
    Task.MULTICLASS_CLASSIFICATION: "sklearn.linear_model.LogisticRegression",
    Task.REGRESSION: "sklearn.linear_model.Ridge",
}


def _import_class(path: str) -> type:
    module_name, _, class_name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError) as error:
        raise SpecError(f"estimator.params.estimator: cannot import {path!r} ({error})") from error


def explicit_early_stopping(estimator_class: type, params: dict[str, Any]) -> dict[str, Any]:
    """Turn ``early_stopping="auto"`` into ``True`` unless the spec sets it.

    scikit-learn's histogram gradient boosting stops early only above 10,000 rows under
    ``"auto"``, so a champion trained on more rows had a fraction of the trees of a retrain on
    fewer and the speed gate failed the retrain for its size, not its quality. On at every size
    (validation_fraction 0.1), a model's size follows its validation loss, whatever the row count.
    """
    if "early_stopping" in params:
        return params
    try:
        default = estimator_class().get_params().get("early_stopping")
    except TypeError:  # needs arguments to construct: it has no "auto" default to override
        return params
    return {**params, "early_stopping": True} if default == "auto" else params


def tabular_pipeline(spec: ModelSpec, estimator: str | None = None, **estimator_params: Any) -> Pipeline:
    """Impute and scale numeric features, one-hot encode categorical ones, then fit ``estimator``.

    Unseen categories are ignored rather than fatal, so a new category in production
    degrades the prediction instead of failing the request. An estimator whose early stopping
    defaults to ``"auto"`` gets it on at every size (see ``explicit_early_stopping``).
    """
    estimator_class = _import_class(estimator or _DEFAULT_ESTIMATORS[spec.task])
    estimator_params = explicit_early_stopping(estimator_class, estimator_params)
    try:
        final_step: BaseEstimator = estimator_class(**estimator_params)
    except TypeError as error:
        raise SpecError(f"estimator.params: {estimator_class.__name__} rejected {estimator_params}: {error}") from error

    transformers = []
    if spec.numeric_features:
        numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
        transformers.append(("numeric", numeric, spec.numeric_features))
    if spec.categorical_features:
        categorical = Pipeline(
            [
                ("impute", SimpleImputer(strategy="constant", fill_value="__missing__")),
                ("encode", OneHotEncoder(handle_unknown="ignore", min_frequency=5)),
            ]
        )
        transformers.append(("categorical", categorical, spec.categorical_features))
    preprocess = ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=False)
    return Pipeline([("preprocess", preprocess), ("model", final_step)])


def build_estimator(spec: ModelSpec) -> BaseEstimator:
    factory = spec.estimator.load_factory()
    model = factory(spec, **spec.estimator.params)
    if not hasattr(model, "fit") or not hasattr(model, "predict"):
        raise SpecError(
            f"estimator.factory {spec.estimator.factory!r} returned {type(model).__name__}, "
            "which has no fit/predict: return a scikit-learn estimator"
        )
    return model
