"""The request measurement's label choice (services/slo.py RequestMeasure): route templates, status classes,
a bounded set of methods; and the tracker sees every request the histogram does."""

from __future__ import annotations

from prometheus_client import REGISTRY

from readmodels.slo import SloTracker
from services.slo import UNMATCHED, RequestMeasure

NAME = "agentflow_http_request_duration_seconds_count"


def _count(method: str, route: str, status: str) -> float:
    return REGISTRY.get_sample_value(NAME, {"method": method, "route": route, "status": status}) or 0.0


def test_labels_are_template_status_class_and_a_known_method() -> None:
    measure = RequestMeasure(SloTracker())
    route = "/v1/entity/{entity_type}/{entity_id}"
    before = (_count("GET", route, "2xx"), _count("GET", route, "4xx"), _count("other", UNMATCHED, "4xx"))
    measure.record("GET", route, "read", 200, 0.001)
    measure.record("GET", route, "read", 200, 0.002)
    measure.record("GET", route, "read", 404, 0.001)
    measure.record("BREW", None, "read", 405, 0.001)
    measure.record("BREW2", None, "read", 405, 0.001)
    assert _count("GET", route, "2xx") - before[0] == 2
    assert _count("GET", route, "4xx") - before[1] == 1
    assert _count("other", UNMATCHED, "4xx") - before[2] == 2
    # a client's made-up methods share one child and are not kept: the cache stays bounded
    assert set(measure._labels) == {("GET", route, 200), ("GET", route, 404)}


def test_the_slo_tracker_is_fed_by_the_same_call() -> None:
    tracker = SloTracker()
    measure = RequestMeasure(tracker)
    measure.record("POST", "/v1/orders", "command", 201, 0.01)
    measure.record("POST", "/v1/orders", "command", 503, 0.5)
    rates = tracker.report()["error_rates_1h"]
    assert (rates["requests"], rates["server_errors"], rates["commands"]) == (2, 1, 2)
