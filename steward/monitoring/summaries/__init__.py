"""Mergeable summaries of the prediction log: what the daily checks need, gathered batch by batch.

A window is scanned in bounded batches (``steward.store.scan``) into these summaries; summaries of
different partitions merge into the summary of their union, so a day (or a cluster's share of a
week) is summarised once and never held in memory. See docs/monitoring.md, "At volume".
"""
