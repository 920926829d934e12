"""The prediction log and labels: append-only Parquet through fsspec."""
