"""The command bus: validate, load aggregates (cached), decide, append atomically.

The commands themselves (parse and decide) are in commands/specs/; this module runs one: its unit of
work loads each aggregate once per attempt, and ``execute`` retries, replays idempotent repeats and
keeps the aggregate cache of the context (made by the composition root, services/bootstrap.py).

``execute`` raises InvalidCommand (422), NotFound (404), DomainError (409) or VersionConflict (409);
nothing is appended on any error. Conflicts on streams the caller did not pin with If-Match are
retried against the fresh state.

Optimistic mode (``CommandContext.optimistic``) saves the load round trip: streams the cache holds are
taken at their cached version, and a command's own new stream (an uncached primary stream of a command
that may create it) at version 0, without asking the store. That is safe because the append checks the
expected version of every stream it writes and writes nothing on a mismatch; the attempt is then
redone with loads. Anything else decided from unchecked state is never reported: an error, an If-Match
mismatch, or a stream that was read but not written (its version is not checked by the append) sends
the command down the loading path.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from commands.cache import AggregateCache
from commands.idempotency import IdempotencyClaim, record_for, stored_answer
from commands.ports import (
    EventStorePort,
    IdempotencyRecord,
    IdempotencyReplay,
    StreamKey,
    StreamWrite,
    VersionConflict,
)
from commands.specs import SPECS
from commands.validation import Fields, InvalidCommand
from domain import ids
from domain.base import Aggregate
from domain.errors import DomainError, NotFound
from domain.events import ORDER, PAYMENT, PRODUCT, SESSION, USER, NewEvent

MAX_ATTEMPTS = 5

A = TypeVar("A", bound=Aggregate)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class CommandContext:
    tenant_id: str
    store: EventStorePort
    metadata: dict[str, Any]
    # folded aggregates of this process (one per store: built by the composition root; tests make one)
    cache: AggregateCache
    if_match: int | None = None
    now: datetime = field(default_factory=_utcnow)
    # Idempotency-Key of the request: its record commits with the events; a repeat is replayed
    idempotency: IdempotencyClaim | None = None
    # skip loads the append's version check makes redundant (see the module docstring)
    optimistic: bool = False
    # a UUID: the events get ids derived from it (uuid5 by index) instead of random ones, so a
    # re-delivered change (CDC) appends the same ids and the store's unique event id refuses a copy
    event_id_seed: str | None = None


@dataclass(frozen=True)
class CommandResult:
    entity_type: str
    entity_id: str
    stream_version: int
    position: int
    created: bool
    replayed: bool = False


class UnitOfWork:
    """Aggregates loaded for one attempt, each with the stream version it was folded to."""

    def __init__(
        self, ctx: CommandContext, cache: AggregateCache, optimistic: bool = False,
        fresh: StreamKey | None = None,
    ) -> None:
        self.ctx = ctx
        self.cache = cache
        self.loaded: dict[StreamKey, tuple[int, Aggregate]] = {}
        # optimistic: take cached streams (and ``fresh``, a stream the command may create, when not
        # cached) without reading the store; such streams are listed in ``unchecked``
        self.optimistic = optimistic
        self.fresh = fresh
        self.unchecked: set[StreamKey] = set()

    def load(self, cls: type[A], stream_id: str) -> A:
        key = (cls.stream_type, stream_id)
        if key in self.loaded:
            agg = self.loaded[key][1]
            assert isinstance(agg, cls)
            return agg
        ckey = (self.ctx.tenant_id, cls.stream_type, stream_id)
        cached = self.cache.get(ckey)
        version, base = (cached[0], cached[1]) if cached and isinstance(cached[1], cls) else (0, cls())
        if self.optimistic and (cached is not None and version > 0 or key == self.fresh):
            self.unchecked.add(key)
            self.loaded[key] = (version, base)
            assert isinstance(base, cls)
            return base
        tenant = self.ctx.tenant_id
        events = self.ctx.store.load_stream(tenant, cls.stream_type, stream_id, after_version=version)
        if events and events[0].stream_version != version + 1:
            # the store no longer matches the cache (e.g. it was reset): fold from scratch
            self.cache.evict(ckey)
            version, base = 0, cls()
            events = self.ctx.store.load_stream(tenant, cls.stream_type, stream_id)
        agg = base
        if events:
            agg = base.clone()
            for event in events:
                agg.apply(event)
            version = events[-1].stream_version
            self.cache.put(ckey, version, agg)
        assert isinstance(agg, cls)
        self.loaded[key] = (version, agg)
        return agg

    def check_read_only(self, writes: list[StreamWrite]) -> bool:
        """Check unchecked streams the append will not version-check (read, not written) against the
        store; False when one has moved on (the decision must be redone from loaded state)."""
        written = {(w.stream_type, w.stream_id) for w in writes}
        for key in [k for k in self.unchecked if k not in written]:
            version = self.loaded[key][0]
            if self.ctx.store.load_stream(self.ctx.tenant_id, key[0], key[1], after_version=version):
                return False
            self.unchecked.discard(key)
        return True

    def version(self, key: StreamKey) -> int:
        return self.loaded[key][0]

    def writes(self, events: list[NewEvent]) -> list[StreamWrite]:
        grouped: dict[StreamKey, list[NewEvent]] = {}
        for event in events:
            grouped.setdefault((event.stream_type, event.stream_id), []).append(event)
        writes = []
        for key, evs in grouped.items():
            if key not in self.loaded:
                raise RuntimeError(f"decided events for unloaded stream {key}")
            writes.append(StreamWrite(key[0], key[1], self.loaded[key][0], evs))
        return writes

    def committed(self, writes: list[StreamWrite], versions: dict[StreamKey, int]) -> None:
        """After a successful append, cache loaded state plus the appended events."""
        for w in writes:
            key = (w.stream_type, w.stream_id)
            agg = self.loaded[key][1].clone()
            for event in w.events:
                agg.apply(event)
            self.cache.put((self.ctx.tenant_id, *key), versions[key], agg)


class _Unchecked(Exception):
    """The decision read a stream whose version the append will not check."""


COMMAND_NAMES: frozenset[str] = frozenset(SPECS)

# entity type of each command's primary stream
COMMAND_ENTITY_TYPES: dict[str, str] = {name: spec.aggregate.stream_type for name, spec in SPECS.items()}
assert set(COMMAND_ENTITY_TYPES.values()) <= {ORDER, PAYMENT, PRODUCT, USER, SESSION}


def execute(ctx: CommandContext, name: str, entity_id: str | None, payload: dict[str, Any]) -> CommandResult:
    spec = SPECS.get(name)
    if spec is None:
        raise ValueError(f"unknown command {name!r}")
    if ctx.idempotency is not None:  # a repeated key replays before anything else (no new ids)
        existing = ctx.store.get_idempotency(ctx.tenant_id, ctx.idempotency.key)
        if existing is not None:
            return _replayed(ctx, ctx.idempotency, existing)
    cache = ctx.cache
    prepared = spec.prepare(entity_id, Fields(payload), lambda kind: _new_id(ctx, kind))
    stream_type = spec.aggregate.stream_type
    primary = (stream_type, prepared.entity_id)
    metadata = dict(ctx.metadata)
    metadata.setdefault("command_id", str(uuid.uuid4()))

    optimistic = ctx.optimistic
    fresh = primary if spec.creates or stream_type == SESSION else None
    attempt = 0
    while True:
        attempt += 1
        uow = UnitOfWork(ctx, cache, optimistic, fresh)
        try:
            uow.load(spec.aggregate, prepared.entity_id)
            current = uow.version(primary)
            if ctx.if_match is not None and ctx.if_match != current:
                raise VersionConflict(stream_type, prepared.entity_id, ctx.if_match, current)
            events = spec.decide(uow, prepared.entity_id, prepared.args)
            if ctx.event_id_seed is not None:
                events = _seeded(events, ctx.event_id_seed)
            writes = uow.writes(events)
            if uow.unchecked and not uow.check_read_only(writes):
                raise _Unchecked
        except (DomainError, NotFound, InvalidCommand, VersionConflict, _Unchecked):
            if not uow.unchecked:
                raise
            optimistic = False  # decided from unchecked state: redo with loads
            attempt -= 1
            continue
        created = spec.creates or current == 0
        record = None
        if ctx.idempotency is not None:
            appended = sum(len(w.events) for w in writes if (w.stream_type, w.stream_id) == primary)
            record = record_for(ctx.idempotency, primary, current + appended, created, writes)
        try:
            result = ctx.store.append(ctx.tenant_id, writes, metadata, record)
        except IdempotencyReplay as replay:  # a concurrent request with the same key committed first
            assert ctx.idempotency is not None
            return _replayed(ctx, ctx.idempotency, replay.record)
        except VersionConflict as exc:
            key = (exc.stream_type, exc.stream_id)
            if key in uow.loaded and exc.actual < uow.version(key):
                cache.evict((ctx.tenant_id, *key))  # cache ahead of the store: it was reset
            if uow.unchecked:
                optimistic = False
                attempt -= 1
                continue
            if ctx.if_match is not None and key == primary:
                raise VersionConflict(stream_type, prepared.entity_id, ctx.if_match, exc.actual) from exc
            if attempt >= MAX_ATTEMPTS:
                raise
            continue
        versions = {
            (w.stream_type, w.stream_id): result.stream_versions.get(
                (w.stream_type, w.stream_id), w.expected_version + len(w.events)
            )
            for w in writes
        }
        uow.committed(writes, versions)
        return CommandResult(
            entity_type=stream_type,
            entity_id=prepared.entity_id,
            stream_version=versions[primary],
            position=result.last_position,
            created=created,
        )


def _new_id(ctx: CommandContext, kind: str) -> str:
    return ids.generate(kind, ctx.store.next_id(kind), ctx.now)


def _seeded(events: list[NewEvent], seed: str) -> list[NewEvent]:
    base = uuid.UUID(seed)
    return [dataclasses.replace(e, event_id=str(uuid.uuid5(base, str(i)))) for i, e in enumerate(events)]


def _replayed(ctx: CommandContext, claim: IdempotencyClaim, record: IdempotencyRecord) -> CommandResult:
    answer = stored_answer(ctx.store, ctx.tenant_id, claim, record)
    return CommandResult(
        entity_type=answer.entity_type,
        entity_id=answer.entity_id,
        stream_version=answer.stream_version,
        position=answer.position,
        created=answer.created,
        replayed=True,
    )
