"""``GET /v1/search``: an in-memory index of entities (per tenant), metrics and catalog fields, and the
query service over it (``EntitySearch``).

Metrics and catalog fields come from the contracts (the same for every tenant). Entities are indexed
per tenant on first search: the tenant's read-model rows seed it (``seed``), then every published
applied event updates it (``apply``, from the AppliedEventHub in position order), so a search sees an
entity as soon as its event is applied. A tenant nobody searched costs nothing.

Each entity doc remembers the position it reflects (its row ``version`` or the last event applied):
an event at or below it is already in the doc, a row older than it does not overwrite it.
"""

from __future__ import annotations

import asyncio
import math
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from domain.events import RecordedEvent
from projections.entities import ENTITY_TABLES
from readmodels.contract_registry import REGISTRY
from readmodels.ports import ReadModelStore, ServingProgress

TOKEN_RE = re.compile(r"[a-z0-9]+(?:[._@+-][a-z0-9]+)*")
PART_RE = re.compile(r"[a-z0-9]+")
STOP_WORDS = frozenset(
    ["a", "an", "and", "as", "at", "by", "for", "from", "in", "is", "of", "on", "or", "the", "to", "with"]
)
ID_PREFIXES = frozenset(("ord", "usr", "prod", "ses", "pay"))
ENTITY_WORDS = {
    "order": ("order", "purchase"),
    "user": ("user", "customer"),
    "product": ("product", "item"),
    "session": ("session", "visit"),
}
ORDER_STATUS = {
    "OrderPlaced": "pending",
    "OrderConfirmed": "confirmed",
    "OrderShipped": "shipped",
    "OrderDelivered": "delivered",
    "OrderCancelled": "cancelled",
}
MIN_PREFIX = 3


def normalize(token: str) -> str:
    if len(token) > 4 and token.endswith("ies"):
        return token[:-3] + "y"
    if len(token) > 3 and token.endswith("s") and not token.endswith("ss") and token.isalpha():
        return token[:-1]
    return token


def tokenize(text: str) -> list[str]:
    """Whole words/ids (``ord-20240501-0001``, ``ada@example.com``) and their alphanumeric parts."""
    out: list[str] = []
    for whole in TOKEN_RE.findall(text.lower()):
        parts = PART_RE.findall(whole)
        if len(parts) > 1:
            out.append(whole)
        for p in parts:
            if p not in STOP_WORDS and p not in ID_PREFIXES:
                out.append(normalize(p))
    return out


@dataclass
class Doc:
    kind: str  # entity | metric | catalog_field
    id: str
    entity_type: str | None
    endpoint: str
    fields: dict[str, Any]
    version: int = 0
    boost: float = 1.0
    tokens: frozenset[str] = frozenset()

    def snippet(self) -> str:
        f = self.fields
        if self.kind != "entity":
            return str(f.get("snippet", ""))
        if self.entity_type == "order":
            text = f"Order {self.id} status {f.get('status', '?')}"
            if f.get("user_id"):
                text += f", user {f['user_id']}"
            if f.get("currency"):
                text += f", {f['currency']}"
            if f.get("channel"):
                text += f" via {f['channel']}"
            return text
        if self.entity_type == "product":
            return f"Product {f.get('name', '?')} ({self.id}), category {f.get('category', '?')}"
        if self.entity_type == "user":
            text = f"User {self.id} {f.get('name', '')}".rstrip()
            if f.get("email"):
                text += f" <{f['email']}>"
            if f.get("region"):
                text += f", region {f['region']}"
            return text
        text = f"Session {self.id}"
        if f.get("user_id"):
            text += f" of user {f['user_id']}"
        if f.get("funnel_stage"):
            text += f", stage {f['funnel_stage']}"
        return text

    def text(self) -> str:
        values = [self.id, *(str(v) for v in self.fields.values() if v not in (None, ""))]
        if self.kind == "entity" and self.entity_type:
            values.extend(ENTITY_WORDS.get(self.entity_type, (self.entity_type,)))
        return " ".join(values)


