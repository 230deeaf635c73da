"""Distributed deployment, serving side: apply Flink's serving upserts (Kafka) to ClickHouse.

Consumes ``<prefix>.serving`` and ``<prefix>.deadletter`` (connectors/serving_messages.py decodes
them). Per batch: decode, write the rows (one INSERT per table; ReplacingMergeTree versioned by
position makes re-application idempotent), store the dead letters in Postgres (ON CONFLICT DO
NOTHING), advance the contiguous watermark (connectors/contiguous.py fed by the positions-only,
commit-order-safe tail of the event store in connectors/tailer.py), tell ``on_applied`` (cache
invalidation), publish the watermark, then checkpoint it and commit offsets.

Offset rule (a restart rebuilds contiguity from the saved watermark W alone): per partition commit
the offset of the earliest consumed message whose position is > W (or the next offset when there is
none). Every message before it has a position <= W and is applied; every message after it is
redelivered on restart and re-applied idempotently. The checkpoint is saved BEFORE the offsets are
committed: a crash between the two only redelivers more.

One loader per consumer group: the watermark needs every partition (a second member of the group
would take partitions away and stall it).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition
from sqlalchemy.engine import Engine

from connectors import tracing
from connectors.checkpoints import CheckpointStore
from connectors.clickhouse import ClickHouseStore
from connectors.contiguous import Contiguity
from connectors.dead_letters import DeadLetter, DeadLetterStore
from connectors.kafka_lag import ConsumerLag
from connectors.kafka_logging import kafka_client_logging
from connectors.serving_messages import (
    PIPELINE,
    AppliedEvent,
    applied_event,
    dead_letter_of,
    decode_row,
    position_of,
)
from connectors.tailer import PositionTailer, TailCursor
from projections.rows import EVENTS, KEY_COLUMNS, TABLES, Row
from projections.runner import wait_for_watermark

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "serving-loader"

OnApplied = Callable[[Sequence[AppliedEvent], int], None]

# -- status ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoaderStatus:
    """RunnerStatus's fields (the health route and Runtime read them) plus the loader's own."""

    name: str
    running: bool = False
    watermark: int = 0
    applied: int = 0
    last_position: int = 0
    last_recorded_at: datetime | None = None
    last_applied_at: float | None = None
    caught_up: bool = False  # every position the store tail has seen is applied
    last_poll_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    last_batch_size: int = 0
    last_batch_seconds: float = 0.0
    # loader
    caught_up_at: float | None = None  # time.time() of the last turn that ended caught up
    dead_lettered: int = 0
    messages: int = 0
    head_position: int = 0  # last position the store handed out (sequence), at the last tail poll
    lag_positions: int = 0  # head_position - watermark
    tail_watermark: int = 0
    expected: int = 0  # positions in the store not applied yet (seen by the tail)
    ahead: int = 0  # positions applied and not yet confirmed by the tail
    committed_watermark: int = 0
    # per-stage timing of the last batch (ms; max over its messages)
    source_to_flink_ms: float | None = None  # commit (CDC source ts) -> Flink emitted
    flink_to_consumed_ms: float | None = None  # Flink emitted -> polled here (Kafka transit)
    flink_to_loaded_ms: float | None = None  # Flink emitted -> rows in ClickHouse
    loaded_to_visible_ms: float | None = None  # rows in ClickHouse -> watermark published
    source_to_visible_ms: float | None = None
    source_to_visible_p50_ms: float | None = None  # over the last 1000 messages
    source_to_visible_p99_ms: float | None = None
    last_apply_ms: float = 0.0  # ClickHouse + dead-letter writes of the last batch


class _NoSink:
    """The API flushes ``serving_runner.sink`` before entity reads; the loader writes eagerly."""

    def flush(self) -> None:
        return None


@dataclass
class _Decoded:
    rows: dict[str, dict[tuple[Any, ...], Row]]
    letters: list[DeadLetter]
    events: list[AppliedEvent]
    positions: list[int]
    stage_times: list[tuple[int | None, int | None]]  # (source_ts_ms, flink_ts_ms) of serving messages
    last_recorded_at: datetime | None


class ServingLoader:
    """Runs in a thread: ``run(stop)``; status, ``wait_for`` and the watermark for the API."""

    def __init__(
        self,
        store: ClickHouseStore,
        engine: Engine,
        bootstrap_servers: str,
        topic_prefix: str = "agentflow",
        group_id: str = "agentflow-serving-loader",
        on_applied: OnApplied | None = None,
        checkpoint_name: str = CHECKPOINT_NAME,
        batch_size: int = 2000,
        poll_timeout: float = 0.05,
        tail_interval: float = 0.1,
        tail_batch: int = 5000,
        max_expected: int = 200_000,
        commit_interval: float = 0.2,
        max_backoff: float = 5.0,
        consumer_config: dict[str, Any] | None = None,
        name: str = "serving-loader",
    ) -> None:
        self.store = store
        self.engine = engine
        self.name = name
        self.serving_topic = f"{topic_prefix}.serving"
        self.deadletter_topic = f"{topic_prefix}.deadletter"
        self.on_applied = on_applied
        self.checkpoint_name = checkpoint_name
        self.checkpoints = CheckpointStore(engine)
        self.dead_letters = DeadLetterStore(engine)
        self.batch_size = batch_size
        self.poll_timeout = poll_timeout
        self.tail_interval = tail_interval
        self.tail_batch = tail_batch
        self.max_expected = max_expected
        self.commit_interval = commit_interval
        self.max_backoff = max_backoff
        self.commit_on_stop = True  # tests turn it off to simulate a crash
        self.kafka_lag = ConsumerLag(group_id)  # the consumer's lag per topic, for /metrics
        self.consumer_config: dict[str, Any] = {
            "bootstrap.servers": bootstrap_servers,
            "group.id": group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            "client.id": f"{name}",
            **kafka_client_logging(name, on_error=self._kafka_error),
            **self.kafka_lag.config(),
            **(consumer_config or {}),
        }
        self.sink = _NoSink()
        self._status = LoaderStatus(name)
        self._lock = threading.Lock()
        self._progress = threading.Condition(self._lock)
        self._latencies: deque[float] = deque(maxlen=1000)
        # per-run state (reset by _start)
        self._consumer: Consumer | None = None
        self._contiguity = Contiguity()
        self._tailer: PositionTailer | None = None
        self._tail_cursor = TailCursor()
        self._pending: dict[tuple[str, int], deque[tuple[int, int | None]]] = {}
        self._next_offset: dict[tuple[str, int], int] = {}
        self._committed: dict[tuple[str, int], int] = {}
        self._saved_watermark = 0
        self._last_commit = 0.0
        self._next_tail = 0.0
        self._recheck = 0.002
        self._warned: dict[str, float] = {}

    # ---- status --------------------------------------------------------------------------------
    @property
    def status(self) -> LoaderStatus:
        with self._lock:
            return self._status

    @property
    def watermark(self) -> int:
        return self.status.watermark

    def _set(self, **changes: Any) -> None:
        with self._lock:
            self._status = replace(self._status, **changes)
            self._progress.notify_all()

    def _kafka_error(self, text: str) -> None:
        """The consumer's client errors (broker down, ...) are the loader's last error too."""
        self._set(last_error=f"kafka: {text}", last_error_at=time.time())

    def wait_for(self, position: int, timeout: float) -> bool:
        """Block until the watermark reaches ``position``."""
        return wait_for_watermark(self._progress, lambda: self._status.watermark, position, timeout)

    # ---- lifecycle -----------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        backoff = 0.1
        started = False
        self._set(running=True)
        try:
            while not stop.is_set():
                try:
                    if not started:
                        self._start()
                        started = True
                    self.step()
                    backoff = 0.1
                except Exception as exc:  # never lose messages: restart from the committed offsets
                    log.exception("serving loader failed; restarting in %.1fs", backoff)
                    self._set(
                        last_error=f"{type(exc).__name__}: {exc}", last_error_at=time.time(), caught_up=False
                    )
                    self._close(commit=False)
                    started = False
                    stop.wait(backoff)
                    backoff = min(backoff * 2, self.max_backoff)
        finally:
            self._close(commit=started and self.commit_on_stop)
            self._set(running=False)

    def _start(self) -> None:
        """(Re)start from the saved watermark and the committed offsets."""
        _, saved = self.checkpoints.load(self.checkpoint_name)
        self._saved_watermark = saved
        self._contiguity = Contiguity(saved)
        self._tailer = PositionTailer(self.engine, floor=saved)
        self._tail_cursor = self._tailer.start_cursor()
        self._pending = {}
        self._next_offset = {}
        self._committed = {}
        self._next_tail = 0.0
        published = max(self.status.watermark, saved)
        self._set(watermark=published, committed_watermark=saved, tail_watermark=saved)
        consumer = Consumer(self.consumer_config)
        consumer.subscribe([self.serving_topic, self.deadletter_topic], on_assign=self._on_assign)
        self._consumer = consumer

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:  # consumption resumes from the committed offset: forget older tracking
            self._pending.pop((tp.topic, tp.partition), None)
            self._next_offset.pop((tp.topic, tp.partition), None)
            self._committed.pop((tp.topic, tp.partition), None)

    def _close(self, commit: bool) -> None:
        consumer, self._consumer = self._consumer, None
        self.kafka_lag.clear()
        if consumer is None:
            return
        try:
            if commit:
                self._commit(force=True, consumer=consumer)
        except Exception:
            log.exception("final commit of the serving loader failed")
        finally:
            try:
                consumer.close()  # auto commit is off: closing commits nothing
            except Exception:
                log.exception("closing the serving loader's consumer failed")
            if self._tailer is not None:
                self._tailer.close()

    # ---- one turn ------------------------------------------------------------------------------
    def step(self) -> int:
        """Consume one batch, apply it, move the watermark, maybe commit; returns messages consumed."""
        consumer = self._consumer
        assert consumer is not None
        first = consumer.poll(self.poll_timeout)
        msgs: list[Message] = []
        if first is not None:
            msgs.append(first)
            if self.batch_size > 1:  # whatever else is already fetched, without waiting
                msgs.extend(consumer.consume(num_messages=self.batch_size - 1, timeout=0))
        now = time.time()
        decoded = self._decode(msgs)
        started = time.perf_counter()
        self._apply(decoded)
        apply_seconds = time.perf_counter() - started
        loaded_ms = time.time() * 1000
        c = self._contiguity
        c.applied(decoded.positions)
        self._tail(now_mono=time.monotonic(), eager=bool(decoded.positions))
        previous = self.status.watermark
        watermark = max(previous, c.advance())
        if (decoded.events or watermark > previous) and self.on_applied is not None:
            try:  # before the watermark is published: readers never see a value cached before these
                self.on_applied(decoded.events, watermark)
            except Exception:
                log.exception("on_applied callback of %s failed", self.name)
        visible_ms = time.time() * 1000
        self._publish(decoded, msgs, watermark, now, apply_seconds, loaded_ms, visible_ms, len(msgs))
        self._commit(force=False)
        return len(msgs)

    def _decode(self, msgs: list[Message]) -> _Decoded:
        out = _Decoded({t: {} for t in TABLES}, [], [], [], [], None)
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                if err.fatal():
                    raise RuntimeError(f"kafka: {err}")
                self._warn(f"kafka consumer error: {err}")
                continue
            topic, partition, offset = m.topic(), m.partition(), m.offset()
            assert topic is not None and partition is not None and offset is not None
            raw_key = m.key()
            key = raw_key.decode() if isinstance(raw_key, bytes) else raw_key
            position: int | None
            value: Any = None
            try:
                value = json.loads(m.value() or b"null")
                if not isinstance(value, dict):
                    raise ValueError("message value is not a JSON object")
                if topic == self.deadletter_topic:
                    letter = dead_letter_of(value)
                    out.letters.append(letter)
                    position = letter.position
                else:
                    position = self._decode_serving(value, key, out)
            except Exception as exc:  # a message nobody can apply: keep it, never block the partition
                log.warning("undecodable message on %s[%s]@%s: %s", topic, partition, offset, exc)
                raw = m.value() or b""
                # its position (when readable) counts as dead-lettered, or the watermark would wait
                # for it forever
                position = position_of(value.get("position")) if isinstance(value, dict) else None
                out.letters.append(
                    DeadLetter(
                        pipeline=PIPELINE,
                        stage="load",
                        reason=f"{type(exc).__name__}: {exc}",
                        position=position,
                        event_id=f"kafka:{topic}:{partition}:{offset}",
                        record={
                            "topic": topic,
                            "partition": partition,
                            "offset": offset,
                            "key": key,
                            "value": raw.decode("utf-8", "replace"),
                        },
                    )
                )
            if position is not None:
                out.positions.append(position)
            self._pending.setdefault((topic, partition), deque()).append((offset, position))
            self._next_offset[(topic, partition)] = offset + 1
        return out

    def _warn(self, text: str) -> None:
        """Log a repeated consumer error (e.g. a topic not created yet) at most every 30 s."""
        now = time.monotonic()
        if self._warned.get(text, -1e9) + 30 <= now:
            self._warned[text] = now
            log.warning("%s", text)

    def _decode_serving(self, value: dict[str, Any], key: str | None, out: _Decoded) -> int:
        position = int(value["position"])
        # decode every change first: a message that fails part-way must not half-apply its event
        decoded = [(c["table"], decode_row(c["table"], c["row"])) for c in value.get("changes") or ()]
        keyed = [(t, (r.get("tenant_id"), *(r.get(c) for c in KEY_COLUMNS[t])), r) for t, r in decoded]
        events_row = next((r for t, r in decoded if t == EVENTS), None)
        event = applied_event(value, events_row, key)
        for table, k, row in keyed:
            current = out.rows[table].get(k)
            if current is None or int(current.get("version") or 0) <= int(row.get("version") or 0):
                out.rows[table][k] = row
        out.events.append(event)
        if out.last_recorded_at is None or event.recorded_at > out.last_recorded_at:
            out.last_recorded_at = event.recorded_at
        source_ts, flink_ts = position_of(value.get("source_ts_ms")), position_of(value.get("flink_ts_ms"))
        out.stage_times.append((source_ts, flink_ts))
        return position

    def _apply(self, decoded: _Decoded) -> None:
        # tracing on: the insert is a span in each traced event's command trace (connectors/tracing.py)
        tracing.traced_write("loader", decoded.events, lambda: self._write(decoded))

    def _write(self, decoded: _Decoded) -> None:
        for table, rows in decoded.rows.items():
            if rows:
                self.store.insert_rows(table, list(rows.values()))
        if decoded.letters:
            self.dead_letters.add(decoded.letters)

    def _tail(self, now_mono: float, eager: bool) -> None:
        """Poll the store's positions: at once when applied positions wait for confirmation (backing
        off while they stay unconfirmed), else every ``tail_interval`` (gaps, lag)."""
        c = self._contiguity
        tailer = self._tailer
        assert tailer is not None
        if c.ahead and (eager or now_mono >= self._next_tail):
            pass
        elif now_mono < self._next_tail:
            return
        before = (c.ahead, c.tail_watermark)
        head = self.status.head_position
        for _ in range(10):  # bounded: keep consuming Kafka during a long catch-up
            room = min(self.tail_batch, self.max_expected - c.expected)
            if room <= 0:
                break
            batch = tailer.fetch_positions(self._tail_cursor, room)
            self._tail_cursor = batch.cursor
            c.observed(batch.positions, batch.watermark)
            head = batch.head
            if batch.caught_up:
                break
        progressed = (c.ahead, c.tail_watermark) != before
        if c.ahead and not progressed:
            self._recheck = min(self._recheck * 2, self.tail_interval)
        else:
            self._recheck = 0.002
        self._next_tail = now_mono + (self._recheck if c.ahead else self.tail_interval)
        self._set(head_position=head)

    def _publish(
        self,
        d: _Decoded,
        msgs: list[Message],
        watermark: int,
        now: float,
        apply_seconds: float,
        loaded_ms: float,
        visible_ms: float,
        consumed: int,
    ) -> None:
        c = self._contiguity
        st = self.status
        caught_up = consumed < self.batch_size and c.expected == 0 and c.ahead == 0
        changes: dict[str, Any] = {
            "watermark": watermark,
            "tail_watermark": c.tail_watermark,
            "expected": c.expected,
            "ahead": c.ahead,
            "lag_positions": max(0, st.head_position - watermark),
            "last_poll_at": now,
            "caught_up": caught_up,
            "messages": st.messages + consumed,
        }
        if caught_up:
            changes["caught_up_at"] = now
        if d.events or d.letters:
            s2f = [f - s for s, f in d.stage_times if s is not None and f is not None]
            f2l = [loaded_ms - f for _, f in d.stage_times if f is not None]
            f2c = [now * 1000 - f for _, f in d.stage_times if f is not None]
            s2v = [visible_ms - s for s, _ in d.stage_times if s is not None]
            self._latencies.extend(s2v)
            ordered = sorted(self._latencies)
            changes.update(
                applied=st.applied + len(d.events),
                dead_lettered=st.dead_lettered + len(d.letters),
                last_position=max([st.last_position, *d.positions]),
                last_applied_at=now,
                last_batch_size=len(d.events) + len(d.letters),
                last_batch_seconds=round(apply_seconds, 6),
                last_apply_ms=round(apply_seconds * 1000, 3),
                source_to_flink_ms=max(s2f) if s2f else None,
                flink_to_consumed_ms=round(max(f2c), 3) if f2c else None,
                flink_to_loaded_ms=round(max(f2l), 3) if f2l else None,
                loaded_to_visible_ms=round(visible_ms - loaded_ms, 3),
                source_to_visible_ms=round(max(s2v), 3) if s2v else None,
                source_to_visible_p50_ms=round(ordered[len(ordered) // 2], 3) if ordered else None,
                source_to_visible_p99_ms=round(ordered[int(len(ordered) * 0.99)], 3) if ordered else None,
            )
            if d.last_recorded_at is not None:
                changes["last_recorded_at"] = max(
                    d.last_recorded_at, st.last_recorded_at or d.last_recorded_at
                )
        self._set(**changes)

    # ---- checkpoint + offsets --------------------------------------------------------------------
    def _commit(self, force: bool, consumer: Consumer | None = None) -> None:
        consumer = consumer or self._consumer
        if consumer is None:
            return
        now = time.monotonic()
        if not force and now - self._last_commit < self.commit_interval:
            return
        watermark = self._contiguity.watermark
        offsets: list[TopicPartition] = []
        for tp, pending in self._pending.items():
            while pending and (pending[0][1] is None or pending[0][1] <= watermark):
                pending.popleft()
            offset = pending[0][0] if pending else self._next_offset.get(tp)
            if offset is not None and offset != self._committed.get(tp):
                offsets.append(TopicPartition(tp[0], tp[1], offset))
        if watermark > self._saved_watermark:  # first: offsets past W only once W is durable
            self.checkpoints.save(self.checkpoint_name, None, watermark)
            self._saved_watermark = watermark
            self._set(committed_watermark=watermark)
        if offsets:
            consumer.commit(offsets=offsets, asynchronous=False)
            for done in offsets:
                self._committed[(done.topic, done.partition)] = done.offset
        self._last_commit = now
