"""The prediction log and labels: append-only Parquet through fsspec.

``records`` (what a log row holds, as Arrow), ``reader`` (``PredictionStore``: the layout, part
writes and windowed reads; the label join), ``writer`` (``LogWriter``: writes off the request
path), ``wal`` (durable mode's write-ahead log). See docs/store.md.
"""
