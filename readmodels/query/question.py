"""Plain-language questions mapped deterministically onto the catalog — never a guess.

``parse_question("revenue by channel last 24 hours")`` finds, longest phrase first, the metric names
and their synonyms, ``by <dimension>``, windows (``last 24 hours``, ``today``, ``past week``),
grains (``hourly``, ``per 5 minutes``), and filters (``in EUR``, ``channel web``, ``for PROD-001``).
Every word must be accounted for (a phrase of the catalog or a filler word); anything else, or no
metric at all, raises QuestionError with suggestions. The result is a semantic query body, validated
like one (``semantic.validate``).
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from domain.money import CURRENCY_EXPONENTS
from readmodels.query.semantic import SemanticError, SemanticQuery, catalog, validate

MAX_QUESTION_CHARS = 500

METRIC_SYNONYMS: dict[str, tuple[str, ...]] = {
    "revenue": ("revenue", "sales", "gross sales", "turnover", "income", "takings", "money made"),
    "net_revenue": ("net revenue", "net sales", "revenue after refunds", "net income"),
    "order_count": ("orders", "order count", "number of orders", "order volume", "orders placed"),
    "avg_order_value": ("average order value", "avg order value", "aov", "average basket", "basket size"),
    "conversion_rate": ("conversion rate", "conversion", "conversions", "session conversion"),
    "active_sessions": ("active sessions", "live sessions", "visitors now", "active visitors"),
    "error_rate": ("error rate", "errors", "command error rate", "rejected commands"),
    "payment_failure_rate": ("payment failure rate", "payment failures", "failed payments", "declines"),
    "refund_rate": ("refund rate", "refunds", "refunded orders"),
    "units_sold": ("units sold", "units", "items sold", "quantity sold"),
    "stock_on_hand": ("stock on hand", "stock", "inventory", "stock level", "stock levels"),
    "cart_abandonment_rate": ("cart abandonment rate", "cart abandonment", "abandoned carts", "abandonment"),
    "fulfilment_time_p95": (
        "fulfilment time p95",
        "fulfilment time",
        "fulfillment time",
        "time to ship",
        "shipping time",
        "p95 fulfilment",
    ),
    "gross_merchandise_value": ("gross merchandise value", "gmv", "merchandise value"),
}
DIMENSION_SYNONYMS: dict[str, tuple[str, ...]] = {
    "channel": ("channel", "channels", "sales channel"),
    "currency": ("currency", "currencies"),
    "category": ("category", "categories", "product category"),
    "product": ("product", "products", "sku", "item"),
    "method": ("payment method", "method", "methods"),
}
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
    "1m": ("per minute", "by minute", "every minute", "minutely"),
    "5m": ("per 5 minutes", "every 5 minutes", "in 5 minute buckets", "by 5 minutes"),
    "1h": ("per hour", "by hour", "every hour", "hourly"),
    "1d": ("per day", "by day", "every day", "daily"),
}
FILLER = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "for",
        "in",
        "on",
        "over",
        "during",
        "at",
        "to",
        "by",
        "per",
        "with",
        "and",
        "what",
        "whats",
        "what's",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "show",
        "me",
        "give",
        "get",
        "list",
        "tell",
        "how",
        "much",
        "many",
        "our",
        "my",
        "we",
        "us",
        "total",
        "current",
        "please",
        "was",
        "did",
        "do",
        "does",
        "overall",
        "value",
        "values",
        "number",
        "there",
        "it",
        "its",
        "broken",
        "down",
        "split",
        "across",
        "compare",
        "all",
        "whole",
        "each",
    ]
)
_BY = ("by", "per", "split by", "broken down by", "grouped by", "across", "for each", "for every")
_ID = re.compile(r"\b(prod-[a-z0-9]+)\b")
_DIM_FILTER = re.compile(r"\b(channel|category|method|payment method)\s*(?:=|is|:)?\s*([a-z0-9_-]+)\b")


class QuestionError(SemanticError):
    pass


def _norm(text: str) -> str:
    text = text.lower().replace("’", "'")
    text = re.sub(r"[?!.,;\"()]", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def _take(text: str, phrase: str) -> tuple[int, str]:
    """(position or -1, text with the first whole-word occurrence of ``phrase`` blanked out); the
    text keeps its length, so positions stay comparable."""
    m = re.search(r"(?<![\w-])" + re.escape(phrase) + r"(?![\w-])", text)
    if m is None:
        return -1, text
    return m.start(), text[: m.start()] + "|" * len(m.group(0)) + text[m.end() :]


def _by_longest(table: dict[str, tuple[str, ...]]) -> list[tuple[str, str]]:
    pairs = [(phrase, name) for name, phrases in table.items() for phrase in phrases]
    return sorted(pairs, key=lambda p: (-len(p[0]), p[0]))


def _vocabulary() -> list[str]:
    out = [
        p
        for t in (METRIC_SYNONYMS, DIMENSION_SYNONYMS, WINDOW_PHRASES, GRAIN_PHRASES)
        for ps in t.values()
        for p in ps
    ]
    return sorted(set(out) | set(catalog()))


def _examples() -> list[str]:
    return [
        "revenue by channel last 24 hours",
        "orders per hour today",
        "units sold by category past week in EUR",
        "payment failure rate by method last hour",
        "stock on hand for PROD-001 now",
    ]


def parse_question(question: str, reporting_currency: str = "USD") -> tuple[SemanticQuery, dict[str, Any]]:
    """(semantic query, how each part was read); raises QuestionError when any part does not map."""
    if not isinstance(question, str) or not question.strip():
        raise QuestionError(
            "invalid_question", "question must be a non-empty string", {"examples": _examples()}
        )
    if len(question) > MAX_QUESTION_CHARS:
        raise QuestionError("invalid_question", f"question is longer than {MAX_QUESTION_CHARS} characters")
    text = f" {_norm(question)} "
    read: dict[str, Any] = {}
    filters: dict[str, str] = {}
    # product ids first (their text is not vocabulary), then grains ("per hour" is a grain, "per
    # channel" a dimension), windows, "by <dimension>", and last "<dimension> <value>" filters
    for m in _ID.finditer(text):
        filters["product"] = m.group(1).upper()
    text = _ID.sub(" | ", text)
    grain = None
    for phrase, name in _by_longest(GRAIN_PHRASES):
        at, text = _take(text, phrase)
        if at >= 0:
            if grain not in (None, name):
                raise QuestionError("ambiguous_question", "the question names two time grains")
            grain = name
    window = None
    for phrase, name in _by_longest(WINDOW_PHRASES):
        at, text = _take(text, phrase)
        if at >= 0:
            if window not in (None, name):
                raise QuestionError("ambiguous_question", "the question names two time windows")
            window = name
    dims: list[str] = []
    for by in sorted(_BY, key=len, reverse=True):
        for phrase, name in _by_longest(DIMENSION_SYNONYMS):
            while True:
                at, text = _take(text, f"{by} {phrase}")
                if at < 0:
                    break
                if name not in dims:
                    dims.append(name)
    for phrase, name in _by_longest(DIMENSION_SYNONYMS):  # "by channel and category"
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
        text = text.replace(m.group(0), " | ", 1)
    for m in list(re.finditer(r"\b(?:in|for) ([a-z]{3})\b", text)):
        if m.group(1).upper() in CURRENCY_EXPONENTS:
            filters["currency"] = m.group(1).upper()
            text = text.replace(m.group(0), " | ", 1)
    found_at: dict[str, int] = {}
    metric_pairs = (
        _by_longest(METRIC_SYNONYMS)
        + sorted(((n.replace("_", " "), n) for n in catalog()), key=lambda p: -len(p[0]))
        + [(n, n) for n in catalog()]
    )
    for phrase, name in sorted(metric_pairs, key=lambda p: -len(p[0])):
        while True:
            at, text = _take(text, phrase)
            if at < 0:
                break
            found_at[name] = min(at, found_at.get(name, at))
    metrics = sorted(found_at, key=lambda n: found_at[n])  # in the order the question names them
    leftover = [w for w in re.split(r"[\s|]+", text) if w and w not in FILLER]
    if leftover:
        vocab = _vocabulary()
        raise QuestionError(
            "unmapped_question",
            f"cannot map {' '.join(repr(w) for w in leftover)} onto the catalog",
            {
                "unmapped": leftover,
                "suggestions": {w: difflib.get_close_matches(w, vocab, n=3, cutoff=0.6) for w in leftover},
                "examples": _examples(),
            },
        )
    if not metrics:
        raise QuestionError(
            "unmapped_question",
            "the question names no metric",
            {"metrics": sorted(catalog()), "examples": _examples()},
        )
    cat = catalog()
    if window is None:
        window = "now" if all("now" in cat[m].windows for m in metrics) else "1h"
    if window == "now" and not all("now" in cat[m].windows for m in metrics):
        window = "5m" if all("5m" in cat[m].windows for m in metrics) else window
    body: dict[str, Any] = {"metrics": metrics, "dimensions": dims, "filters": filters, "window": window}
    if grain is not None:
        body["grain"] = grain
    read.update(body)
    try:
        return validate(body), read
    except SemanticError as exc:
        raise QuestionError(exc.code, exc.message, {**(exc.details or {}), "interpretation": read}) from None
