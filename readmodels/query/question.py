"""Plain-language questions mapped deterministically onto semantic queries — never a guess.

The vocabulary comes from the metric contracts (readmodels/contracts: each metric's name, its declared
``synonyms`` and ``dimension_synonyms``, via ``contract_registry.vocabulary``) and from the live read
model: the values of the dimensions (channel ``web``, category ``gadgets``, method ``card``) are asked
of an injected ``values(dimension)`` lookup (the query service passes one over the tenant's read
model, tests a dict), so "card payments" is the filter method=card. What is read, longest phrase first:

* metrics (``revenue``, ``units sold``, ``gmv``...) and ``by <dimension>`` (``by channel``, ``per category``);
* windows (``last 24 hours``, ``today`` = the last 24 hours, ``this week``) and grains (``per hour``,
  ``hourly``, ``hour by hour``): "orders per hour over the last day";
* filters: ``in EUR``, ``channel web``, ``for PROD-001``, or a live dimension value (``card payments``);
* rankings: ``top 5 products by units sold``, ``bottom 3 categories``, ``which category sold the most
  units`` (order_by the metric, direction, top: 1 for "which <singular>", 10 for "top <plural>");
  ``which hour had the most orders`` ranks the buckets of an hourly series;
* comparisons: ``today vs yesterday``, ``this week versus last week``, ``compared to the previous
  period``, ``day over day`` (``compare``: the same window that much earlier);
* time travel: ``as of yesterday noon``, ``as of today 09:30``, ``as of 2026-05-01 12:00``, ``as of 3
  hours ago`` (``as_of``, resolved in UTC against the injected ``now``).

Revenue is a property of orders, which are not split by product or category: "revenue by product" is
answered with gross_merchandise_value (order-line value) and the interpretation says so (``notes``).
Every word must be accounted for (a phrase above or a filler word); anything else, or no metric at
all, raises QuestionError (a 400) with close matches and examples. The result is validated like a
semantic query body (``semantic.validate``); the same question (and ``now``) gives the same query.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, time, timedelta
from typing import Any

from domain.money import CURRENCY_EXPONENTS
from readmodels.contract_registry import DIMENSION_COLUMNS, REGISTRY, vocabulary
from readmodels.query.semantic import (
    SemanticError,
    SemanticQuery,
    catalog,
    format_instant,
    validate,
)
from readmodels.windows import WINDOWS

MAX_QUESTION_CHARS = 500
# dimension -> its live values (the query service asks the tenant's read model); a Mapping will do
DimensionValues = Callable[[str], Iterable[str]] | Mapping[str, Iterable[str]]
# the dimensions whose live values are vocabulary (product ids are matched by their shape, PROD-...)
VALUE_DIMENSIONS = ("channel", "category", "method")

WINDOW_PHRASES: dict[str, tuple[str, ...]] = {
    "5m": ("last 5 minutes", "past 5 minutes", "last five minutes", "last 5 min", "5m"),
    "15m": ("last 15 minutes", "past 15 minutes", "last fifteen minutes", "last quarter hour", "15m"),
    "1h": ("last hour", "past hour", "last 60 minutes", "last 1 hour", "this hour", "1h"),
    "6h": ("last 6 hours", "past 6 hours", "last six hours", "6h"),
    "24h": ("last 24 hours", "past 24 hours", "today", "last day", "past day", "24h", "since yesterday"),
    "7d": ("last 7 days", "past 7 days", "past week", "last week", "this week", "7d"),
    "now": ("right now", "now", "currently", "at the moment", "current"),
}
GRAIN_PHRASES: dict[str, tuple[str, ...]] = {
    "1m": ("per minute", "by minute", "every minute", "minutely", "minute by minute", "each minute"),
    "5m": ("per 5 minutes", "every 5 minutes", "in 5 minute buckets", "by 5 minutes", "per five minutes"),
    "1h": ("per hour", "by hour", "every hour", "hourly", "hour by hour", "each hour", "for each hour"),
    "1d": ("per day", "by day", "every day", "daily", "day by day", "each day", "for each day"),
}
# "<now-window> vs <earlier>": the earlier window's offset (None: one window length earlier)
COMPARE_PHRASES: dict[str | None, tuple[str, ...]] = {
    "1h": ("an hour ago", "the hour before", "the previous hour", "last hour", "the same time an hour ago"),
    "24h": ("yesterday", "the day before", "the previous day", "a day ago", "the same time yesterday"),
    "7d": ("last week", "the week before", "the previous week", "a week ago", "the same time last week"),
    None: ("the previous period", "the period before", "before", "the previous window", "previously"),
}
_VERSUS = ("vs", "versus", "compared to", "compared with", "against", "relative to")
_OVER = {"hour over hour": "1h", "day over day": "24h", "week over week": "7d"}
_DESC = ("most", "highest", "biggest", "largest", "best", "top", "max", "maximum", "greatest")
_ASC = ("least", "lowest", "fewest", "smallest", "worst", "bottom", "min", "minimum")
_RANK_WORDS = ("top", "bottom", "best", "worst", "highest", "lowest", "biggest", "largest", "smallest")
_RANK_VERB = ("selling", "performing", "earning", "grossing")
_RANK_GRAINS = {"hour": "1h", "day": "1d", "minute": "1m"}  # "which hour had the most orders"
_NUMBER_WORDS = "zero one two three four five six seven eight nine ten eleven twelve"
_NUMBERS = {w: i for i, w in enumerate(_NUMBER_WORDS.split())}
_NUMBERS.update({"fifteen": 15, "twenty": 20})
# a requested dimension a metric lacks, and the metric that has it (said in the interpretation)
NEAREST: dict[tuple[str, str], tuple[str, str]] = {
    (m, d): (
        "gross_merchandise_value",
        f"{m} is a property of orders, which are not split by {d}: read as gross_merchandise_value, the "
        "value of the order lines placed (before cancellations and refunds)",
    )
    for m in ("revenue", "net_revenue")
    for d in ("product", "category")
}
_FILLER_WORDS = """a an the of for in on over during at to by per with and from what whats what's is are
    was were be been show me give get list tell how much many our my we us total current
    please did do does overall value values number there it its broken down split across
    compare all whole each which sold had has have made brought generated got saw see
    selling payments payment"""
FILLER = frozenset(_FILLER_WORDS.split())
_BY = ("by", "per", "split by", "broken down by", "grouped by", "across", "for each", "for every")
_ID = re.compile(r"\b(prod-[a-z0-9]+)\b")
_DIM_FILTER = re.compile(r"\b(channel|category|method|payment method)\s*(?:=|is|:)?\s*([a-z0-9_-]+)\b")
_CLOCK = r"(noon|midday|midnight|\d{1,2}(?::\d{2})?\s?(?:am|pm)|\d{1,2}:\d{2}|\d{1,2} o'clock)"
_AS_OF = re.compile(
    r"\bas (?:of|at)\s+(?:"
    rf"(?P<day>yesterday|today)(?:\s+(?:at\s+)?{_CLOCK})?"
    rf"|(?P<date>\d{{4}}-\d{{2}}-\d{{2}})(?:[ t](?:at\s+)?(?P<dtime>\d{{1,2}}:\d{{2}}(?::\d{{2}})?))?z?"
    r"|(?P<n>\d+|a|an|one|two|three|four|five|six|seven|eight|nine|ten|twelve)\s+"
    r"(?P<unit>minutes?|hours?|days?|weeks?)\s+ago"
    rf"|(?P<bare>noon|midday|midnight)(?:\s+today)?"
    r")(?![\w-])"
)


class QuestionError(SemanticError):
    pass


def _norm(text: str) -> str:
    text = text.lower().replace("’", "'")
    text = re.sub(r"[?!,;\"()]|\.(?!\d)", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def _take(text: str, phrase: str) -> tuple[int, str]:
    """(position or -1, text with the first whole-word occurrence of ``phrase`` blanked out); the
    text keeps its length, so positions stay comparable."""
    m = re.search(r"(?<![\w-])" + re.escape(phrase) + r"(?![\w-])", text)
    if m is None:
        return -1, text
    return m.start(), _blank(text, m.start(), m.end())


def _blank(text: str, start: int, end: int) -> str:
    return text[:start] + "|" * (end - start) + text[end:]


def _by_longest(table: Mapping[Any, Iterable[str]]) -> list[tuple[str, Any]]:
    pairs = [(phrase, name) for name, phrases in table.items() for phrase in phrases]
    return sorted(pairs, key=lambda p: (-len(p[0]), p[0], str(p[1])))


def metric_synonyms() -> dict[str, tuple[str, ...]]:
    """Metric -> the phrases naming it: its name (also with spaces) and its contract's synonyms."""
    declared, _ = vocabulary(REGISTRY)
    out = {}
    for name in sorted(catalog()):
        spaced = name.replace("_", " ")
        out[name] = tuple(dict.fromkeys([name, spaced, *declared.get(name, ())]))
    return out


