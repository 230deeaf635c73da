"""``AGENTFLOW_METRICS_PORT``: the setting, and the metrics served on a port of their own (a real HTTP server
on a free port), stopped cleanly."""

from __future__ import annotations

import httpx
import pytest

from connectors.postgres_cluster import free_port
from services.config import ConfigError, settings_from_env
from services.metrics_endpoint import serve_metrics


def test_the_setting() -> None:
    assert settings_from_env({}).metrics_port is None
    assert settings_from_env({"AGENTFLOW_METRICS_PORT": "9464"}).metrics_port == 9464
    with pytest.raises(ConfigError):
        settings_from_env({"AGENTFLOW_METRICS_PORT": "zero"})


def test_served_on_its_own_port_until_stopped() -> None:
    port = free_port()
    stop = serve_metrics("127.0.0.1", port)
    try:
        resp = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert resp.status_code == 200
        assert "# TYPE agentflow_commands_total counter" in resp.text
        assert "# TYPE agentflow_http_request_duration_seconds histogram" in resp.text
    finally:
        stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
