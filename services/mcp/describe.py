"""Tool descriptions from the contracts: the catalog the API serves (``GET /v1/catalog``) names every
metric and entity with its description, unit, windows, dimensions and fields; the tools say so, so an
MCP client's model knows what it may ask for without calling ``catalog`` first."""

from __future__ import annotations

from agentflow_client import Catalog, MetricDoc


def metric_line(name: str, doc: MetricDoc) -> str:
    dims = f"; dimensions {', '.join(doc.dimensions)}" if doc.dimensions else ""
    windows = ", ".join(doc.available_windows)
    about = f"unit {doc.unit}; windows {windows}{dims}; contract {doc.contract_version}"
    return f"- {name}: {doc.description} ({about})"


def get_metric(catalog: Catalog) -> str:
    lines = "\n".join(metric_line(n, d) for n, d in sorted(catalog.metrics.items()))
    return (
        "A metric's value over a window ending now (or at `as_of`, an ISO-8601 instant: the value as it "
        "stood then). Money metrics are in one currency (`currency`, default the tenant's reporting "
        "currency) and never sum across currencies; `components` has the breakdown. A dimension filter "
        "(channel, category, product, method) only where the metric lists that dimension. Pass a "
        "command's `position` as `min_position` to read your own write. The result's `freshness` says "
        f"which event-store position the value reflects and how many seconds the read model lagged.\n"
        f"Metrics:\n{lines}"
    )


def metric_series(catalog: Catalog) -> str:
    lines = "\n".join(f"- {n}: grains {', '.join(d.series_grains)} ({d.unit})"
                      for n, d in sorted(catalog.metrics.items()) if d.series_grains)  # fmt: skip
    return (
        "A metric per time bucket (`grain`) over a window (default 1h), with the same filters as "
        "get_metric; one point per bucket with start, end and value.\n"
        f"Metrics with a series:\n{lines}"
    )


def get_entity(catalog: Catalog) -> str:
    parts = []
    for name, doc in sorted(catalog.entities.items()):
        fields = ", ".join(sorted(doc.fields))
        parts.append(f"- {name} ({doc.primary_key}): {doc.description}. Fields: {fields}")
    return (
        "An entity as it is now (or at `as_of`): its current read-model row. Pass a command's `position` "
        "as `min_position` to see your own write.\nEntity types:\n" + "\n".join(parts)
    )


def query(catalog: Catalog) -> str:
    return (
        "Ask a question in plain language (`question`, e.g. 'revenue by channel in the last hour'), or "
        "name `metrics` (with optional `dimensions`, `window`, `filters`, `grain`) for the semantic layer. "
        "One page of rows (`limit`, `cursor` for the next page), a sentence (`answer_text`), the SQL run "
        f"and the tables read. Metrics: {', '.join(sorted(catalog.metrics))}."
    )


def explain(catalog: Catalog) -> str:
    return (
        "How a query would be answered, without running it: the interpretation, the SQL and the tables "
        f"read. Same arguments as `query`. Metrics: {', '.join(sorted(catalog.metrics))}."
    )


def search(catalog: Catalog) -> str:
    return (
        "Find entities (by id, name, email, category...), metrics and catalog fields matching `q`. "
        f"`entity_types` narrows to some of: {', '.join(sorted(catalog.entities))}."
    )


def order_timeline(catalog: Catalog) -> str:
    order = catalog.entities.get("order")
    about = f" ({order.description})" if order else ""
    return (
        f"An order's{about} events in order -- placed, confirmed, paid, shipped, delivered, cancelled or "
        "refunded -- with each stage's time and the durations between stages, from the event store "
        "(or as of `as_of`)."
    )


CATALOG = (
    "The metrics and entities this AgentFlow serves, from their current contract versions: descriptions, "
    "units, windows, dimensions, series grains, fields and the events that move them."
)

LINEAGE = (
    "Where an entity's value comes from: the events that built it (with positions), the layers they "
    "went through (event store, validation, projection, read model) and the contract of its read model."
)