def dimension_synonyms() -> dict[str, tuple[str, ...]]:
    """Dimension -> the phrases naming it (the contracts' ``dimension_synonyms``, and its name)."""
    _, declared = vocabulary(REGISTRY)
    return {d: tuple(dict.fromkeys([d, *declared.get(d, ())])) for d in sorted(DIMENSION_COLUMNS)}


def _singular(phrase: str, dim: str) -> bool:
    return not phrase.endswith("s") or phrase in (dim, "sales channel", "payment method")


def _vocabulary() -> list[str]:
    out = [
        p
        for t in (metric_synonyms(), dimension_synonyms(), WINDOW_PHRASES, GRAIN_PHRASES)
        for ps in t.values()
        for p in ps
    ]
    return sorted(set(out))


EXAMPLES = (
    "revenue by channel last 24 hours",
    "top 5 products by units sold this week",
    "which category sold the most units this week",
    "revenue today vs yesterday",
    "payment failure rate for card payments in EUR",
    "orders per hour over the last day",
    "revenue as of yesterday noon",
    "stock on hand for PROD-001 now",
)


def _refuse(code: str, message: str, **details: Any) -> QuestionError:
    return QuestionError(code, message, {**details, "examples": list(EXAMPLES)})


def _lookup(values: DimensionValues | None) -> Callable[[str], list[str]]:
    cache: dict[str, list[str]] = {}

    def get(dim: str) -> list[str]:
        if dim not in cache:
            if values is None:
                found: Iterable[str] = ()
            elif isinstance(values, Mapping):
                found = values.get(dim, ())
            else:
                found = values(dim)
            cache[dim] = sorted({str(v) for v in found if str(v).strip()})
        return cache[dim]

    return get


