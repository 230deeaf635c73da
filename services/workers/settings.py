"""Webhook delivery settings, from the environment (tests pass their own)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

# seconds before each attempt: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h
DEFAULT_SCHEDULE: tuple[float, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)


def _truthy(raw: str | None) -> bool:
    return (raw or "").strip().lower() in ("1", "true", "yes", "on")


def parse_schedule(raw: str) -> tuple[float, ...]:
    """``"0,5,300"`` -> (0.0, 5.0, 300.0): the delay before attempt 1, 2, 3 ..."""
    try:
        values = tuple(float(x) for x in raw.split(",") if x.strip())
    except ValueError as exc:
        raise ValueError(
            f"AGENTFLOW_WEBHOOK_RETRY_SCHEDULE must be comma-separated seconds, not {raw!r}"
        ) from exc
    if not values or any(v < 0 for v in values):
        raise ValueError("AGENTFLOW_WEBHOOK_RETRY_SCHEDULE needs at least one non-negative delay")
    return values


@dataclass(frozen=True)
class WebhookSettings:
    schedule: tuple[float, ...] = DEFAULT_SCHEDULE
    timeout_s: float = 10.0  # per attempt: connect + send + response
    allow_private: bool = False  # loopback/private/link-local destinations (tests, trusted networks)
    max_retry_after_s: float = 36000.0  # a Retry-After beyond this is capped
    lease_margin_s: float = 10.0  # an endpoint lease outlives an attempt by this much
    sweep_interval_s: float = 1.0  # how often the relay looks for due work nobody is delivering
    drain_batch: int = 200  # deliveries one drain message handles before yielding to other endpoints
    worker_threads: int = 8
    relay_poll_s: float = 0.1
    response_excerpt_chars: int = 500
    queue_name: str = "webhooks"
    secret_grace_s: float = 24 * 3600.0  # a rotated-out secret keeps signing this long
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def max_attempts(self) -> int:
        return len(self.schedule)

    @property
    def lease_s(self) -> float:
        return self.timeout_s + self.lease_margin_s


def webhook_settings_from_env(**overrides: object) -> WebhookSettings:
    env = os.environ
    values: dict[str, object] = {"allow_private": _truthy(env.get("AGENTFLOW_WEBHOOK_ALLOW_PRIVATE"))}
    if raw := env.get("AGENTFLOW_WEBHOOK_RETRY_SCHEDULE"):
        values["schedule"] = parse_schedule(raw)
    for name, key in (
        ("timeout_s", "AGENTFLOW_WEBHOOK_TIMEOUT_S"),
        ("lease_margin_s", "AGENTFLOW_WEBHOOK_LEASE_MARGIN_S"),
        ("sweep_interval_s", "AGENTFLOW_WEBHOOK_SWEEP_S"),
        ("relay_poll_s", "AGENTFLOW_WEBHOOK_RELAY_POLL_S"),
    ):
        if raw := env.get(key):
            values[name] = float(raw)
    if raw := env.get("AGENTFLOW_WORKER_THREADS"):
        values["worker_threads"] = max(1, int(raw))
    values.update({k: v for k, v in overrides.items() if v is not None})
    return WebhookSettings(**values)  # type: ignore[arg-type]
