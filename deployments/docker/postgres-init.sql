-- The compose stack's PostgreSQL holds two databases: `prefect` (POSTGRES_DB) and `mlflow`.
CREATE DATABASE mlflow;