def _number(word: str | None) -> int | None:
    if word is None:
        return None
    return int(word) if word.isdigit() else _NUMBERS.get(word)


def _clock(raw: str | None) -> time:
    if raw is None or raw == "midnight":
        return time(0, 0)
    if raw in ("noon", "midday"):
        return time(12, 0)
    m = re.fullmatch(r"(\d{1,2})(?::(\d{2}))?\s?(am|pm|o'clock)?", raw.strip())
    if m is None:
        raise _refuse("unmapped_question", f"cannot read the time {raw!r}")
    hour, minute, half = int(m[1]), int(m[2] or 0), m[3]
    if half == "pm" and hour < 12:
        hour += 12
    if half == "am" and hour == 12:
        hour = 0
    if hour > 23 or minute > 59:
        raise _refuse("unmapped_question", f"cannot read the time {raw!r}")
    return time(hour, minute)


def _as_of(m: re.Match[str], now: datetime) -> datetime:
    today = now.astimezone(UTC).date()
    if m["day"]:
        day = today - timedelta(days=1) if m["day"] == "yesterday" else today
        return datetime.combine(day, _clock(m.group(2)), UTC)
    if m["date"]:
        try:
            day = datetime.strptime(m["date"], "%Y-%m-%d").date()
            at = time.fromisoformat(m["dtime"].zfill(5)) if m["dtime"] else time(0, 0)
        except ValueError:
            raise _refuse("unmapped_question", f"cannot read the date {m.group(0)!r}") from None
        return datetime.combine(day, at, UTC)
    if m["n"]:
        n = 1 if m["n"] in ("a", "an") else _number(m["n"])
        assert n is not None
        unit = m["unit"].rstrip("s")
        return now.astimezone(UTC) - timedelta(**{f"{unit}s": n})
    return datetime.combine(today, _clock(m["bare"]), UTC)


