"""Watching a served model: drift, health, SLOs, infrastructure, trends, scheduled maintenance, model cards, the ledger."""
