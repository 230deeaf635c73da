"""Lake maintenance (compaction + snapshot expiry) on a real pyiceberg catalog in the Postgres fixture,
while the embedded sink keeps committing; the sink's bounded start."""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from dramatiq import Worker
from event_log import shop_log
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.io.pyarrow import PyArrowFileIO
from pyiceberg.table import Transaction
from waiting import eventually

from connectors.advisory_lock import SessionLock
from connectors.brokers import close_broker, postgres_broker
from connectors.iceberg_sink import IcebergSink, latest_rows, make_catalog
from connectors.lake_maintenance import MAINTENANCE, MaintenancePolicy, maintain
from domain.events import RecordedEvent
from projections.rows import ORDERS, PAYMENTS, MemoryLookup, invalid_reason, project
from services.cli import main as cli_main
from services.lake_job import RUN_LOCK, LakeMaintenanceJob, run_maintenance

pytestmark = pytest.mark.integration

NOW_POLICY = MaintenancePolicy(older_than_s=0.0, retain_last=1)  # expire everything expirable


def _events(tenant: str, n_orders: int = 120, seed: int = 11) -> list[RecordedEvent]:
    from test_readmodels import shop

    return shop(tenant, n_orders=n_orders, seed=seed).events


@pytest.fixture()
def catalog(pg_url: str, tmp_path: Path) -> SqlCatalog:
    return make_catalog(pg_url, tmp_path, name=f"test_{uuid.uuid4().hex[:8]}")


def _cursor(e: RecordedEvent) -> tuple[int, int]:
    return (e.transaction_id, e.position)


def _feed(sink: IcebergSink, events: list[RecordedEvent], chunk: int) -> None:
    """Apply in chunks, committing each: many small files, one snapshot per chunk and table."""
    for i in range(0, len(events), chunk):
        part = events[i : i + chunk]
        sink.apply(part, _cursor(part[-1]), part[-1].position)
        sink.flush()


def _expected(events: list[RecordedEvent]) -> dict[str, Counter[Any]]:
    """What each lake table must hold, from the event list alone: every valid event once, one history
    row per order/payment event."""
    valid = [e for e in events if invalid_reason(e) is None]
    return {
        "events": Counter(e.position for e in valid),
        "orders_history": Counter((e.stream_id, e.position) for e in valid if e.stream_type == "order"),
        "payments_history": Counter((e.stream_id, e.position) for e in valid if e.stream_type == "payment"),
    }


def _stored(catalog: SqlCatalog) -> dict[str, Counter[Any]]:
    out: dict[str, Counter[Any]] = {}
    for name, key in (("events", None), ("orders_history", "order_id"), ("payments_history", "payment_id")):
        rows = catalog.load_table(f"agentflow.{name}").scan().to_arrow().to_pylist()
        out[name] = Counter(r["position"] if key is None else (r[key], r["version"]) for r in rows)
    return out


