"""Scheduled maintenance, by job: run summaries, retention, log scans and reviews, security audit, technology review."""
