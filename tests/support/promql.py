"""The metric names a PromQL expression reads, and the names a real gateway's /metrics exports."""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families

#: Series Prometheus writes itself for every scrape target, not exported by the gateway.
PROMETHEUS_SERIES = frozenset({"up"})

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
                       "unless", "offset", "inf", "nan", "Inf", "NaN"})


def metric_names(expr: str) -> set[str]:
    """Every metric an expression selects: identifiers that are not functions, keywords, labels or durations."""
    text = _STRING.sub('""', expr)
    text = _LABEL_LIST.sub(" ", _RANGE.sub(" ", _MATCHERS.sub(" ", text)))
    names = set()
    for match in _IDENTIFIER.finditer(text):
        before = text[match.start() - 1] if match.start() else " "
        if before.isdigit() or before in ".$":
            continue  # a number's exponent, a duration's unit, a Grafana variable
        if text[match.end():].lstrip().startswith("(") or match.group() in _KEYWORDS:
            continue
        names.add(match.group())
    return names


def exported_names(exposition: str) -> set[str]:
    """The sample names of a Prometheus text exposition (counters with _total, histograms by _bucket/_sum/_count)."""
    return {sample.name for family in text_string_to_metric_families(exposition) for sample in family.samples}
