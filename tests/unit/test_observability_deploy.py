"""The alert rules and the Grafana dashboard query only series /metrics exposes, with labels they have
(a renamed metric or label would leave a silent, never-firing rule or an empty panel)."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import REGISTRY
from promql_names import dashboard_exprs, rule_exprs, selectors, series_of

import services.api.app  # noqa: F401  (imports every module that defines metrics)
from services.runtime_gauges import RUNTIME_GAUGES


def _registry_series() -> dict[str, set[str]]:
    labels: dict[str, set[str]] = {}
    families: list[Any] = []
    for collector in set(REGISTRY._collector_to_names):  # every registered collector
        for f in collector.describe() if hasattr(collector, "describe") else collector.collect():
            families.append(f)
            labels[f.name] = set(getattr(collector, "_labelnames", ()) or getattr(f, "_labelnames", ()))
    return series_of(families, labels)


EXPOSED = _registry_series()


@pytest.mark.parametrize("source", ["rules", "dashboard"])
def test_every_series_queried_is_exposed_with_those_labels(source: str) -> None:
    used = selectors(rule_exprs() if source == "rules" else dashboard_exprs())
    assert len(used) >= 8, used  # the extraction found the queries at all
    for name, label_names in used.items():
        assert name in EXPOSED, f"{source} query {name}, which /metrics does not expose"
        assert label_names <= EXPOSED[name], f"{source} match {name} on {label_names - EXPOSED[name]}"


def test_the_registry_view_is_right() -> None:
    """The check above reads the registry's families: it knows a counter's _total, a histogram's le."""
    assert EXPOSED["agentflow_commands_total"] >= {"command", "outcome", "instance"}
    assert "le" in EXPOSED["agentflow_freshness_seconds_bucket"]
    assert EXPOSED["agentflow_projector_lag_positions"] >= {"projector"}
    assert "agentflow_commands" not in EXPOSED and "agentflow_freshness_seconds" not in EXPOSED
    assert RUNTIME_GAUGES in REGISTRY._collector_to_names