def test_maintenance_racing_the_sink_keeps_every_row_exactly_once(
    catalog: SqlCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = _events("lake-a")
    first, middle, rest = events[:400], events[400:450], events[450:]
    sink = IcebergSink(catalog, max_rows=100_000, max_age_seconds=3600)
    _feed(sink, first, chunk=25)

    # the sink commits `middle` right when compaction commits for the first time: the compaction's
    # first attempt must lose the race and re-base, not drop or repeat the rows
    original = Transaction.commit_transaction
    raced = threading.Event()

    def racing_commit(tx: Transaction) -> Any:
        if not raced.is_set() and any(getattr(p, "snapshot_properties", {}).get(MAINTENANCE)
                                      for p in tx._snapshot_producers):  # fmt: skip
            raced.set()
            done = threading.Thread(target=_feed, args=(sink, middle, 50))  # a writer of its own
            done.start()
            done.join()
        return original(tx)

    monkeypatch.setattr(Transaction, "commit_transaction", racing_commit)
    report = maintain(catalog, NOW_POLICY)
    assert raced.is_set()
    events_report = next(t for t in report.tables if t.table == "events")
    assert events_report.commit_attempts >= 2  # the race happened and was re-based
    assert events_report.rewritten_files >= 16 and events_report.written_files == 1
    monkeypatch.setattr(Transaction, "commit_transaction", original)

    # and a writer thread committing freely while maintenance runs again
    writer = threading.Thread(target=_feed, args=(sink, rest, 20))
    writer.start()
    again = maintain(catalog, NOW_POLICY)
    writer.join()
    assert all(t.skipped is None or "never stood still" in t.skipped for t in again.tables)

    assert _stored(catalog) == _expected(events)
    for t in report.tables:
        assert t.data_files_after < t.data_files_before
        assert t.expired_snapshots > 0 and t.deleted_files > 0

    # the sink's checkpoint survived the maintenance snapshots and the expiry
    restarted = IcebergSink(catalog, max_rows=100_000, max_age_seconds=3600)
    assert restarted.load_checkpoint() == (_cursor(events[-1]), events[-1].position)
    _feed(restarted, events[-60:], chunk=60)  # replaying the tail (up to the checkpoint) adds nothing
    final = maintain(catalog, NOW_POLICY)
    assert _stored(catalog) == _expected(events)
    assert all(t.data_files_after == 1 for t in final.tables)


def _fold(events: list[RecordedEvent]) -> MemoryLookup:
    state = MemoryLookup()
    for e in events:
        if invalid_reason(e) is None:
            state.apply(project(e, state))
    return state


def test_sink_start_reads_no_data_files_and_a_small_cache_reads_rows_back(
    catalog: SqlCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = shop_log("lake-b", seed=4, steps=600).events  # later events pick earlier orders at random
    half = len(events) // 2
    _feed(IcebergSink(catalog, max_rows=100_000, max_age_seconds=3600), events[:half], chunk=60)

    opened: list[str] = []
    new_input = PyArrowFileIO.new_input

    def recording(self: PyArrowFileIO, location: str) -> Any:
        opened.append(location)
        return new_input(self, location)

    monkeypatch.setattr(PyArrowFileIO, "new_input", recording)
    sink = IcebergSink(catalog, max_rows=100_000, max_age_seconds=3600, cache_rows=6)
    assert sink.load_checkpoint()[0] == _cursor(events[half - 1])
    assert opened and not [p for p in opened if p.endswith(".parquet")]  # metadata only

    _feed(sink, events[half:], chunk=40)
    assert any(p.endswith(".parquet") for p in opened)
    assert sink.state.lookups > 0  # later events of earlier orders were read back by key
    assert sink.state.size() <= 6  # trimmed after every commit

    folded = _fold(events)
    histories = ((ORDERS, "orders_history", "order_id"), (PAYMENTS, "payments_history", "payment_id"))
    for target, name, key in histories:
        stored = latest_rows(sink.table(name).scan().to_arrow().to_pylist(), key)
        expected = folded.tables[target]
        assert set(stored) == set(expected)
        for k, row in expected.items():
            got = stored[k]
            for column in ("status", "version", "paid_minor" if target == ORDERS else "refunded_minor"):
                assert got[column] == row[column], (k, column)


def test_one_maintenance_run_at_a_time(pg_url: str, tmp_path: Path) -> None:
    lake = make_catalog(pg_url, tmp_path)  # the catalog name the maintenance run uses
    _feed(IcebergSink(lake, max_rows=100_000, max_age_seconds=3600), _events("lake-c", 20), chunk=50)
    holder = SessionLock(pg_url, RUN_LOCK)
    assert holder.hold()
    try:
        assert run_maintenance(pg_url, NOW_POLICY) is None  # another run holds the lock: skipped
    finally:
        holder.release()
    report = run_maintenance(pg_url, NOW_POLICY)
    assert report is not None and {t.table for t in report.tables} >= {"events"}


def test_the_fleet_runs_maintenance_on_its_schedule(pg_url: str, tmp_path: Path) -> None:
    lake = make_catalog(pg_url, tmp_path)
    events = _events("lake-d", 20)
    _feed(IcebergSink(lake, max_rows=100_000, max_age_seconds=3600), events, chunk=40)
    table = lake.load_table("agentflow.events")
    assert len(list(table.scan().plan_files())) > 1
    broker = postgres_broker(pg_url, poll_interval=0.05)
    job = LakeMaintenanceJob(broker, pg_url, NOW_POLICY, interval_s=0.2, data_dir=tmp_path)
    worker = Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    job.start()
    try:
        eventually(lambda: job.runs >= 1, what="a scheduled maintenance run")
    finally:
        job.stop()
        worker.stop()
        close_broker(broker)
    assert len(list(table.refresh().scan().plan_files())) == 1  # compacted by the scheduled run
    assert _stored(lake) == _expected(events)


def test_cli_maintains_and_reports_json(
    pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lake = make_catalog(pg_url, tmp_path)
    events = _events("lake-e", 20)
    _feed(IcebergSink(lake, max_rows=100_000, max_age_seconds=3600), events, chunk=40)
    argv = ["lake", "maintain", "--database-url", pg_url, "--data-dir", str(tmp_path),
            "--older-than-s", "0", "--retain-last", "1", "--json"]  # fmt: skip
    assert cli_main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    by_table = {t["table"]: t for t in report["tables"]}
    assert set(by_table) == {"events", "orders_history", "payments_history"}
    n_chunks = -(-len(events) // 40)
    assert (by_table["events"]["data_files_before"], by_table["events"]["data_files_after"]) == (n_chunks, 1)
    assert by_table["events"]["rows_after"] == len(_expected(events)["events"])
    assert _stored(lake) == _expected(events)
