"""The composition root: one ``Settings`` in, every part of an API process out.

``build(settings, database_url)`` makes the engine, the stores, the read side and the runtime and
returns them in one typed :class:`Container`; ``create_app(container)`` (services/api/app.py) hands the
HTTP routes what they need through Litestar's dependency injection. ``agentflow up`` (embedded and
distributed), the benchmarks and the tests build through here; nothing else constructs these parts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

from sqlalchemy.engine import Engine

from commands.cache import AggregateCache
from commands.dead_letter_replay import CdcReplay, DeadLetterReplayer
from commands.service import CommandService
from connectors import ssrf, webhook_signing
from connectors.alert_store import AlertStore
from connectors.api_keys import Argon2Hasher, PostgresKeyStore
from connectors.checkpoints import CheckpointStore
from connectors.clickhouse import ClickHouseStore
from connectors.database import make_service_engine
from connectors.dead_letters import DeadLetterStore
from connectors.event_lookup import EventLookup
from connectors.event_store import PostgresEventStore
from connectors.kafka_replay import KafkaRangeReplay
from connectors.legacy.registry import SourceRegistry
from connectors.rate_windows import MemoryWindows, RateWindows, RedisWindows
from connectors.secret_box import SecretBox
from connectors.webhook_store import WebhookStore
from readmodels.alerts import AlertRules
from readmodels.api_keys import Authenticator, KeyAdmin, env_principals
from readmodels.applied_events import AppliedEventHub, EventFeed, StreamSlots
from readmodels.changelog import Changelog
from readmodels.entity_queries import EntityQueries
from readmodels.freshness import Freshness
from readmodels.health import Health
from readmodels.lineage import Lineage
from readmodels.metric_queries import MetricQueries
from readmodels.metrics import METRICS
from readmodels.query.service import QueryService
from readmodels.read_cache import ReadCache
from readmodels.search import EntitySearch, SearchIndex
from readmodels.slo import SloTracker, objectives_from_settings
from readmodels.webhooks import WebhookSubscriptions
from services.config import Settings
from services.rate_limits import RateLimits
from services.runtime import Runtime
from services.runtime_gauges import RUNTIME_GAUGES
from services.secrets import StoredSecrets, secret_box, stored_secret_census
from services.slo import record_applied


@dataclass
class Container:
    """Everything one API process owns, built once."""

    settings: Settings
    database_url: str
    engine: Engine
    store: PostgresEventStore
    checkpoints: CheckpointStore
    dead_letters: DeadLetterStore
    clickhouse: ClickHouseStore
    webhook_store: WebhookStore
    secret_box: SecretBox
    stored_secrets: StoredSecrets
    read_cache: ReadCache
    aggregates: AggregateCache
    runtime: Runtime
    freshness: Freshness
    metric_queries: MetricQueries
    entity_queries: EntityQueries
    command_service: CommandService
    hub: AppliedEventHub
    search: EntitySearch
    slo: SloTracker
    authenticator: Authenticator  # X-API-Key -> tenant and scopes (environment keys, stored keys)
    key_admin: KeyAdmin  # /v1/admin/keys
    rate_limits: RateLimits
    stream_slots: StreamSlots
    # downstream and operations
    webhook_subscriptions: WebhookSubscriptions
    alert_rules: AlertRules
    dead_letter_replay: DeadLetterReplayer
    kafka_replay: KafkaRangeReplay
    health: Health
    event_feed: EventFeed
    lineage: Lineage
    changelog: Changelog
    queries: QueryService

    def close(self) -> None:
        """Release what ``build`` opened that the runtime's stop does not (idempotent)."""
        RUNTIME_GAUGES.unwatch(self.runtime)  # a scrape no longer reads this runtime
        self.engine.dispose()
        close_windows = getattr(self.rate_limits.windows, "close", None)
        if close_windows is not None:
            close_windows()


def build_access(
    settings: Settings, engine: Engine, api_keys: dict[str, str] | None = None
) -> tuple[Authenticator, KeyAdmin]:
    """Who calls: the environment's keys (``api_keys``, default ``settings.api_keys``) and the stored ones
    (hashed; verified once per process, their row re-read at most a second later), and the use cases of
    /v1/admin/keys. One pair per API process: each has its own verification cache."""
    key_store, hasher = PostgresKeyStore(engine), Argon2Hasher()
    env_keys = settings.api_keys if api_keys is None else api_keys
    principals = env_principals(env_keys, settings.admin_api_keys, settings.operator_api_keys)
    authenticator = Authenticator(principals, key_store, hasher)
    key_admin = KeyAdmin(key_store, hasher, settings.key_rotation_grace_s, on_changed=authenticator.drop)
    return authenticator, key_admin


def build_rate_limits(settings: Settings) -> RateLimits:
    """The per-key budgets and the failed-authentication throttle: in Redis when one is configured (the
    budgets hold across API processes), else in this process."""
    windows: RateWindows = (
        RedisWindows(settings.rate_limit_redis_url) if settings.rate_limit_redis_url else MemoryWindows()
    )
    return RateLimits(
        windows,
        read_rpm=settings.rate_limit_read_rpm,
        write_rpm=settings.rate_limit_write_rpm,
        auth_failures=settings.auth_failures_per_minute,
    )


