"""Legacy change records -> domain events, through the ordinary command handlers.

Both deployments feed this: the embedded Debezium engine's batches and the distributed Kafka consumer's.
Per record: normalize (connectors/legacy/canonical.py), skip it if a newer change of the same row was
already applied, then reconcile (connectors/legacy/translators.py) step by step. Every step is a
command executed with an idempotency key and event ids derived from the record id, so a re-delivered
record appends nothing twice.

Failures never stop the source and never vanish: they land in the dead-letter store (pipeline ``cdc``)
with the canonical record and the reason, by stage: ``cdc_normalize`` (not a change record),
``cdc_tenant`` (tenant column value not mapped), ``cdc_translate`` (no mapping), ``cdc_invariant``
(a domain rule refused it), ``cdc_reference`` (it names an order or product not seen yet). A record of
an unknown table raises UnknownSource instead: the batch is not acknowledged and the source shows the
error until its declaration is fixed. ``cdc_reference`` letters are retried automatically after later
batches (the missing entity usually arrives a moment later); any cdc letter can be replayed by hand
after a mapping fix (commands/dead_letter_replay.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from commands.bus import CommandContext, execute
from commands.cache import AggregateCache
from commands.idempotency import IdempotencyClaim, IdempotencyKeyReused
from commands.ports import VersionConflict
from commands.validation import InvalidCommand
from connectors.dead_letters import FAILED, REPLAY_PENDING, REPLAYED, DeadLetter, DeadLetterStore
from connectors.event_store import PostgresEventStore
from connectors.legacy.canonical import (
    DELETE,
    NAMESPACE,
    SCHEMA_CHANGE,
    SNAPSHOT,
    TRUNCATE,
    CanonicalRecord,
    NormalizeError,
    normalize,
)
from connectors.legacy.declaration import SourceSpec
from connectors.legacy.registry import BatchTally, SourceRegistry
from connectors.legacy.translators import LEGACY_SYNC, Ids, MissingReference, Step, Untranslatable, next_step
from domain import errors
from domain.base import Aggregate
from domain.errors import DomainError, NotFound
from domain.order import Order
from domain.payment import Payment
from domain.product import Product
from domain.user import User

log = logging.getLogger("agentflow.legacy")

PIPELINE = "cdc"
NORMALIZE, TENANT, TRANSLATE, INVARIANT, REFERENCE = (
    "cdc_normalize", "cdc_tenant", "cdc_translate", "cdc_invariant", "cdc_reference",
)
MAX_STEPS = 8  # the longest reconciliation: register user, place, confirm, ship, deliver
# refused for want of something another row brings: an order, product or user not seen yet, or a
# shipped order whose payment row comes later (a snapshot reads orders before payments)
MISSING_CODES = frozenset({errors.UNKNOWN_ORDER, errors.UNKNOWN_PRODUCT, errors.UNKNOWN_USER,
                           errors.ORDER_NOT_PAID})
PARKED_RETRY_LIMIT = 100

Message = tuple[dict[str, Any] | None, dict[str, Any] | None]  # (key, value) of a Debezium change


class StoreState:
    """Aggregates folded from the event store (the command path re-checks them at append)."""

    def __init__(self, store: PostgresEventStore, tenant: str) -> None:
        self.store = store
        self.tenant = tenant

    def _fold(self, cls: type[Any], stream_id: str) -> Any:
        agg: Aggregate = cls()
        for event in self.store.load_stream(self.tenant, cls.stream_type, stream_id):
            agg.apply(event)
        return agg

    def order(self, order_id: str) -> Order:
        return self._fold(Order, order_id)  # type: ignore[no-any-return]

    def payment(self, payment_id: str) -> Payment:
        return self._fold(Payment, payment_id)  # type: ignore[no-any-return]

    def product(self, product_id: str) -> Product:
        return self._fold(Product, product_id)  # type: ignore[no-any-return]

    def user(self, user_id: str) -> User:
        return self._fold(User, user_id)  # type: ignore[no-any-return]


def order_key(record: CanonicalRecord) -> str:
    """Sorts the changes of one source in commit order (snapshot rows first)."""
    p = record.position
    if record.operation == SNAPSHOT:
        return "0"
    if p.get("lsn") is not None:
        return f"1{int(p['lsn']):020d}"
    return f"1{p.get('file') or ''}:{int(p.get('pos') or 0):015d}:{int(p.get('row') or 0):06d}"


def _stream_of(record: CanonicalRecord, ids: Ids) -> tuple[str, str] | None:
    """The stream a record's row is about (where its newest applied change is recorded)."""
    pk = record.entity_id
    if record.entity_type == "orders":
        return "order", ids.order(pk)
    if record.entity_type == "payments":
        return "payment", ids.payment(pk)
    if record.entity_type == "products":
        return "product", ids.product(pk)
    if record.entity_type == "inventory" and record.row is not None and "product_id" in record.row:
        return "product", ids.product(record.row["product_id"])
    return None


