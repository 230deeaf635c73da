"""How the query commands (services/query_cli.py) show an answer: a rich table in a terminal, or the
answer's JSON with ``--json``."""

from __future__ import annotations

from typing import Any

import msgspec
from agentflow_client import (
    Catalog,
    DeadLetterList,
    DeadLetterView,
    EntityValue,
    MetricValue,
    OrderTimeline,
    QueryResult,
    SearchResults,
    StreamEvent,
)
from rich.console import Console
from rich.table import Table


def console(out: Any = None) -> Console:
    """A console on ``out`` (default stdout); wide enough that ids and timestamps are not cut when the
    output is not a terminal."""
    c = Console(file=out, highlight=False, soft_wrap=False)
    if not c.is_terminal:
        c.width = 200
    return c


def print_json(result: Any, out: Console) -> None:
    print_line(msgspec.json.format(msgspec.json.encode(result), indent=2).decode(), out)


def print_line(text: str, out: Console) -> None:
    """As is: no markup, no wrapping (JSON and stream lines must stay parseable)."""
    out.file.write(text + "\n")
    out.file.flush()


def _cell(value: Any) -> str:
    if isinstance(value, dict | list):
        return msgspec.json.encode(value).decode()
    return "" if value is None else str(value)


def _pairs(title: str, rows: list[tuple[str, Any]]) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for name, value in rows:
        table.add_row(name, _cell(value))
    return table


def metric_table(m: MetricValue) -> Table:
    rows: list[tuple[str, Any]] = [("value", m.value), ("unit", m.unit), ("window", m.window),
                                   ("computed_at", m.computed_at), ("as_of", m.meta.as_of),
                                   ("as_of_position", m.meta.as_of_position),
                                   ("freshness_seconds", m.meta.freshness_seconds)]  # fmt: skip
    rows += [(f"components.{k}", v) for k, v in m.components.items()]
    return _pairs(f"metric {m.metric_name}", rows)


def entity_table(e: EntityValue) -> Table:
    rows = list(e.data.items()) + [("as_of", e.meta.as_of), ("as_of_position", e.meta.as_of_position),
                                   ("freshness_seconds", e.freshness_seconds)]  # fmt: skip
    return _pairs(f"{e.entity_type} {e.entity_id}", rows)


def timeline_table(t: OrderTimeline) -> Table:
    table = Table(title=f"{t.entity_type} {t.entity_id}: {t.current_stage or '-'}, {t.event_count} events")
    for col in ("position", "event", "stage", "occurred_at", "since placed (s)"):
        table.add_column(col)
    for e in t.events:
        table.add_row(str(e.position), e.event_type, e.stage or "", e.occurred_at.isoformat(),
                      _cell(e.seconds_since_placed))  # fmt: skip
    return table


def rows_table(title: str, rows: list[dict[str, Any]], columns: list[str] | None = None) -> Table:
    table = Table(title=title)
    cols = columns or list(dict.fromkeys(k for row in rows for k in row))
    for col in cols:
        table.add_column(col)
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in cols))
    return table


def query_table(q: QueryResult) -> Table:
    more = f" (more: --cursor {q.next_cursor})" if q.next_cursor else ""
    title = f"{q.metadata.rows_returned} rows{more}"
    return rows_table(title, q.rows, q.columns)


def search_table(s: SearchResults) -> Table:
    rows = [{"type": h.type, "id": h.id, "entity_type": h.entity_type, "score": round(h.score, 3),
             "snippet": h.snippet, "endpoint": h.endpoint} for h in s.results]  # fmt: skip
    columns = ["type", "id", "entity_type", "score", "snippet", "endpoint"]
    return rows_table(f"search {s.query!r}", rows, columns)


def catalog_tables(c: Catalog) -> list[Table]:
    metrics = [{"metric": n, "unit": d.unit, "windows": ",".join(d.available_windows),
                "description": d.description} for n, d in sorted(c.metrics.items())]  # fmt: skip
    entities = [{"entity": n, "primary_key": d.primary_key, "fields": len(d.fields),
                 "description": d.description} for n, d in sorted(c.entities.items())]  # fmt: skip
    return [rows_table("metrics", metrics), rows_table("entities", entities)]


def deadletters_table(page: DeadLetterList) -> Table:
    columns = ["id", "status", "event_type", "position", "stage", "reason", "created_at"]
    rows = [{c: getattr(d, c) for c in columns} for d in page.data]
    more = f" (more: --cursor {page.next_cursor})" if page.next_cursor else ""
    return rows_table(f"{page.count} dead letters{more}", rows, columns)


def deadletter_table(d: DeadLetterView) -> Table:
    return _pairs(f"dead letter {d.id}", [(f, getattr(d, f)) for f in d.__struct_fields__])


def event_line(e: StreamEvent) -> str:
    return f"{e.id}\t{e.event}\t{e.data.get('entity_type', '')}\t{e.data.get('entity_id', '')}"
