"""A team's own training flows, as a team would write them: Prefect and plain MLflow, no Steward import.

``team-train`` trains on the rows of its data file inside the window it is given and registers the model
from a run tagged with Steward's request; ``team-train-stuck`` never registers anything.
"""

from __future__ import annotations

import time
from typing import Any

import mlflow
import pandas as pd
from prefect import flow
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder

NUMERIC = ["age", "income", "debt_ratio", "credit_limit", "utilization", "months_employed", "num_late_payments",
           "num_open_accounts"]
CATEGORICAL = ["region", "employment_type", "education"]


@flow(name="team-train")
def team_train(model: str, window_start: str | None, window_end: str | None, steward_request: str,
               params: dict[str, Any]) -> str:
    frame = pd.read_parquet(params["data_path"])
    times = pd.to_datetime(frame["event_time"], utc=True)
    if window_start and window_end:
        frame = frame[(times >= pd.Timestamp(window_start)) & (times <= pd.Timestamp(window_end))]
    features = frame[NUMERIC + CATEGORICAL].astype({name: "float64" for name in NUMERIC})
    pipeline = Pipeline([
        ("prepare", ColumnTransformer([
            ("numbers", SimpleImputer(), NUMERIC),
            ("categories", make_pipeline(SimpleImputer(strategy="most_frequent"),
                                         OneHotEncoder(handle_unknown="ignore")), CATEGORICAL),
        ])),
        ("classify", LogisticRegression(C=float(params.get("C", 1.0)), max_iter=1000)),
    ]).fit(features, frame["default"])
    mlflow.set_experiment("team-credit")
    with mlflow.start_run(run_name="nightly"):
        mlflow.set_tag("steward.training_request", steward_request)
        mlflow.log_param("C", params.get("C", 1.0))
        info = mlflow.sklearn.log_model(pipeline, name="model", registered_model_name=model,
                                        input_example=features.head(5), skops_trusted_types=["numpy.dtype"])
    return str(info.registered_model_version)


@flow(name="team-train-stuck")
def team_train_stuck(model: str, window_start: str | None, window_end: str | None, steward_request: str,
                     params: dict[str, Any]) -> None:
    time.sleep(float(params.get("sleep_seconds", 600)))


if __name__ == "__main__":
    from prefect import serve

    serve(team_train.to_deployment(name="nightly"), team_train_stuck.to_deployment(name="nightly"))