def _compare_phrases() -> list[tuple[str, str | None]]:
    pairs = [
        (f"{vs} {phrase}", offset)
        for offset, phrases in COMPARE_PHRASES.items()
        for phrase in phrases
        for vs in _VERSUS
    ]
    pairs += [(phrase, offset) for phrase, offset in _OVER.items()]
    return sorted(pairs, key=lambda p: (-len(p[0]), p[0]))


def _ranking(
    text: str, dim_pairs: list[tuple[str, Any]]
) -> tuple[str, str | None, str | None, str | None, int | None, str | None]:
    """(text, ranked dimension, ranked grain, direction, limit, verb): "top 5 products", "bottom 3
    categories", "best selling product", "which category ... the most", "which hour ... the most"."""
    dim_of = dict(dim_pairs)
    dims_alt = "|".join(re.escape(p) for p, _ in dim_pairs)
    num = "|".join([r"\d+", *_NUMBERS])
    words = "|".join(_RANK_WORDS)
    m = re.search(
        rf"(?<![\w-])({words})(?: ({num}))?(?: ({'|'.join(_RANK_VERB)}))? ({dims_alt})(?![\w-])", text
    )
    if m is not None:
        dim = dim_of[m[4]]
        n = _number(m[2])
        limit = n if n is not None else (1 if _singular(m[4], dim) else 10)
        if limit < 1:
            raise _refuse("invalid_query", "a ranking needs at least one row")
        direction = "asc" if m[1] in _ASC else "desc"
        return _blank(text, m.start(), m.end()), dim, None, direction, limit, m[3]
    m = re.search(rf"(?<![\w-])(?:which|what) ({dims_alt}|hour|day|minute)(?![\w-])", text)
    if m is None:
        return text, None, None, None, None, None
    grain = _RANK_GRAINS.get(m[1])
    dim = None if grain else dim_of[m[1]]
    text = _blank(text, m.start(), m.end())
    sup = re.search(rf"(?<![\w-])({'|'.join(_DESC + _ASC)})(?![\w-])", text)
    if sup is None:  # "which channels had orders": by channel, no ranking
        return text, dim, grain, None, None, None
    singular = grain is not None or _singular(m[1], str(dim))
    text = _blank(text, sup.start(), sup.end())
    return text, dim, grain, "asc" if sup[1] in _ASC else "desc", 1 if singular else None, None


def _live_values(
    text: str, live: Callable[[str], list[str]], metrics: list[str], filters: dict[str, str]
) -> str:
    """Filters from the live values of the dimensions named in what is left ("card payments")."""
    if not [w for w in re.split(r"[\s|]+", text) if w and w not in FILLER]:
        return text  # nothing left: no need to ask the read model
    cat = catalog()
    phrases: dict[str, list[tuple[str, str]]] = {}
    for dim in VALUE_DIMENSIONS:
        for value in live(dim):
            for phrase in sorted({value.lower(), re.sub(r"[_-]+", " ", value.lower()).strip()}):
                if len(phrase) > 1 and phrase not in FILLER and (dim, value) not in phrases.get(phrase, []):
                    phrases.setdefault(phrase, []).append((dim, value))
    dim_words = dimension_synonyms()
    for phrase in sorted(phrases, key=lambda p: (-len(p), p)):
        cands = phrases[phrase]
        nouns = sorted({n for d, _ in cands for n in dim_words[d]}, key=lambda n: (-len(n), n))
        at = -1
        for candidate in [f"{phrase} {n}" for n in nouns] + [phrase]:  # "web channel", then "web"
            at, text = _take(text, candidate)
            if at >= 0:
                break
        if at < 0:
            continue
        if len(cands) > 1:
            offered = [c for c in cands if all(c[0] in cat[m].dimensions for m in metrics)]
            if len(offered) != 1:
                raise _refuse(
                    "ambiguous_question",
                    f"{phrase!r} is a value of {' and '.join(d for d, _ in cands)}",
                    options={d: v for d, v in cands},
                )
            cands = offered
        dim, value = cands[0]
        if filters.get(dim, value) != value:
            raise _refuse("ambiguous_question", f"the question names two values of {dim}")
        filters[dim] = value
    return text


