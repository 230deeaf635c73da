"""The composition root: one ``Settings`` in, every part of an API process out.

``build(settings, database_url)`` makes the engine, the stores, the read side and the runtime and
returns them in one typed :class:`Container`; ``create_app(container)`` (services/api/app.py) hands the
HTTP routes what they need through Litestar's dependency injection. ``agentflow up`` (embedded and
distributed), the benchmarks and the tests build through here; nothing else constructs these parts.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine

from commands.service import CommandService
from connectors.checkpoints import CheckpointStore
from connectors.clickhouse import ClickHouseStore
from connectors.database import make_service_engine
from connectors.dead_letters import DeadLetterStore
from connectors.event_store import PostgresEventStore
from connectors.webhook_store import WebhookStore
from readmodels.entity_queries import EntityQueries
from readmodels.freshness import Freshness
from readmodels.metric_queries import MetricQueries
from readmodels.metrics import METRICS
from readmodels.read_cache import ReadCache
from services.auth import ApiKeys
from services.config import Settings
from services.event_stream import AppliedEventHub, StreamSlots
from services.rate_limit import RateLimiter
from services.runtime import Runtime
from services.search_index import SearchIndex
from services.slo import SloTracker, objectives_from_settings


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
    read_cache: ReadCache
    runtime: Runtime
    freshness: Freshness
    metric_queries: MetricQueries
    entity_queries: EntityQueries
    command_service: CommandService
    hub: AppliedEventHub
    search: SearchIndex
    slo: SloTracker
    api_keys: ApiKeys
    rate_limiter: RateLimiter | None
    stream_slots: StreamSlots

    def close(self) -> None:
        """Release what ``build`` opened that the runtime's stop does not (idempotent)."""
        self.engine.dispose()


def build(settings: Settings, database_url: str, api_keys: dict[str, str] | None = None) -> Container:
    """The parts of an API process on ``database_url`` (the runtime is built, not started).
    ``api_keys`` (key -> tenant) defaults to ``settings.api_keys``."""
    engine = make_service_engine(database_url, settings.db_threads)
    # the tailers share this process: wake them in-process after each commit instead of NOTIFY
    store = PostgresEventStore(engine, notify=False)
    checkpoints = CheckpointStore(engine)
    dead_letters = DeadLetterStore(engine)
    clickhouse = ClickHouseStore(settings.resolved_clickhouse_dsn)
    webhook_store = WebhookStore(engine)
    cache = ReadCache({name: spec.source_events for name, spec in METRICS.items()})
    runtime = Runtime(
        settings, database_url, engine, store, checkpoints, dead_letters, clickhouse, cache, webhook_store
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
    command_service = CommandService(store, on_rejected=metric_queries.command_rejected)
    # the read surface that follows applied events: SSE hub (position order), search index, SLOs
    hub = AppliedEventHub(previous_watermark=lambda: runtime.watermark)
    search = SearchIndex()
    hub.add_listener(search.apply)
    slo = SloTracker(objectives_from_settings(settings.slo_file, settings.slo_overrides))
    runtime.applied_listeners.extend([hub.on_applied, slo.record_applied])
    rate_limiter = RateLimiter(settings.rate_limit_rpm) if settings.rate_limit_rpm else None
    return Container(
        settings=settings,
        database_url=database_url,
        engine=engine,
        store=store,
        checkpoints=checkpoints,
        dead_letters=dead_letters,
        clickhouse=clickhouse,
        webhook_store=webhook_store,
        read_cache=cache,
        runtime=runtime,
        freshness=freshness,
        metric_queries=metric_queries,
        entity_queries=entity_queries,
        command_service=command_service,
        hub=hub,
        search=search,
        slo=slo,
        api_keys=ApiKeys(settings.api_keys if api_keys is None else api_keys),
        rate_limiter=rate_limiter,
        stream_slots=StreamSlots(settings.sse_max_streams),
    )
