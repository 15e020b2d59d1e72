"""The Grafana dashboard queries only metrics that KubeBYON exports.

Metric names in kubebyon/metrics.py are the operator-facing contract; a renamed or
removed metric, or a panel querying a name that never existed, fails here instead of
showing an empty panel in production.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubebyon.metrics import REGISTRY

DASHBOARD = Path(__file__).resolve().parents[2] / "grafana" / "kubebyon.json"
METRIC_TOKEN = re.compile(r"kubebyon_[a-z0-9_]+")

# Sample names prometheus_client emits per family type (family.name has no _total/_info).
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "info": ("_info",),
    "gauge": ("",),
}


def exported_sample_names() -> set[str]:
    names: set[str] = set()
    for family in REGISTRY.collect():
        assert family.type in SUFFIXES, f"no suffix rule for {family.name} ({family.type})"
        names.update(family.name + suffix for suffix in SUFFIXES[family.type])
    return names


def walk_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in (collapsed) rows."""
    for panel in panels:
        yield panel
        yield from walk_panels(panel.get("panels", []))


def expressions(node: Any) -> Iterator[str]:
    """Every ``expr`` string anywhere below ``node`` (panels, targets, nested rows)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            else:
                yield from expressions(value)
    elif isinstance(node, list):
        for item in node:
            yield from expressions(item)


def template_queries(dashboard: dict[str, Any]) -> Iterator[str]:
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query", "")
        if isinstance(query, str):
            yield query


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def test_exported_names_cover_labelled_metrics_without_children() -> None:
    # Families of labelled metrics appear in collect() before any child exists.
    names = exported_sample_names()
    assert "kubebyon_reconcile_total" in names
    assert "kubebyon_reconcile_duration_seconds_bucket" in names
    assert "kubebyon_cluster_jobs" in names
    assert "kubebyon_build_info" in names


def test_every_queried_metric_is_exported(dashboard: dict[str, Any]) -> None:
    exported = exported_sample_names()
    exprs = [*expressions(dashboard["panels"]), *template_queries(dashboard)]
    assert exprs, "the dashboard has no queries"
    queried = {token for expr in exprs for token in METRIC_TOKEN.findall(expr)}
    assert queried, "no kubebyon_ metric is queried"
    unknown = sorted(queried - exported)
    assert not unknown, (
        f"dashboard queries metrics that kubebyon.metrics does not export: {unknown}"
    )


def test_panels_have_titles(dashboard: dict[str, Any]) -> None:
    panels = list(walk_panels(dashboard["panels"]))
    untitled = [panel.get("id") for panel in panels if not str(panel.get("title", "")).strip()]
    assert not untitled, f"panels without a title: {untitled}"
    graphs = [panel for panel in panels if panel.get("type") != "row"]
    assert len(graphs) >= 10


def test_every_panel_uses_the_datasource_variable(dashboard: dict[str, Any]) -> None:
    for panel in walk_panels(dashboard["panels"]):
        if panel.get("type") == "row":
            continue
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