@dataclass
class _Corpus:
    """Docs and an inverted index (token -> doc keys)."""

    docs: dict[tuple[str, str], Doc] = field(default_factory=dict)
    postings: dict[str, set[tuple[str, str]]] = field(default_factory=dict)

    def put(self, doc: Doc) -> None:
        key = (doc.entity_type or doc.kind, doc.id)
        old = self.docs.get(key)
        tokens = frozenset(tokenize(doc.text()))
        if old is not None:
            for t in old.tokens - tokens:
                keys = self.postings.get(t)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del self.postings[t]
        doc.tokens = tokens
        self.docs[key] = doc
        for t in tokens:
            self.postings.setdefault(t, set()).add(key)


def _global_corpus() -> _Corpus:
    corpus = _Corpus()
    for name, c in REGISTRY.currents("metric").items():
        d = c.doc
        snippet = f"Metric {name}: {d['description']} (unit {d['unit']}, windows {', '.join(d['windows'])})"
        fields = {
            "words": name.replace("_", " "),
            "description": d["description"],
            "unit": d["unit"],
            "dimensions": " ".join(d["dimensions"]),
            "moved_by": " ".join(d["moved_by"]),
            "snippet": snippet,
        }
        corpus.put(Doc("metric", name, None, f"/v1/metrics/{name}", fields, boost=1.15))
    for entity, c in REGISTRY.currents("entity").items():
        for fname, spec in c.doc["fields"].items():
            fid = f"{entity}.{fname}"
            fields = {
                "entity": entity,
                "words": fname.replace("_", " "),
                "description": spec.get("description", ""),
                "snippet": f"{fid}: {spec.get('description', '')}",
            }
            corpus.put(Doc("catalog_field", fid, entity, "/v1/catalog", fields, boost=0.6))
    return corpus