def _nearest(
    metrics: list[str], dims: list[str], filters: dict[str, str], notes: list[str], body: dict[str, Any]
) -> list[str]:
    """Each metric, or the one that has the dimensions asked for (``NEAREST``; said in ``notes``)."""
    cat = catalog()
    wanted = [d for d in [*dims, *filters] if d != "currency"]
    out: list[str] = []
    for name in metrics:
        missing = [d for d in wanted if d not in cat[name].dimensions]
        sub = next((NEAREST[(name, d)] for d in missing if (name, d) in NEAREST), None)
        if sub is not None and all(d in cat[sub[0]].dimensions for d in wanted):
            notes.append(sub[1])
            if body.get("order_by") == name:
                body["order_by"] = sub[0]
            name = sub[0]
        if name not in out:
            out.append(name)
    return out


def live_values(
    query: Callable[[str, dict[str, Any]], list[dict[str, Any]]],
    tenant: str,
    before: Callable[[], None] | None = None,
    limit: int = 1000,
) -> Callable[[str], list[str]]:
    """``values(dimension)`` over a read-model store's ``query``: the tenant's distinct values of the
    dimension's column in the tables of the metrics that offer it (code-built SQL; tenant bound).
    ``before`` runs once, before the first read (the service catches up lazily written tables)."""
    cat = catalog()
    pending = [before] if before is not None else []

    def values(dim: str) -> list[str]:
        while pending:
            pending.pop()()
        col = DIMENSION_COLUMNS[dim]
        tables = sorted({m.table for m in cat.values() if dim in m.dimensions and m.spec is not None})
        if not tables:
            return []
        union = " UNION DISTINCT ".join(
            f"SELECT DISTINCT {col} AS v FROM {{db}}.{t} FINAL WHERE tenant_id = {{tenant:String}}"
            for t in tables
        )
        rows = query(f"SELECT v FROM ({union}) ORDER BY v LIMIT {int(limit)}", {"tenant": tenant})
        return [str(r["v"]) for r in rows if r["v"]]

    return values