# command -> the payload field naming the entity it creates (records may wait for it)
CREATES = {"order.place": "order_id", "product.register": "product_id", "user.register": "user_id"}


@dataclass
class Outcome:
    applied: bool = False
    events: int = 0
    last_event_position: int | None = None


@dataclass
class _Batch:
    spec: SourceSpec
    tally: BatchTally = field(default_factory=lambda: BatchTally())
    # records refused for a missing entity, by the id they wait for ('' = not known)
    waiting: dict[str, list[CanonicalRecord]] = field(default_factory=dict)


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


class LegacyIngestor:
    def __init__(
        self,
        store: PostgresEventStore,
        letters: DeadLetterStore,
        aggregates: AggregateCache,
        registry: SourceRegistry | None = None,
    ) -> None:
        """``aggregates``: the process's aggregate cache (the one HTTP commands on ``store`` use)."""
        self.store = store
        self.aggregates = aggregates
        self.letters = letters
        self.registry = registry
        # (source, tenant, product id) -> the newest inventory row seen: a shipment applied from an
        # order row no newer than it is already counted in it, so the product is reconciled to it again
        # (one entry per legacy product)
        self._stock_rows: dict[tuple[str, str, str], CanonicalRecord] = {}

    # -- batches --------------------------------------------------------------------------------
    def ingest(self, spec: SourceSpec, messages: Sequence[Message]) -> BatchTally:
        """Apply a batch in order; returns (and records in the registry) what it did. Raises
        UnknownSource (nothing acknowledged) for a change the source does not declare."""
        batch = _Batch(spec)
        tally = batch.tally
        records: list[CanonicalRecord] = []
        for key, value in messages:
            try:
                record = normalize(spec, value, key)
            except NormalizeError as exc:
                tally.records += 1
                raw = {"key": key, "value": value}
                tally.dead_letters += self._dead_letter(spec, None, NORMALIZE, str(exc), raw)
                continue
            if record is not None:
                records.append(record)
        for record in records:
            tally.records += 1
            self._one(batch, record, defer=True)
        # what still waits: retried once more, then parked (a later batch may bring what it needs)
        leftovers = [r for waiting in batch.waiting.values() for r in waiting]
        batch.waiting.clear()
        for record in sorted(leftovers, key=records.index):
            later = records[records.index(record) + 1:]
            if any(r.entity_type == record.entity_type and r.entity_id == record.entity_id for r in later):
                tally.unchanged += 1  # superseded by a later change of the same row in this batch
                continue
            self._one(batch, record, defer=False)
        if records:
            tally.snapshot = records[-1].operation == SNAPSHOT
            tally.last_position = records[-1].position_text()
            tally.last_commit_ms = records[-1].commit_ts_ms
        if tally.applied:
            self.retry_parked(spec, tally)
        if self.registry is not None and (tally.records or records):
            self.registry.record_batch(spec.name, tally)
        return tally

    def _one(self, batch: _Batch, record: CanonicalRecord, defer: bool) -> None:
        spec, tally = batch.spec, batch.tally
        if record.operation == SCHEMA_CHANGE:
            tally.schema_changes += 1
            tally.unchanged += 1
            tally.last_schema_change = record.ddl
            log.info("legacy source %s: schema change: %s", spec.name, record.ddl)
            return
        if record.operation == TRUNCATE:
            tally.unchanged += 1  # IGNORED: a truncate is not a business event (see docs/legacy-cdc.md)
            return
        if record.tenant is None:
            tally.dead_letters += self._dead_letter(
                spec, record, TENANT,
                f"tenant column {spec.tenant_column!r} value is not in the source's tenants map",
            )
            return
        try:
            outcome = self.apply(spec, record, on_created=lambda entity_id: self._wake(batch, entity_id))
        except MissingReference as exc:
            if defer:
                batch.waiting.setdefault(exc.waits_for or "", []).append(record)
                return
            tally.dead_letters += self._dead_letter(spec, record, REFERENCE, str(exc),
                                                    waits_for=exc.waits_for)
            return
        except Untranslatable as exc:
            tally.dead_letters += self._dead_letter(spec, record, TRANSLATE, str(exc))
            return
        except (DomainError, InvalidCommand, VersionConflict) as exc:
            tally.dead_letters += self._dead_letter(spec, record, INVARIANT, f"{_code(exc)}: {exc}")
            return
        tally.add(outcome)

    def _wake(self, batch: _Batch, entity_id: str) -> None:
        """An order, product or user was just created: apply what waited for it, in this batch and parked
        from earlier ones, before the creating record goes on (a snapshot's payments must land before
        its orders ship or cancel)."""
        for record in batch.waiting.pop(entity_id, []):
            self._one(batch, record, defer=True)
        for letter in self.letters.waiting_for(PIPELINE, batch.spec.name, entity_id):
            try:
                outcome = self.replay_letter(batch.spec, letter,
                                             on_created=lambda eid: self._wake(batch, eid))
            except (MissingReference, Untranslatable, DomainError, InvalidCommand, VersionConflict) as exc:
                log.info("legacy source %s: letter %s still waits: %s", batch.spec.name, letter.id, exc)
                continue
            batch.tally.events += outcome.events

    # -- one record -----------------------------------------------------------------------------
    def apply(
        self, spec: SourceSpec, record: CanonicalRecord, on_created: Callable[[str], None] | None = None,
        after: str = "",
    ) -> Outcome:
        """Reconcile the domain with one record. Raises MissingReference, Untranslatable, DomainError,
        InvalidCommand or VersionConflict (nothing of the failing step appended). ``on_created`` is
        called with the id of every order, product or user a step created. ``after`` names the record
        whose shipment makes an inventory row apply again (its steps get their own idempotency keys,
        and stock going up is a ``legacy_sync`` adjustment, not a receipt)."""
        assert record.tenant is not None
        outcome = Outcome()
        if self._superseded(spec, record):
            return outcome
        self._remember_stock_row(spec, record)
        state = StoreState(self.store, record.tenant)
        metadata = {
            "command": "cdc.apply", "actor": f"cdc:{spec.name}", "correlation_id": record.record_id,
            "cdc": {"source": spec.name, "connector": record.source.connector,
                    "table": f"{record.source.schema}.{record.source.table}", "operation": record.operation,
                    "record_id": record.record_id, "order_key": order_key(record),
                    "position": record.position, "commit_ts_ms": record.commit_ts_ms},
        }
        for _ in range(MAX_STEPS):
            step = next_step(record, spec, state)
            if step is None:
                return outcome
            if after and step.command == "product.restock":
                step = Step("product.adjust", step.entity_id,
                            {"delta": step.payload["quantity"], "reason": LEGACY_SYNC})
            tag = f"{record.record_id}|{after}" if after else record.record_id
            seed = str(uuid.uuid5(NAMESPACE, f"{tag}|{step.key}"))
            ctx = CommandContext(
                tenant_id=record.tenant, store=self.store, metadata={**metadata, "command": step.command},
                cache=self.aggregates,
                idempotency=IdempotencyClaim(f"cdc:{tag}:{step.key}", _digest(step.payload)),
                event_id_seed=seed,
            )
            try:
                result = execute(ctx, step.command, step.entity_id, step.payload)
            except IdempotencyKeyReused:
                return outcome  # this record already ran this step with other input: nothing to add
            except NotFound as exc:
                raise MissingReference(str(exc), exc.entity_id) from exc
            except DomainError as exc:
                if exc.code in MISSING_CODES:
                    raise MissingReference(exc.message) from exc
                raise
            if result.replayed:
                continue  # applied before (re-delivery); the state reload below sees it
            outcome.applied = True
            outcome.events += 1
            outcome.last_event_position = result.position
            created = step.payload.get(CREATES.get(step.command, ""))
            if created and on_created is not None:
                on_created(str(created))
            if step.command == "order.ship" and step.entity_id is not None:
                outcome.events += self._resync_stock(spec, record, state.order(step.entity_id))
        raise Untranslatable(
            f"{record.entity_type} {record.entity_id}: still differs after {MAX_STEPS} steps"
        )

    def _remember_stock_row(self, spec: SourceSpec, record: CanonicalRecord) -> None:
        stream = _stream_of(record, Ids(spec.id_prefix))
        if record.entity_type != "inventory" or record.operation == DELETE or stream is None:
            return
        key = (spec.name, str(record.tenant), stream[1])
        known = self._stock_rows.get(key)
        if known is None or order_key(known) <= order_key(record):
            self._stock_rows[key] = record

    def _resync_stock(self, spec: SourceSpec, shipped: CanonicalRecord, order: Order) -> int:
        """After ``shipped``'s order shipped: reconcile each of its products with an inventory row at
        least as new as the order row (a snapshot counts stock after every shipment it shows)."""
        events = 0
        for line in order.lines:
            row = self._stock_rows.get((spec.name, str(shipped.tenant), line.product_id))
            if row is None or order_key(row) < order_key(shipped):
                continue
            try:
                events += self.apply(spec, row, after=shipped.record_id).events
            except (MissingReference, Untranslatable, DomainError, InvalidCommand, VersionConflict) as exc:
                log.warning("legacy source %s: stock of %s not reconciled after %s shipped: %s",
                            spec.name, line.product_id, order.order_id, exc)
        return events

    def _superseded(self, spec: SourceSpec, record: CanonicalRecord) -> bool:
        """A newer change of the same legacy row was applied already (a re-delivery or a retried letter
        arriving late): reconciling to this older image would move the entity backwards."""
        stream = _stream_of(record, Ids(spec.id_prefix))
        if stream is None or record.tenant is None:
            return False
        mine = order_key(record)
        table = f"{record.source.schema}.{record.source.table}"
        for event in self.store.load_stream(record.tenant, stream[0], stream[1]):
            cdc = (event.metadata or {}).get("cdc") or {}
            same_row_source = cdc.get("source") == spec.name and cdc.get("table") == table
            if same_row_source and str(cdc.get("order_key", "")) > mine:
                return True
        return False

    # -- dead letters ---------------------------------------------------------------------------
    def _dead_letter(
        self, spec: SourceSpec, record: CanonicalRecord | None, stage: str, reason: str, raw: Any = None,
        waits_for: str | None = None,
    ) -> int:
        canonical = record.to_dict() if record is not None else None
        body = {"source": spec.name, "canonical": canonical, "raw": raw, "waits_for": waits_for}
        letter = DeadLetter(
            pipeline=PIPELINE, stage=stage, reason=reason,
            event_id=record.record_id if record is not None else None,
            tenant_id=record.tenant if record is not None else spec.tenant,
            event_type=f"cdc.{record.entity_type}.{record.operation}" if record is not None else None,
            record=body,
        )
        log.warning("legacy source %s: dead letter (%s): %s", spec.name, stage, reason)
        return self.letters.add([letter])

    def retry_parked(self, spec: SourceSpec, tally: BatchTally | None = None) -> int:
        """Retry this source's ``cdc_reference`` letters (oldest first); returns how many now applied."""
        done = 0
        for letter in self.letters.parked(PIPELINE, REFERENCE, spec.name, PARKED_RETRY_LIMIT):
            try:
                outcome = self.replay_letter(spec, letter)
            except MissingReference:
                continue
            except (Untranslatable, DomainError, InvalidCommand, VersionConflict) as exc:
                log.warning("legacy source %s: parked letter %s still fails: %s", spec.name, letter.id, exc)
                continue
            done += 1
            if tally is not None and outcome.applied:
                tally.events += outcome.events
        return done

    def replay_letter(
        self, spec: SourceSpec, letter: DeadLetter, corrected: dict[str, Any] | None = None,
        on_created: Callable[[str], None] | None = None,
    ) -> Outcome:
        """Re-run a cdc dead letter's canonical record (``corrected``: a new ``after`` image) under the
        source's current mapping; failed -> replay_pending -> replayed, back to failed on error."""
        assert letter.id is not None
        raw = (letter.record or {}).get("canonical")
        if raw is None:
            raise Untranslatable("the dead letter holds no canonical record (it never normalized); "
                                 "dismiss it")
        record = CanonicalRecord.from_dict(raw)
        if corrected is not None:
            record = CanonicalRecord.from_dict({**raw, "after": corrected})
        if record.tenant is None:
            tenant = spec.resolve_tenant(record.row)
            record = CanonicalRecord.from_dict({**record.to_dict(), "tenant": tenant})
            if record.tenant is None:
                raise Untranslatable("the row's tenant is still not mapped")
        self.letters.transition(letter.id, REPLAY_PENDING, letter.tenant_id, corrected_data=corrected)
        try:
            outcome = self.apply(spec, record, on_created)
        except Exception as exc:
            self.letters.transition(letter.id, FAILED, letter.tenant_id, note=f"replay failed: {exc}")
            raise
        self.letters.transition(letter.id, REPLAYED, letter.tenant_id,
                                replay_position=outcome.last_event_position)
        return outcome


def _code(exc: Exception) -> str:
    return str(getattr(exc, "code", type(exc).__name__))