class SearchIndex:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._global = _global_corpus()
        self._tenants: dict[str, _Corpus] = {}
        self._seeded: set[str] = set()

    # ---- upkeep ---------------------------------------------------------------------------
    def tracking(self, tenant: str) -> bool:
        return tenant in self._seeded

    def start(self, tenant: str) -> bool:
        """Begin following ``tenant``'s events; True when the caller must seed it now."""
        with self._lock:
            if tenant in self._tenants:
                return False
            self._tenants[tenant] = _Corpus()
            return True

    def seeded(self, tenant: str) -> None:
        with self._lock:
            self._seeded.add(tenant)

    def forget(self, tenant: str) -> None:
        with self._lock:
            self._tenants.pop(tenant, None)
            self._seeded.discard(tenant)

    def seed(self, tenant: str, entity_type: str, rows: Iterable[tuple[str, int, dict[str, Any]]]) -> None:
        """Read-model rows (id, version, fields): newer than the doc -> replace its fields; else fill gaps."""
        with self._lock:
            corpus = self._tenants.get(tenant)
            if corpus is None:
                return
            for entity_id, version, fields in rows:
                key = (entity_type, entity_id)
                doc = corpus.docs.get(key)
                if doc is None:
                    doc = _entity_doc(entity_type, entity_id)
                if version > doc.version:
                    doc.fields.update({k: v for k, v in fields.items() if v not in (None, "")})
                    doc.version = version
                else:
                    for k, v in fields.items():
                        if v not in (None, "") and k not in doc.fields:
                            doc.fields[k] = v
                corpus.put(doc)

    def apply(self, events: Sequence[RecordedEvent], watermark: int = 0) -> None:
        """Published events (position order): update the docs of the tenants being followed."""
        tenants = self._tenants
        if not tenants:
            return
        with self._lock:
            for e in events:
                corpus = tenants.get(e.tenant_id)
                if corpus is not None:
                    _apply_event(corpus, e)

    # ---- queries --------------------------------------------------------------------------
    def search(
        self, tenant: str, query: str, limit: int = 10, entity_types: set[str] | None = None
    ) -> list[dict[str, Any]]:
        terms = list(dict.fromkeys(tokenize(query)))
        if not terms:
            return []
        with self._lock:
            corpora = [self._global]
            corpus = self._tenants.get(tenant)
            if corpus is not None:
                corpora.append(corpus)
            total = sum(len(c.docs) for c in corpora) or 1
            scores: dict[tuple[int, tuple[str, str]], float] = {}
            matched: dict[tuple[int, tuple[str, str]], int] = {}
            for ci, c in enumerate(corpora):
                for term in terms:
                    hits = self._hits(c, term)
                    for key, weight in hits.items():
                        df = len(c.postings.get(term, ())) or 1
                        idf = math.log((1 + total) / (1 + df)) + 1.0
                        k = (ci, key)
                        scores[k] = scores.get(k, 0.0) + weight * idf
                        matched[k] = matched.get(k, 0) + 1
            ranked: list[tuple[float, Doc]] = []
            for (ci, key), score in scores.items():
                doc = corpora[ci].docs[key]
                if entity_types is not None and (doc.kind == "metric" or doc.entity_type not in entity_types):
                    continue
                coverage = matched[(ci, key)] / len(terms)
                ranked.append((score * (0.5 + 0.5 * coverage) * doc.boost, doc))
            ranked.sort(key=lambda r: (-r[0], r[1].kind, r[1].id))
            top = ranked[: max(1, limit)]
            best = top[0][0] if top else 1.0
            return [
                {
                    "type": doc.kind,
                    "id": doc.id,
                    "entity_type": doc.entity_type,
                    "score": round(score / best, 4),
                    "snippet": doc.snippet(),
                    "endpoint": doc.endpoint,
                }
                for score, doc in top
            ]

    @staticmethod
    def _hits(corpus: _Corpus, term: str) -> dict[tuple[str, str], float]:
        """Exact token matches weigh 1; for terms of 3+ characters, words they prefix weigh 0.5."""
        hits = dict.fromkeys(corpus.postings.get(term, ()), 1.0)
        if len(term) >= MIN_PREFIX and term.isalpha():
            for token, keys in corpus.postings.items():
                if token != term and token.startswith(term) and token.isalpha():
                    for key in keys:
                        hits.setdefault(key, 0.5)
        return hits

    def stats(self, tenant: str) -> dict[str, int]:
        corpus = self._tenants.get(tenant)
        return {
            "entities": len(corpus.docs) if corpus else 0,
            "metrics_and_fields": len(self._global.docs),
        }


def _entity_doc(entity_type: str, entity_id: str) -> Doc:
    return Doc("entity", entity_id, entity_type, f"/v1/entity/{entity_type}/{entity_id}", {})


def _apply_event(corpus: _Corpus, e: RecordedEvent) -> None:
    d = e.data
    t = e.event_type
    if e.stream_type == "product":
        doc_type, doc_id = "product", e.stream_id
        changes = {"name": d.get("name"), "category": d.get("category")} if t == "ProductRegistered" else {}
    elif e.stream_type == "user":
        doc_type, doc_id = "user", e.stream_id
        changes = {k: d.get(k) for k in ("name", "email", "region")} if t == "UserRegistered" else {}
    elif e.stream_type == "order":
        doc_type, doc_id = "order", e.stream_id
        changes = {}
        if t == "OrderPlaced":
            changes = {
                "user_id": d.get("user_id"),
                "currency": d.get("currency"),
                "channel": d.get("channel"),
                "products": " ".join(str(ln.get("product_id")) for ln in d.get("lines") or ()),
            }
        if t in ORDER_STATUS:
            changes["status"] = ORDER_STATUS[t]
        elif t == "OrderRefunded":
            changes["status"] = "refunded" if d.get("full") else None
        elif t == "OrderPaymentCaptured":
            changes["payment_id"] = d.get("payment_id")
    elif e.stream_type == "session":
        doc_type, doc_id = "session", e.stream_id
        changes = {"user_id": d.get("user_id")}
    else:
        return
    key = (doc_type, doc_id)
    doc = corpus.docs.get(key)
    if doc is None:
        doc = _entity_doc(doc_type, doc_id)
    elif e.position <= doc.version:
        return  # the seeding row already reflects it
    doc.fields.update({k: v for k, v in changes.items() if v not in (None, "")})
    doc.version = e.position
    corpus.put(doc)