def parse_question(
    question: str,
    reporting_currency: str = "USD",
    values: DimensionValues | None = None,
    now: datetime | None = None,
) -> tuple[SemanticQuery, dict[str, Any]]:
    """(semantic query, how each part was read); raises QuestionError when any part does not map.

    ``values(dimension)`` gives the live values of channel, category and method (asked only when
    words are left after the catalog's phrases); ``now`` resolves ``as of`` instants (default: the
    clock)."""
    if not isinstance(question, str) or not question.strip():
        raise _refuse("invalid_question", "question must be a non-empty string")
    if len(question) > MAX_QUESTION_CHARS:
        raise QuestionError("invalid_question", f"question is longer than {MAX_QUESTION_CHARS} characters")
    now = (now or datetime.now(UTC)).astimezone(UTC)
    live = _lookup(values)
    text = f" {_norm(question)} "
    read: dict[str, Any] = {}
    filters: dict[str, str] = {}
    body: dict[str, Any] = {}
    notes: list[str] = []
    # time travel first ("as of today 09:00" is not the window "today"), then product ids (their
    # text is not vocabulary), comparisons ("vs last week" is not the window "last week"), rankings,
    # grains ("per hour" is a grain, "per channel" a dimension), windows, "by <dimension>", filters
    m_as_of = _AS_OF.search(text)
    if m_as_of is not None:
        instant = _as_of(m_as_of, now)
        if instant > now:
            raise _refuse("as_of_in_future", f"{m_as_of.group(0).strip()!r} is in the future")
        body["as_of"] = format_instant(instant)
        text = _blank(text, m_as_of.start(), m_as_of.end())
    for m in _ID.finditer(text):
        filters["product"] = m.group(1).upper()
    text = _ID.sub(lambda m: "|" * len(m.group(0)), text)
    compare: str | None = None
    compared = False
    for phrase, offset in _compare_phrases():
        at, text = _take(text, phrase)
        if at >= 0:
            if compared:
                raise _refuse("ambiguous_question", "the question names two comparisons")
            compared, compare = True, offset
    dims: list[str] = []
    dim_pairs = _by_longest(dimension_synonyms())
    text, rank_dim, rank_grain, direction, limit, verb = _ranking(text, dim_pairs)
    if rank_dim is not None:
        dims.append(rank_dim)
    grain = rank_grain
    for phrase, name in _by_longest(GRAIN_PHRASES):
        at, text = _take(text, phrase)
        if at >= 0:
            if grain not in (None, name):
                raise _refuse("ambiguous_question", "the question names two time grains")
            grain = name
    window = None
    for phrase, name in _by_longest(WINDOW_PHRASES):
        at, text = _take(text, phrase)
        if at >= 0:
            if window not in (None, name):
                raise _refuse("ambiguous_question", "the question names two time windows")
            window = name
    for by in sorted(_BY, key=len, reverse=True):
        for phrase, name in dim_pairs:
            while True:
                at, text = _take(text, f"{by} {phrase}")
                if at < 0:
                    break
                if name not in dims:
                    dims.append(name)
    for phrase, name in dim_pairs:  # "by channel and category"
        if dims:
            at, text = _take(text, f"and {phrase}")
            if at >= 0 and name not in dims:
                dims.append(name)
    for m in list(_DIM_FILTER.finditer(text)):
        dim = "method" if m.group(1) == "payment method" else m.group(1)
        value = m.group(2)
        if value in FILLER or value in _vocabulary():
            continue
        filters[dim] = value
        text = text.replace(m.group(0), "|" * len(m.group(0)), 1)
    for m in list(re.finditer(r"\b(?:in|for) ([a-z]{3})\b", text)):
        if m.group(1).upper() in CURRENCY_EXPONENTS:
            filters["currency"] = m.group(1).upper()
            text = text.replace(m.group(0), "|" * len(m.group(0)), 1)
    original = text
    found_at: dict[str, int] = {}
    ranked_by: set[str] = set()  # metrics named right after "by" ("top 3 products by units sold")
    for phrase, name in _by_longest(metric_synonyms()):
        while True:
            at, text = _take(text, phrase)
            if at < 0:
                break
            found_at[name] = min(at, found_at.get(name, at))
            if original[:at].endswith("by "):
                ranked_by.add(name)
    metrics = sorted(found_at, key=lambda n: (found_at[n], n))  # in the order the question names them
    text = _live_values(text, live, metrics, filters)
    leftover = [w for w in re.split(r"[\s|]+", text) if w and w not in FILLER]
    if leftover:
        vocab = _vocabulary() + [v for d in VALUE_DIMENSIONS for v in live(d)]
        raise _refuse(
            "unmapped_question",
            f"cannot map {' '.join(repr(w) for w in leftover)} onto the catalog",
            unmapped=leftover,
            suggestions={w: difflib.get_close_matches(w, vocab, n=3, cutoff=0.6) for w in leftover},
        )
    if not metrics and verb == "selling":  # "best selling products": by units sold
        metrics = ["units_sold"]
    if not metrics:
        raise _refuse("unmapped_question", "the question names no metric", metrics=sorted(catalog()))
    if direction is not None:
        by_metric = [n for n in metrics if n in ranked_by]
        body.update(order_by=(by_metric or metrics)[0], direction=direction)
    if limit is not None:
        body["top"] = limit
    metrics = _nearest(metrics, dims, filters, notes, body)
    cat = catalog()
    if window is None and compared and compare is not None:  # "revenue vs yesterday": the last 24h
        window = compare
    if window is None:
        window = "now" if all("now" in cat[m].windows for m in metrics) else "1h"
    if window == "now" and not all("now" in cat[m].windows for m in metrics):
        window = "5m" if all("5m" in cat[m].windows for m in metrics) else window
    if compared:  # "vs the previous period": one window earlier
        if compare is None and window not in WINDOWS:
            raise _refuse("invalid_query", "a comparison needs a window such as today or last hour")
        body["compare"] = compare or window
    body = {"metrics": metrics, "dimensions": dims, "filters": filters, "window": window, **body}
    if grain is not None:
        body["grain"] = grain
    read.update(body)
    if notes:
        read["notes"] = notes
    try:
        q = validate(body)
    except SemanticError as exc:
        details = {**(exc.details or {}), "interpretation": read, "examples": list(EXAMPLES)}
        if exc.code == "unsupported_dimension":
            wanted = [d for d in [*dims, *filters] if d != "currency"]
            details["metrics_with"] = {
                d: sorted(n for n, m in cat.items() if d in m.dimensions and m.spec is not None)
                for d in wanted
            }
        raise QuestionError(exc.code, exc.message, details) from None
    return dataclasses.replace(q, notes=tuple(notes)), read
