"""deploy/monitoring: the dashboard, alerts and autoscaling rule name only metrics that exist.

The names come from a real server's /metrics page, not from a list kept by hand, so a
metric renamed in service/metrics.py fails here until the queries follow it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

MONITORING = Path(__file__).parents[2] / "deploy" / "monitoring"
DASHBOARD = MONITORING / "grafana-dashboard.json"
ALERTS = MONITORING / "alerts.yaml"
ADAPTER = MONITORING / "prometheus-adapter-values.yaml"

# What PromQL has beside metric names: strings, label matchers, ranges and groupings.
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPINGS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NAME = re.compile(r"(?<![\w:$.])[A-Za-z_:][\w:]*(?P<call>\s*\()?")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
_SAMPLE_SUFFIXES = ("_bucket", "_sum", "_count", "_total", "_created")


def metric_names(promql: str) -> set[str]:
    """The metric names a PromQL expression reads (functions and keywords left out)."""
    text = _STRINGS.sub(" ", promql)
    text = _GROUPINGS.sub(" ", _RANGES.sub(" ", _MATCHERS.sub(" ", text)))
    return {
        name
        for match in _NAME.finditer(text)
        if not match["call"] and (name := match[0]).lower() not in _KEYWORDS
    }


def family(sample: str) -> str:
    for suffix in _SAMPLE_SUFFIXES:
        if sample.endswith(suffix):
            return sample.removesuffix(suffix)
    return sample


def dashboard_queries() -> Iterator[str]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            yield target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            yield re.sub(r"^label_values\((.*),\s*\w+\)$", r"\1", variable["definition"])


def test_names_are_found_in_promql() -> None:
    assert metric_names(
        'histogram_quantile(0.99, sum by (le) (rate(a_bucket{model=~"$model"}[$__rate_interval])))'
        " / on (pod) b_total > bool 1 and absent(c)"
    ) == {"a_bucket", "b_total", "c"}


def test_the_dashboard_queries_only_exported_metrics(exported_metrics: frozenset[str]) -> None:
    queries = list(dashboard_queries())
    assert len(queries) >= 10
    for query in queries:
        names = metric_names(query)
        assert names, query
        assert names <= exported_metrics, f"{sorted(names - exported_metrics)} in {query}"


def test_the_dashboard_shows_every_exported_metric(exported_metrics: frozenset[str]) -> None:
    shown = {family(name) for query in dashboard_queries() for name in metric_names(query)}
    exported = {family(name) for name in exported_metrics}
    assert exported - shown == set()


def test_the_dashboard_is_importable_grafana_json() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "recognizer"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert {"h", "w", "x", "y"} <= panel["gridPos"].keys()


def test_the_alerts_query_only_exported_metrics(exported_metrics: frozenset[str]) -> None:
    rules = [
        rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]
    ]
    assert len(rules) >= 4
    for rule in rules:
        assert {"alert", "expr", "for", "labels", "annotations"} <= rule.keys()
        names = metric_names(rule["expr"])
        assert names and names <= exported_metrics, rule["alert"]


@pytest.mark.parametrize("rule", yaml.safe_load(ADAPTER.read_text())["rules"]["custom"])
def test_the_autoscaling_metric_is_served_from_an_exported_metric(
    rule: dict[str, Any], exported_metrics: frozenset[str]
) -> None:
    assert metric_names(rule["seriesQuery"]) <= exported_metrics
    assert rule["name"]["as"] in exported_metrics  # the name the HPA asks for
    assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}
