"""The query commands of ``agentflow``, on the Python SDK (sdk/python): ``metric``, ``entity``,
``timeline``, ``query``, ``search``, ``catalog``, ``stream`` and ``deadletters``. Tables in a terminal,
JSON with ``--json``. The API and key: ``--url``/``--api-key``, else ``AGENTFLOW_URL``/
``AGENTFLOW_API_KEY``, else the config file (``--config``, ``AGENTFLOW_CONFIG`` or
``~/.config/agentflow/config.toml``), else this machine's ``agentflow up`` (services/config.py)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentflow_client import AgentFlowError, ApiError, Client

from services import query_tables as show
from services.config import client_settings_from_env

QUERY_COMMANDS = ("metric", "entity", "timeline", "query", "search", "catalog", "stream", "deadletters")


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=None, help="the API (default: $AGENTFLOW_URL, the config file)")
    common.add_argument("--api-key", default=None, help="default: $AGENTFLOW_API_KEY, the config file")
    common.add_argument("--config", type=Path, default=None, help="TOML with url and api_key")
    common.add_argument("--json", action="store_true", help="print the answer's JSON")
    return common


def add_query_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    common = [_common()]
    p = sub.add_parser("metric", parents=common, help="a metric's value, e.g. `metric revenue --window 1h`")
    p.add_argument("name")
    p.add_argument("--window", default=None, help="5m, 15m, 1h, 6h, 24h (now for gauges)")
    p.add_argument("--currency", default=None)
    p.add_argument("--channel", default=None)
    p.add_argument("--as-of", default=None, help="ISO-8601 instant: the value as it stood then")
    p.add_argument("--min-position", type=int, default=None, help="wait until the read model applied it")
    p = sub.add_parser("entity", parents=common, help="an order, user, product or session")
    p.add_argument("type")
    p.add_argument("id")
    p.add_argument("--as-of", default=None)
    p.add_argument("--min-position", type=int, default=None)
    p = sub.add_parser("timeline", parents=common, help="an order's events, stages and durations")
    p.add_argument("id")
    p.add_argument("--type", default="order")
    p.add_argument("--as-of", default=None)
    p = sub.add_parser("query", parents=common, help="ask in plain language, or --sql over the read models")
    p.add_argument("question", nargs="?")
    p.add_argument("--sql", default=None)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--cursor", default=None)
    p.add_argument("--min-position", type=int, default=None)
    p = sub.add_parser("search", parents=common, help="find entities, metrics and catalog fields")
    p.add_argument("q")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--types", default=None, help="entity types, comma-separated")
    p.add_argument("--min-position", type=int, default=None)
    sub.add_parser("catalog", parents=common, help="the metrics and entities the API serves")
    p = sub.add_parser("stream", parents=common, help="tail the event stream (SSE); Ctrl-C stops")
    p.add_argument("--type", default=None, help="event types or categories (order, payment, ...), comma-sep.")
    p.add_argument("--entity-type", default=None)
    p.add_argument("--entity-id", default=None)
    p.add_argument("--from", dest="after", type=int, default=None, help="replay after this position")
    p.add_argument("--max-events", type=int, default=None)
    p = sub.add_parser("deadletters", parents=common, help="list, replay or dismiss rejected events")
    p.add_argument("action", nargs="?", choices=("list", "show", "replay", "dismiss"), default="list")
    p.add_argument("id", nargs="?", type=int)
    p.add_argument("--status", default=None, help="failed, replayed, dismissed")
    p.add_argument("--event-type", default=None)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--cursor", default=None)
    p.add_argument("--data", default=None, help="replay: the corrected event data (a JSON object)")
    p.add_argument("--note", default=None, help="dismiss: why")


def run_query_command(args: argparse.Namespace, out: Any = None) -> int:
    try:
        target = client_settings_from_env(args.url, args.api_key, config_file=args.config)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not target.api_key:
        print("error: no API key (pass --api-key, set AGENTFLOW_API_KEY or a config file)", file=sys.stderr)
        return 2
    console = show.console(out)
    try:
        with Client(target.url, target.api_key) as client:
            return _COMMANDS[args.command](client, args, console)
    except ApiError as exc:
        print(f"error: {exc.status} {exc.code}: {exc.message}", file=sys.stderr)
        if exc.details is not None:
            print(f"details: {json.dumps(exc.details)}", file=sys.stderr)
        return 1
    except AgentFlowError as exc:
        print(f"error: cannot reach {target.url}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _answer(args: argparse.Namespace, console: Any, result: Any, *tables: Any) -> int:
    if args.json:
        show.print_json(result, console)
    else:
        for table in tables:
            console.print(table)
    return 0


def _metric(client: Client, args: argparse.Namespace, console: Any) -> int:
    m = client.metric(args.name, args.window, currency=args.currency, channel=args.channel, as_of=args.as_of,
                      min_position=args.min_position)  # fmt: skip
    return _answer(args, console, m, show.metric_table(m))


def _entity(client: Client, args: argparse.Namespace, console: Any) -> int:
    e = client.entity(args.type, args.id, as_of=args.as_of, min_position=args.min_position)
    return _answer(args, console, e, show.entity_table(e))


def _timeline(client: Client, args: argparse.Namespace, console: Any) -> int:
    t = client.timeline(args.id, args.type, as_of=args.as_of)
    return _answer(args, console, t, show.timeline_table(t))


def _query(client: Client, args: argparse.Namespace, console: Any) -> int:
    if not (args.question or args.sql):
        print("error: ask a question or pass --sql", file=sys.stderr)
        return 2
    q = client.query(args.question, sql=args.sql, limit=args.limit, cursor=args.cursor,
                     min_position=args.min_position)  # fmt: skip
    return _answer(args, console, q, show.query_table(q))


def _search(client: Client, args: argparse.Namespace, console: Any) -> int:
    s = client.search(args.q, limit=args.limit, entity_types=args.types, min_position=args.min_position)
    return _answer(args, console, s, show.search_table(s))


def _catalog(client: Client, args: argparse.Namespace, console: Any) -> int:
    c = client.catalog()
    return _answer(args, console, c, *show.catalog_tables(c))


def _stream(client: Client, args: argparse.Namespace, console: Any) -> int:
    with client.stream_events(event_type=args.type, entity_type=args.entity_type, entity_id=args.entity_id,
                              last_event_id=args.after, max_events=args.max_events) as stream:  # fmt: skip
        for event in stream:
            line = json.dumps({"id": event.id, "event": event.event, "data": event.data}) if args.json else (
                show.event_line(event)
            )
            show.print_line(line, console)
    return 0


def _deadletters(client: Client, args: argparse.Namespace, console: Any) -> int:
    if args.action == "list":
        page = client.deadletters(status=args.status, event_type=args.event_type, limit=args.limit,
                                  cursor=args.cursor)  # fmt: skip
        return _answer(args, console, page, show.deadletters_table(page))
    if args.id is None:
        print(f"error: deadletters {args.action} needs the dead letter's id", file=sys.stderr)
        return 2
    if args.action == "show":
        letter = client.deadletter(args.id)
    elif args.action == "replay":
        letter = client.replay_deadletter(args.id, json.loads(args.data) if args.data else None)
    else:
        letter = client.dismiss_deadletter(args.id, args.note)
    return _answer(args, console, letter, show.deadletter_table(letter))


_COMMANDS: dict[str, Callable[[Client, argparse.Namespace, Any], int]] = {
    "metric": _metric, "entity": _entity, "timeline": _timeline, "query": _query, "search": _search,
    "catalog": _catalog, "stream": _stream, "deadletters": _deadletters,
}  # fmt: skip