def build(settings: Settings, database_url: str, api_keys: dict[str, str] | None = None) -> Container:
    """The parts of an API process on ``database_url`` (the runtime is built, not started).
    ``api_keys`` (key -> tenant, scopes read + write, or more as ``settings.admin_api_keys`` and
    ``operator_api_keys`` say) defaults to ``settings.api_keys``."""
    engine = make_service_engine(database_url, settings.db_threads)
    # the keys of the stored secrets (AGENTFLOW_SECRET_KEYS, or the data dir's key file, made on the first
    # start); secrets an earlier version stored in plaintext are encrypted now, and a secret under a key
    # this process lacks stops the start (services/secrets.py)
    try:
        box = secret_box(settings, create=True, census=partial(stored_secret_census, engine))
        webhook_store = WebhookStore(engine, box)
        stored_secrets = StoredSecrets(box, [webhook_store, SourceRegistry(engine, box)])
        stored_secrets.seal_plaintext()
    except BaseException:
        engine.dispose()
        raise
    # the tailers share this process: wake them in-process after each commit instead of NOTIFY
    store = PostgresEventStore(engine, notify=False)
    checkpoints = CheckpointStore(engine)
    dead_letters = DeadLetterStore(engine)
    clickhouse = ClickHouseStore(settings.resolved_clickhouse_dsn)
    cache = ReadCache({name: spec.source_events for name, spec in METRICS.items()})
    # the folded aggregates of this process: HTTP commands and legacy CDC execute through one cache
    aggregates = AggregateCache()
    runtime = Runtime(
        settings, database_url, engine, store, checkpoints, dead_letters, clickhouse, cache, webhook_store,
        aggregates, box,
    )
    # the read side's use cases over the read models, the event history and the runtime's progress
    freshness = Freshness(runtime, settings.min_position_timeout_s)
    metric_queries = MetricQueries(
        clickhouse, store, store, cache, freshness, settings.reporting_currency,
        settings.time_travel_max_events,
    )  # fmt: skip
    entity_queries = EntityQueries(clickhouse, store, cache, freshness)
    runtime.metric_source = metric_queries.measure  # alert rules measure the metric as served
    # the write side's use case: a rejected command drops the cached metrics that count rejections
    command_service = CommandService(store, aggregates, on_rejected=metric_queries.command_rejected)
    # the read surface that follows applied events: SSE hub (position order), search index, SLOs
    hub = AppliedEventHub(previous_watermark=lambda: runtime.watermark)
    search = EntitySearch(SearchIndex(), clickhouse, runtime)
    hub.add_listener(search.index.apply)
    slo = SloTracker(objectives_from_settings(settings.slo_file, settings.slo_overrides))
    runtime.applied_listeners.extend([hub.on_applied, partial(record_applied, slo)])  # SLOs and Prometheus
    RUNTIME_GAUGES.watch(runtime, cache)  # lag, watermarks and cache hits, read when /metrics is scraped
    rate_limits = build_rate_limits(settings)
    authenticator, key_admin = build_access(settings, engine, api_keys)

    # downstream: webhooks and alerts are written here; the webhook and alert fleets run in the runtime
    # (embedded) or elsewhere (distributed: the workers' sweep finds queued deliveries)
    def kick(endpoint_id: str) -> None:
        if runtime.webhooks is not None:
            runtime.webhooks.kick(endpoint_id)

    def request_evaluation(rule_id: str) -> None:
        if runtime.alerts is not None:
            runtime.alerts.request(rule_id)

    def cdc_replay() -> CdcReplay | None:
        return runtime.legacy.replay_letter if runtime.legacy is not None else None

    hooks = settings.webhooks
    webhook_subscriptions = WebhookSubscriptions(
        webhook_store, store, partial(ssrf.destination_problem, allow_private=hooks.allow_private),
        webhook_signing.generate_secret, kick, hooks.secret_grace_s,
    )  # fmt: skip
    def endpoint_exists(tenant: str, endpoint_id: str) -> bool:
        return webhook_store.get_endpoint(tenant, endpoint_id) is not None

    # an alert's test notification measures the metric as served, like the evaluator does
    alert_rules = AlertRules(
        AlertStore(engine, webhook_store), endpoint_exists, metric_queries.measure, request_evaluation, kick
    )
    def measured_now(tenant: str, name: str, window: str) -> float:
        """A metric semantic queries do not compile to SQL (active_sessions, error_rate), as served."""
        return metric_queries.measure(tenant, name, window, None, {}, datetime.now(UTC))

    return Container(
        settings=settings,
        database_url=database_url,
        engine=engine,
        store=store,
        checkpoints=checkpoints,
        dead_letters=dead_letters,
        clickhouse=clickhouse,
        webhook_store=webhook_store,
        secret_box=box,
        stored_secrets=stored_secrets,
        read_cache=cache,
        aggregates=aggregates,
        runtime=runtime,
        freshness=freshness,
        metric_queries=metric_queries,
        entity_queries=entity_queries,
        command_service=command_service,
        hub=hub,
        search=search,
        slo=slo,
        authenticator=authenticator,
        key_admin=key_admin,
        rate_limits=rate_limits,
        stream_slots=StreamSlots(settings.sse_max_streams),
        webhook_subscriptions=webhook_subscriptions,
        alert_rules=alert_rules,
        dead_letter_replay=DeadLetterReplayer(EventLookup(engine), store, dead_letters, cdc_replay),
        kafka_replay=KafkaRangeReplay(store, runtime.kafka_bootstrap, runtime.topic_prefix),
        health=Health(store, clickhouse, runtime, engines=runtime.engine_health.components),
        event_feed=EventFeed(hub, store, runtime),
        lineage=Lineage(store, clickhouse, dead_letters, hub, runtime),
        changelog=Changelog(store, runtime),
        queries=QueryService(
            clickhouse, runtime, settings.reporting_currency, measured_now,
            history=store, time_travel_max_events=settings.time_travel_max_events,
        ),  # fmt: skip
    )
