"""``GET /v1/lineage/{type}/{id}``: how one entity's read-model row came to be — every event that fed it
(real event ids and positions from the event store), whether each was applied, dead-lettered or is still
pending, when it was applied (the AppliedEventHub remembers), and the layers it went through (source,
event store, validation, serving, lake, API) with their positions and timings."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from projections.entities import ENTITY_TABLES
from readmodels.applied_events import AppliedEventHub, iso
from readmodels.contract_registry import REGISTRY
from readmodels.ports import DeadLetterLookup, EventHistory, ReadModelStore, ServingProgress

LINEAGE_TYPES = tuple(ENTITY_TABLES)


def _ms(a: datetime | float | None, b: datetime | float | None) -> float | None:
    if a is None or b is None:
        return None
    ta = a.timestamp() if isinstance(a, datetime) else a
    tb = b.timestamp() if isinstance(b, datetime) else b
    return round((tb - ta) * 1000, 3)


def _stats(values: list[float]) -> dict[str, Any] | None:
    if not values:
        return None
    ordered = sorted(values)
    return {
        "count": len(ordered),
        "min_ms": ordered[0],
        "p50_ms": ordered[len(ordered) // 2],
        "max_ms": ordered[-1],
    }


class Lineage:
    def __init__(
        self,
        events: EventHistory,
        read_models: ReadModelStore,
        dead_letters: DeadLetterLookup,
        hub: AppliedEventHub | None,
        progress: ServingProgress,
    ) -> None:
        self.events = events
        self.read_models = read_models
        self.dead_letters = dead_letters
        self.hub = hub
        self.progress = progress

    def report(self, tenant: str, entity_type: str, entity_id: str) -> dict[str, Any] | None:
        """The lineage of ``entity_type`` (one of LINEAGE_TYPES) ``entity_id``; None when no event of
        the tenant feeds it. Blocking (event store and read-model reads)."""
        progress = self.progress
        watermark = progress.watermark
        now = datetime.now(UTC)
        events = self.events.read_entity_events_until(tenant, entity_type, entity_id, now)
        if not events:
            return None
        progress.flush_serving()
        table = ENTITY_TABLES[entity_type]
        row = self.read_models.get_row(table, (tenant, entity_id))
        row_version = int(row["version"]) if row is not None else None
        dead = self.dead_letters.at_positions(tenant, [e.position for e in events])
        applied_at = self.hub.applied_at(e.position for e in events) if self.hub is not None else {}
        lake_wm = progress.lake_watermark
        contract = REGISTRY.current(entity_type)

        items: list[dict[str, Any]] = []
        store_lag: list[float] = []
        apply_lag: list[float] = []
        for e in events:
            at = applied_at.get(e.position)
            status = (
                "dead_lettered" if e.position in dead else "applied" if e.position <= watermark else "pending"
            )
            entry: dict[str, Any] = {
                "position": e.position,
                "event_id": str(e.event_id),
                "type": e.event_type,
                "stream_type": e.stream_type,
                "stream_id": e.stream_id,
                "stream_version": e.stream_version,
                "schema_version": e.schema_version,
                "occurred_at": iso(e.occurred_at),
                "recorded_at": iso(e.recorded_at),
                "applied_at": iso(datetime.fromtimestamp(at, UTC)) if at is not None else None,
                "status": status,
                "correlation_id": e.metadata.get("correlation_id"),
                "causation_id": e.metadata.get("causation_id"),
                "actor": e.metadata.get("actor"),
                "durations_ms": {
                    "occurred_to_recorded": _ms(e.occurred_at, e.recorded_at),
                    "recorded_to_applied": _ms(e.recorded_at, at),
                },
            }
            if e.stream_type == entity_type and e.stream_id == entity_id and row_version is not None:
                entry["in_read_model_row"] = e.position <= row_version
            if lake_wm is not None:
                entry["in_lake"] = e.position <= lake_wm and status == "applied"
            if e.position in dead:
                entry["dead_letter"] = dead[e.position]
            items.append(entry)
            if (d := entry["durations_ms"]["occurred_to_recorded"]) is not None:
                store_lag.append(d)
            if (d := entry["durations_ms"]["recorded_to_applied"]) is not None:
                apply_lag.append(d)

        applied = [e for e in events if e.position <= watermark and e.position not in dead]
        last = applied[-1] if applied else None
        last_at = applied_at.get(last.position) if last is not None else None
        quality = round(1 - len(dead) / len(events), 4)
        actors = sorted({str(e.metadata.get("actor")) for e in events if e.metadata.get("actor")})
        distributed = progress.mode == "distributed"
        nodes: list[dict[str, Any]] = [
            {
                "layer": "source",
                "system": ", ".join(actors) or "unknown",
                "table_or_topic": "commands",
                "processed_at": iso(events[0].occurred_at),
                "quality_score": None,
                "events": len(events),
            },
            {
                "layer": "event_store",
                "system": "postgres",
                "table_or_topic": "events",
                "processed_at": iso(events[-1].recorded_at),
                "quality_score": None,
                "position": events[-1].position,
                "duration_ms": _stats(store_lag),
            },
            {
                "layer": "validation",
                "system": "flink" if distributed else "embedded projector",
                "table_or_topic": "dead_letters" if dead else "events",
                "processed_at": iso(datetime.fromtimestamp(last_at, UTC)) if last_at else None,
                "quality_score": quality,
                "rejected": len(dead),
            },
            {
                "layer": "serving",
                "system": "clickhouse",
                "table_or_topic": table,
                "processed_at": iso(datetime.fromtimestamp(last_at, UTC)) if last_at else None,
                "quality_score": 1.0 if row is not None else 0.0,
                "position": row_version,
                "duration_ms": _stats(apply_lag),
                "tables": list(contract.tables),
            },
        ]
        if lake_wm is not None:
            nodes.append({
                "layer": "lake",
                "system": "iceberg",
                "table_or_topic": "events",
                "processed_at": None,
                "quality_score": None,
                "position": lake_wm,
                "complete": last is not None and lake_wm >= last.position,
            })  # fmt: skip
        nodes.append({
            "layer": "api",
            "system": "litestar",
            "table_or_topic": f"/v1/entity/{entity_type}/{entity_id}",
            "processed_at": iso(now),
            "quality_score": None,
            "position": watermark,
        })  # fmt: skip
        last_updated = row.get("updated_at") if row is not None else None
        freshness_from = (
            last_updated if isinstance(last_updated, datetime) else (last.recorded_at if last else now)
        )
        return {
            "entity_type": entity_type,
            "entity_id": entity_id,
            "lineage": nodes,
            "freshness_seconds": round(max(0.0, (now - freshness_from).total_seconds()), 3),
            "validated": not dead,
            "enriched": row is not None,
            "read_model": {
                "table": table,
                "tables": list(contract.tables),
                "present": row is not None,
                "row_version": row_version,
                "contract": {"name": contract.name, "version": contract.version},
            },
            "events": items,
            "meta": {"as_of_position": watermark, "deployment": progress.mode},
        }
