"""The model registry: the MLflow adapter, the audit history read from it, and lineage."""
