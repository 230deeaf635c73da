"""Legacy CDC sources in a running ``agentflow up``: start, stop and watch their capture.

Embedded: one Debezium embedded engine per declared source (connectors/legacy/embedded_capture.py)
inside this process; its batches go straight to the ingestor, and its offsets are committed only
after the ingestor returns. Distributed: each source is a connector on Kafka Connect
(connectors/legacy/connect_registration.py) writing ``<prefix>.legacy.<source>.<schema>.<table>`` topics;
one consumer here feeds the ingestor and commits Kafka offsets only after it returns.

Declarations live in Postgres (``cdc_sources``); a reconcile loop (every 2 s) starts captures for new
declarations and stops removed ones, so ``agentflow sources add`` takes effect without a restart.

A source's database host is checked against SSRF (connectors/legacy/declaration.py ``check_host``): when it
is declared (422 for a refused host) and again before anything here connects to it or has it connected
to -- a capture's start, a connector's registration, the drop of a replication slot -- since a name may
resolve elsewhere by then. Loopback and private hosts need ``AGENTFLOW_LEGACY_ALLOW_PRIVATE=1``.
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
from pathlib import Path
from typing import Any

from commands.cache import AggregateCache
from connectors import ssrf
from connectors.dead_letters import DeadLetter, DeadLetterStore
from connectors.event_store import PostgresEventStore
from connectors.kafka_lag import ConsumerLag
from connectors.legacy.canonical import UnknownSource
from connectors.legacy.declaration import SourceSpec, SourceSpecError, check_host, parse_source
from connectors.legacy.ingest import LegacyIngestor
from connectors.legacy.jvm import EmbeddedJvm
from connectors.legacy.registry import SourceNotFound, SourceRegistry, SourceStatus
from connectors.secret_box import SecretBox

log = logging.getLogger("agentflow.legacy")

RECONCILE_SECONDS = 2.0


def legacy_topic_prefix(topic_prefix: str) -> str:
    return f"{topic_prefix}.legacy"


class LegacySources:
    def __init__(
        self,
        store: PostgresEventStore,
        letters: DeadLetterStore,
        state_dir: Path,
        box: SecretBox,
        mode: str = "embedded",
        kafka_bootstrap: str | None = None,
        topic_prefix: str = "agentflow",
        connect_url: str | None = None,
        group_id: str | None = None,
        jvm_opts: tuple[str, ...] = (),
        aggregates: AggregateCache | None = None,
        allow_private: bool = False,
        resolver: ssrf.Resolver | None = None,
    ) -> None:
        """``aggregates``: the process's aggregate cache (shared with HTTP commands; default: its own);
        ``allow_private``: sources may name loopback/private hosts; ``resolver``: tests' (default: DNS);
        ``box``: the keys of the stored connection passwords."""
        self.allow_private = allow_private
        self.resolver = resolver
        # the process's JVM for embedded captures (started by the first one; JPype: one JVM per process)
        self.jvm = EmbeddedJvm(jvm_opts)
        self.letters = letters
        self.registry = SourceRegistry(store.engine, box)
        self.ingestor = LegacyIngestor(store, letters, aggregates or AggregateCache(), self.registry)
        self.state_dir = state_dir
        self.mode = mode
        self.kafka_bootstrap = kafka_bootstrap
        self.topic_prefix = legacy_topic_prefix(topic_prefix)
        self.connect_url = connect_url
        self.group_id = group_id or f"{topic_prefix}-legacy-ingest"
        self.kafka_lag = ConsumerLag(self.group_id)  # distributed: the ingest consumer's lag, for /metrics
        self._captures: dict[str, Any] = {}  # embedded: name -> EmbeddedCapture
        self._specs: dict[str, SourceSpec] = {}
        self._registered: set[str] = set()  # distributed: connectors known to exist on Connect
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer_thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._reconcile_loop, name="legacy-sources", daemon=True)
        self._thread.start()
        if self.mode == "distributed":
            self._consumer_thread = threading.Thread(target=self._consume_loop, name="legacy-ingest",
                                                     daemon=True)
            self._consumer_thread.start()

    def stop(self) -> None:
        self._stop.set()
        for t in (self._thread, self._consumer_thread):
            if t is not None:
                t.join(timeout=30)
        with self._lock:
            captures = list(self._captures.values())
            self._captures.clear()
        for capture in captures:
            try:
                capture.stop()
            except Exception:  # pragma: no cover - best effort on shutdown
                log.exception("stopping capture %s failed", capture)

    # -- operations (API) -----------------------------------------------------------------------
    def check_host(self, spec: SourceSpec) -> None:
        """SourceSpecError when the source's database host is not an allowed destination (SSRF)."""
        check_host(spec, self.allow_private, self.resolver)

    def _host_problem(self, spec: SourceSpec) -> str | None:
        try:
            self.check_host(spec)
        except SourceSpecError as exc:
            return f"refused: {exc}"
        return None

    def add(self, declaration: dict[str, Any], replace: bool = False) -> SourceStatus:
        self.check_host(parse_source(declaration))  # refused before anything is stored
        spec = self.registry.add(declaration, replace=replace)
        if self.mode == "distributed" and self.connect_url:
            from connectors.legacy.connect_registration import register_source_connector

            assert self.kafka_bootstrap
            try:
                register_source_connector(self.connect_url, spec, topic_prefix=self.topic_prefix,
                                          bootstrap=self.kafka_bootstrap)
            except Exception:
                if not replace:
                    self.registry.remove(spec.name)  # nothing half-added
                raise
            self._registered.add(spec.name)
        self.reconcile()
        return self.registry.get(spec.name)

    def remove(self, name: str) -> tuple[SourceStatus, list[str]]:
        """Forget the declaration first (so no reconcile brings the capture back), then stop the
        capture, delete the connector or the Postgres slot, and the local offsets. Returns the removed
        source and warnings for clean-up that could not be done (e.g. the legacy database is down:
        its replication slot stays and must be dropped by hand)."""
        with self._lock:
            status = self.registry.remove(name)
            spec = self._specs.pop(name, None) or status.spec()
            capture = self._captures.pop(name, None)
            self._registered.discard(name)
        warnings: list[str] = []
        if capture is not None:
            capture.stop()
        try:
            if self.mode == "distributed" and self.connect_url:
                from connectors.legacy.connect_registration import remove_source_connector

                remove_source_connector(self.connect_url, spec, topic_prefix=self.topic_prefix,
                                        bootstrap=self.kafka_bootstrap)
            elif spec.kind == "postgres":
                from connectors.legacy.debezium_config import drop_slot_and_publication

                self.check_host(spec)  # never connect to a host that is (now) refused
                drop_slot_and_publication(spec)  # the slot would pin the legacy database's WAL forever
        except Exception as exc:
            from connectors.legacy.debezium_config import publication_name, slot_name

            what = (f"connector legacy-{name} on {self.connect_url}" if self.mode == "distributed"
                    else f"replication slot {slot_name(spec)} and publication {publication_name(spec)}")
            warnings.append(f"could not remove the {what}: {exc}; remove it by hand")
            log.warning("legacy source %s removed, but: %s", name, warnings[-1])
        shutil.rmtree(self._source_dir(name), ignore_errors=True)  # a re-add snapshots afresh
        return status, warnings

    def replay_letter(self, letter: DeadLetter, corrected: dict[str, Any] | None) -> Any:
        """Re-translate a ``cdc`` dead letter under its source's current declaration (``corrected``:
        a replacement ``after`` row image). Returns a commands.dead_letter_replay.ReplayOutcome."""
        from commands.dead_letter_replay import ReplayConflict, ReplayOutcome, ReplayRejected
        from commands.dead_letters import InvalidTransition
        from commands.validation import InvalidCommand
        from connectors.legacy.translators import MissingReference, Untranslatable
        from domain.errors import DomainError

        name = str((letter.record or {}).get("source") or "")
        try:
            spec = self._specs.get(name) or self.registry.get(name).spec()
        except SourceNotFound:
            raise ReplayRejected(f"source {name!r} is no longer declared; dismiss the letter or add the "
                                 "source again", [f"no source {name!r}"]) from None
        try:
            outcome = self.ingestor.replay_letter(spec, letter, corrected)
        except InvalidTransition as exc:
            raise ReplayConflict(str(exc), exc.current) from exc
        except (MissingReference, Untranslatable, DomainError, InvalidCommand) as exc:
            raise ReplayRejected(f"still not translatable: {exc}", [str(exc)]) from exc
        assert letter.id is not None
        done = self.letters.get(None, letter.id) or letter
        return ReplayOutcome(done, outcome.applied, outcome.last_event_position or 0, None)

    def statuses(self) -> list[dict[str, Any]]:
        out = []
        for status in self.registry.list():
            item = status.public()
            capture = self._captures.get(status.name)
            if capture is not None:
                item["capture"] = {"running": capture.running, "error": capture.error}
            out.append(item)
        return out

    # -- embedded -------------------------------------------------------------------------------
    def _source_dir(self, name: str) -> Path:
        return self.state_dir / name

    def reconcile(self) -> None:
        """Start captures for declared sources, stop those no longer declared, surface errors."""
        with self._lock:  # one reconcile at a time, never interleaved with a remove
            declared: dict[str, SourceSpec] = {}
            for status in self.registry.list():
                try:
                    declared[status.name] = status.spec()
                except ValueError as exc:
                    self.registry.record_error(status.name, f"invalid declaration: {exc}")
            self._specs = dict(declared)
            if self.mode != "embedded":
                self._ensure_connectors(declared)
                return
            for name in [n for n in self._captures if n not in declared]:
                self._captures.pop(name).stop()
            for name, spec in declared.items():
                capture = self._captures.get(name)
                if capture is None:
                    if (problem := self._host_problem(spec)) is not None:
                        self.registry.record_error(name, problem)
                        continue
                    self._captures[name] = self._start_capture(spec)
                elif capture.error:
                    self.registry.record_error(name, capture.error)

    def _ensure_connectors(self, declared: dict[str, SourceSpec]) -> None:
        """Distributed: every declared source has its connector on this deployment's Connect (once per
        process; a fresh Connect cluster, e.g. ``--external`` against a new one, gets them back)."""
        if not self.connect_url or not self.kafka_bootstrap:
            return
        from connectors.legacy.connect_registration import register_source_connector

        for name in [n for n in declared if n not in self._registered]:
            if (problem := self._host_problem(declared[name])) is not None:
                self.registry.record_error(name, problem)
                continue
            try:
                register_source_connector(self.connect_url, declared[name], topic_prefix=self.topic_prefix,
                                          bootstrap=self.kafka_bootstrap)
            except Exception as exc:
                self.registry.record_error(name, f"registering the connector failed: {exc}")
                continue
            self._registered.add(name)

    def _start_capture(self, spec: SourceSpec) -> Any:
        from connectors.legacy.embedded_capture import EmbeddedCapture

        def handle(messages: list[Any]) -> None:
            try:
                self.ingestor.ingest(spec, [(m.key, m.value) for m in messages])
            except UnknownSource as exc:
                self.registry.record_error(spec.name, str(exc))
                raise

        capture = EmbeddedCapture(
            spec, self._source_dir(spec.name), handle, self.jvm, topic_prefix=self.topic_prefix
        )
        capture.start()
        log.info("legacy source %s: embedded capture started", spec.name)
        return capture

    def _reconcile_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.reconcile()
            except Exception:
                log.exception("legacy sources: reconcile failed")
            self._stop.wait(RECONCILE_SECONDS)

    # -- distributed ----------------------------------------------------------------------------
    def _source_of(self, topic: str) -> str | None:
        m = re.match(re.escape(self.topic_prefix) + r"\.([a-z][a-z0-9_]*)(\.|$)", topic)
        return m.group(1) if m else None

    def _consume_loop(self) -> None:
        """Kafka topics of every source -> the ingestor; offsets committed after each applied batch."""
        import json

        from confluent_kafka import Consumer, TopicPartition

        from connectors.kafka_logging import kafka_client_logging

        assert self.kafka_bootstrap
        consumer = Consumer({
            "bootstrap.servers": self.kafka_bootstrap, "group.id": self.group_id,
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "topic.metadata.refresh.interval.ms": 2000, "fetch.wait.max.ms": 10,
            **kafka_client_logging("legacy-ingest"), **self.kafka_lag.config(),
        })
        consumer.subscribe([f"^{re.escape(self.topic_prefix)}\\..*"])
        backoff = 1.0
        try:
            while not self._stop.is_set():
                # consume(n, timeout) waits for n messages or the whole timeout: poll for the first,
                # then take whatever else is already fetched
                head = consumer.poll(0.2)
                if head is None:
                    continue
                messages = [head, *consumer.consume(499, timeout=0)]
                batch: dict[str, list[tuple[Any, Any]]] = {}
                offsets: dict[tuple[str, int], int] = {}
                first: dict[tuple[str, int], int] = {}
                for msg in messages:
                    error = msg.error()
                    if error is not None:
                        log.warning("legacy ingest: %s", error)
                        continue
                    topic, partition = str(msg.topic()), int(msg.partition() or 0)
                    offset = int(msg.offset() or 0)
                    first.setdefault((topic, partition), offset)
                    offsets[(topic, partition)] = offset + 1
                    name = self._source_of(topic)
                    if topic.endswith(".schema-history"):
                        name = None  # Debezium's own MySQL/MariaDB schema history, not changes
                    if name is not None and name not in self._specs:
                        self.reconcile()  # added a moment ago: load its declaration
                    if name is None or name not in self._specs:
                        continue  # a removed (or foreign) source: not captured any more
                    raw_key, raw_value = msg.key(), msg.value()
                    key = json.loads(raw_key) if raw_key else None
                    value = json.loads(raw_value) if raw_value else None
                    batch.setdefault(name, []).append((key if isinstance(key, dict) else None, value))
                if not offsets:
                    continue
                try:
                    for name, items in batch.items():
                        self.ingestor.ingest(self._specs[name], items)
                except Exception as exc:
                    # nothing of this poll is acknowledged: rewind and try again after a pause
                    log.exception("legacy ingest failed; retrying")
                    for name in batch:
                        self.registry.record_error(name, f"{type(exc).__name__}: {exc}")
                    for (topic, partition), offset in first.items():
                        consumer.seek(TopicPartition(topic, partition, offset))
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 30.0)
                    continue
                backoff = 1.0
                consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                                asynchronous=False)
        finally:
            self.kafka_lag.clear()
            consumer.close()
