"""A team's own training code, as Steward's spec names it (``training.entrypoint``): plain scikit-learn."""

from __future__ import annotations

from typing import Any

import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler


def fit(frame: pd.DataFrame, spec: Any, params: dict[str, Any]) -> Pipeline:
    numeric = spec.numeric_features
    categorical = [name for name in spec.feature_names if name not in numeric]
    prepare = ColumnTransformer([
        ("numbers", make_pipeline(SimpleImputer(), StandardScaler()), numeric),
        ("categories", make_pipeline(SimpleImputer(strategy="most_frequent"),
                                     OneHotEncoder(handle_unknown="ignore")), categorical),
    ])
    model = Pipeline([("prepare", prepare), ("classify", LogisticRegression(C=params.get("C", 1.0), max_iter=500))])
    return model.fit(frame[spec.feature_names], frame[spec.target])


def returns_nothing(frame: pd.DataFrame, spec: Any, params: dict[str, Any]) -> None:
    return None


def expects_other_columns(frame: pd.DataFrame, spec: Any, params: dict[str, Any]) -> Pipeline:
    """Trained on a renamed column, so it cannot score the spec's feature frame."""
    renamed = frame.rename(columns={spec.feature_names[0]: "something_else"})
    columns = ["something_else", *spec.numeric_features[1:]]
    return make_pipeline(SimpleImputer(), LogisticRegression(max_iter=1000)).fit(renamed[columns], renamed[spec.target]).set_output(
        transform="pandas")


NOT_A_FUNCTION = 42