def row_fields(entity_type: str, row: dict[str, Any]) -> tuple[str, int, dict[str, Any]]:
    """A read-model row -> (id, version, indexed fields)."""
    version = int(row.get("version") or 0)
    if entity_type == "product":
        return row["product_id"], version, {"name": row.get("name"), "category": row.get("category")}
    if entity_type == "user":
        fields = {k: row.get(k) for k in ("name", "email", "region")}
        return row["user_id"], version, fields
    if entity_type == "order":
        lines = row.get("lines") or []
        fields = {
            "user_id": row.get("user_id"),
            "currency": row.get("currency"),
            "channel": row.get("channel"),
            "status": row.get("status"),
            "payment_id": row.get("payment_id"),
            "products": " ".join(str(ln.get("product_id")) for ln in lines if isinstance(ln, dict)),
        }
        return row["order_id"], version, fields
    fields = {"user_id": row.get("user_id"), "funnel_stage": row.get("funnel_stage")}
    return row["session_id"], version, fields


class EntitySearch:
    """Search as a tenant sees it: the tenant's entities are indexed on its first search (seeded from
    its read-model rows, once, however many searches arrive together), then kept current by the
    applied events the index hears (``index.apply`` listens to the AppliedEventHub)."""

    def __init__(self, index: SearchIndex, read_models: ReadModelStore, progress: ServingProgress) -> None:
        self.index = index
        self.read_models = read_models
        self.progress = progress
        self._seeding: dict[str, asyncio.Task[None]] = {}

    def _seed(self, tenant: str) -> None:
        self.progress.flush_serving()
        for entity_type, table in ENTITY_TABLES.items():
            rows = self.read_models.select_rows(table, tenant)
            self.index.seed(tenant, entity_type, (row_fields(entity_type, r) for r in rows))

    async def ensure_indexed(self, tenant: str) -> None:
        index = self.index
        if index.tracking(tenant):
            return
        task = self._seeding.get(tenant)
        if task is None:
            if not index.start(tenant):  # started by a seeding that failed: start over
                index.forget(tenant)
                index.start(tenant)

            async def run() -> None:
                try:
                    await asyncio.to_thread(self._seed, tenant)
                    index.seeded(tenant)
                except BaseException:
                    index.forget(tenant)
                    raise
                finally:
                    self._seeding.pop(tenant, None)

            task = asyncio.ensure_future(run())
            self._seeding[tenant] = task
        await asyncio.shield(task)

    async def search(
        self, tenant: str, query: str, limit: int, entity_types: set[str] | None, fresh: bool = True
    ) -> dict[str, Any]:
        """``{query, results, meta}``: the best ``limit`` hits (entities of ``entity_types`` only, when
        given); ``meta.stale`` when the caller accepted a read model behind its ``min_position``."""
        await self.ensure_indexed(tenant)
        results = self.index.search(tenant, query, limit, entity_types)
        meta: dict[str, Any] = {
            "as_of_position": self.progress.watermark,
            "freshness_seconds": self.progress.freshness_seconds(),
        }
        if not fresh:
            meta["stale"] = True
        meta["indexed"] = self.index.stats(tenant)
        return {"query": query, "results": results, "meta": meta}
