"""Iceberg lake maintenance with pyiceberg: compact small data files, expire old snapshots, delete
the files only expired snapshots referenced and metadata files no version refers to.

Runs against the tables of either deployment (the embedded pyiceberg sink's or Flink's: one JDBC/SQL
catalog in Postgres), while their writers keep committing:

- compaction reads the small files of a table (streamed, one bin of at most ``target_bytes`` on
  disk at a time) and commits ONE ``overwrite`` snapshot that deletes exactly those files and adds
  the rewritten ones, so readers see every row exactly once before and after. A concurrent commit
  makes ours fail (pyiceberg's serializable check, or the catalog's compare-and-swap); we then
  re-base the same rewrite on the new head as long as every file we rewrote is still live -- the
  writers only append, so they do -- and give up (deleting what we wrote) otherwise.
- maintenance snapshots carry ``agentflow.maintenance`` and no sink cursor; the embedded sink takes
  its checkpoint from the newest ancestor that has one (connectors/iceberg_sink.py), Flink's
  committer walks the ancestry for its own checkpoint id likewise.
- expiry keeps the newest ``retain_last`` snapshots, everything younger than ``older_than_s`` (a
  reader that planned a scan a moment ago still finds its files), and the current snapshot's
  ancestry back to the newest writer checkpoint (sink cursor or Flink checkpoint id).

pyiceberg has no rewrite_data_files; pyiceberg's overwrite producer is what it uses for its own
copy-on-write overwrites. There is no ``replace`` operation in pyiceberg's summaries, hence
``overwrite`` + the property.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException, NoSuchTableError, ValidationException
from pyiceberg.expressions import AlwaysTrue
from pyiceberg.io.pyarrow import ArrowScan, _dataframe_to_data_files
from pyiceberg.manifest import DataFile
from pyiceberg.table import FileScanTask, Table, TableProperties
from pyiceberg.table.snapshots import Snapshot

from connectors.iceberg_sink import CURSOR_TXID, NAMESPACE

log = logging.getLogger("agentflow.lake")

TABLES = ("events", "orders_history", "payments_history")
MAINTENANCE = "agentflow.maintenance"
# snapshot properties that mark a writer's restart point: the embedded sink's cursor, Flink's
# committed checkpoint id
CHECKPOINT_MARKERS = (CURSOR_TXID, "flink.max-committed-checkpoint-id")
# Iceberg's own rewrite treats files under 75% of the target as small
SMALL_FRACTION = 0.75


@dataclass
class TableReport:
    table: str
    data_files_before: int = 0
    data_bytes_before: int = 0
    data_files_after: int = 0
    data_bytes_after: int = 0
    rows_before: int = 0
    rows_after: int = 0
    snapshots_before: int = 0
    snapshots_after: int = 0
    disk_files_before: int | None = None  # everything under the table's location (local warehouses)
    disk_bytes_before: int | None = None
    disk_files_after: int | None = None
    disk_bytes_after: int | None = None
    rewritten_files: int = 0
    written_files: int = 0
    commit_attempts: int = 0
    expired_snapshots: int = 0
    deleted_files: int = 0
    deleted_bytes: int = 0
    seconds: float = 0.0
    skipped: str | None = None


@dataclass
class MaintenanceReport:
    tables: list[TableReport] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MaintenancePolicy:
    target_bytes: int = 64 * 1024 * 1024
    min_input_files: int = 2
    older_than_s: float = 3600.0
    retain_last: int = 10
    max_attempts: int = 20
    # a metadata.json that a commit in flight wrote but has not swapped in yet is younger than this
    metadata_grace_s: float = 600.0


def maintain(
    catalog: Catalog,
    policy: MaintenancePolicy = MaintenancePolicy(),
    tables: Iterable[str] = TABLES,
    clock: Callable[[], float] = time.time,
) -> MaintenanceReport:
    """Compact, then expire, each lake table that exists."""
    started = time.perf_counter()
    report = MaintenanceReport()
    for name in tables:
        try:
            table = catalog.load_table(f"{NAMESPACE}.{name}")
        except NoSuchTableError:
            continue
        report.tables.append(maintain_table(table, name, policy, clock))
    report.seconds = time.perf_counter() - started
    return report


def maintain_table(
    table: Table, name: str, policy: MaintenancePolicy, clock: Callable[[], float] = time.time
) -> TableReport:
    started = time.perf_counter()
    out = TableReport(name)
    _measure(table, out, "before")
    try:
        compact(table, policy, out)
    except _Skip as exc:
        out.skipped = str(exc)
    expire(table, policy, out, clock)
    table.refresh()
    _measure(table, out, "after")
    out.seconds = time.perf_counter() - started
    log.info(
        "lake maintenance %s: %d -> %d data files, %d -> %d bytes on disk, %d snapshots expired in %.1fs",
        name, out.data_files_before, out.data_files_after, out.disk_bytes_before or 0,
        out.disk_bytes_after or 0, out.expired_snapshots, out.seconds,
    )  # fmt: skip
    return out


class _Skip(Exception):
    pass


# -- compaction -------------------------------------------------------------------------------------


def _bins(files: list[DataFile], target: int) -> list[list[DataFile]]:
    """Consecutive small files, packed into bins of at most ``target`` bytes on disk."""
    out: list[list[DataFile]] = [[]]
    size = 0
    for f in files:
        if out[-1] and size + f.file_size_in_bytes > target:
            out.append([])
            size = 0
        out[-1].append(f)
        size += f.file_size_in_bytes
    return [b for b in out if len(b) > 1]


def compact(table: Table, policy: MaintenancePolicy, out: TableReport) -> None:
    table.refresh()
    if table.current_snapshot() is None:
        return
    tasks = list(table.scan().plan_files())
    if any(t.delete_files for t in tasks):
        raise _Skip("the table has delete files; compaction only rewrites append-only tables")
    small = [t.file for t in tasks if t.file.file_size_in_bytes < policy.target_bytes * SMALL_FRACTION]
    small.sort(key=lambda f: f.file_path)
    bins = [b for b in _bins(small, policy.target_bytes) if b]
    if sum(len(b) for b in bins) < policy.min_input_files:
        return
    # one output file per bin: the target applies to what is read, not to pyiceberg's in-memory sizes
    one_file = {**table.metadata.properties, TableProperties.WRITE_TARGET_FILE_SIZE_BYTES: str(2**62)}
    metadata = table.metadata.model_copy(update={"properties": one_file})
    scan = ArrowScan(metadata, table.io, metadata.schema(), AlwaysTrue())
    old: list[DataFile] = []
    new: list[DataFile] = []
    write_uuid = uuid.uuid4()
    try:
        for files in bins:
            batches = iter(scan.to_record_batches([FileScanTask(f) for f in files]))
            first = next(batches, None)
            if first is not None:
                reader = pa.RecordBatchReader.from_batches(first.schema, itertools.chain([first], batches))
                new.extend(_dataframe_to_data_files(metadata, reader, table.io, write_uuid=write_uuid))
            old.extend(files)
        _commit_rewrite(table, old, new, policy, out)
    except BaseException:
        for f in new:  # never referenced by a committed snapshot
            with contextlib.suppress(Exception):
                table.io.delete(f.file_path)
        raise
    out.rewritten_files, out.written_files = len(old), len(new)


def _commit_rewrite(
    table: Table, old: list[DataFile], new: list[DataFile], policy: MaintenancePolicy, out: TableReport
) -> None:
    wanted = {f.file_path for f in old}
    for attempt in range(1, policy.max_attempts + 1):
        out.commit_attempts = attempt
        table.refresh()
        live = {t.file.file_path for t in table.scan().plan_files()}
        if not wanted <= live:
            raise _Skip("another maintenance run rewrote these files first")
        try:
            with (
                table.transaction() as tx,
                tx.update_snapshot(snapshot_properties={MAINTENANCE: "compact"}).overwrite() as rewrite,
            ):
                for f in old:
                    rewrite.delete_data_file(f)
                for f in new:
                    rewrite.append_data_file(f)
            return
        except (CommitFailedException, ValidationException) as exc:  # a writer committed meanwhile
            log.info("compaction of %s raced a commit (%s); re-basing", table.name(), exc)
            time.sleep(min(0.05 * attempt, 1.0))
    raise _Skip(f"gave up after {policy.max_attempts} attempts: the table never stood still")


# -- expiry -----------------------------------------------------------------------------------------


def _reachable(table: Table, snapshots: Iterable[Snapshot], seen: set[str]) -> set[str]:
    """Manifest lists, manifests and live data/delete files of ``snapshots`` (``seen``: manifests
    already read, shared between snapshots)."""
    files: set[str] = set()
    for snap in snapshots:
        files.add(snap.manifest_list)
        for manifest in snap.manifests(table.io):
            files.add(manifest.manifest_path)
            if manifest.manifest_path in seen:
                continue
            seen.add(manifest.manifest_path)
            files.update(e.data_file.file_path for e in manifest.fetch_manifest_entry(table.io))
    return files


def _checkpoint_path(table: Table) -> set[int]:
    """The current snapshot and its ancestors back to the newest one carrying a writer's checkpoint:
    the sink and Flink's committer find their restart point by walking exactly this path."""
    path: set[int] = set()
    snap = table.current_snapshot()
    while snap is not None:
        path.add(snap.snapshot_id)
        props = snap.summary.additional_properties if snap.summary is not None else {}
        if any(marker in props for marker in CHECKPOINT_MARKERS):
            break
        snap = table.snapshot_by_id(snap.parent_snapshot_id) if snap.parent_snapshot_id is not None else None
    return path


def _doomed(table: Table, policy: MaintenancePolicy, clock: Callable[[], float]) -> list[Snapshot]:
    meta = table.metadata
    cutoff_ms = int((clock() - policy.older_than_s) * 1000)
    newest = sorted(meta.snapshots, key=lambda s: s.timestamp_ms, reverse=True)
    keep = {s.snapshot_id for s in newest[: max(1, policy.retain_last)]}
    keep.update(ref.snapshot_id for ref in meta.refs.values())
    keep.update(_checkpoint_path(table))
    return [s for s in meta.snapshots if s.snapshot_id not in keep and s.timestamp_ms < cutoff_ms]


def expire(
    table: Table, policy: MaintenancePolicy, out: TableReport, clock: Callable[[], float] = time.time
) -> None:
    doomed: list[Snapshot] = []
    for attempt in range(1, policy.max_attempts + 1):
        table.refresh()
        doomed = _doomed(table, policy, clock)
        if not doomed:
            break
        try:
            table.maintenance.expire_snapshots().by_ids([s.snapshot_id for s in doomed]).commit()
            break
        except CommitFailedException:  # a writer committed meanwhile: decide again on the new head
            time.sleep(min(0.05 * attempt, 1.0))
    else:
        raise _Skip(f"snapshot expiry gave up after {policy.max_attempts} attempts")
    if doomed:
        out.expired_snapshots = len(doomed)
        table.refresh()
        live_manifests: set[str] = set()
        live = _reachable(table, table.metadata.snapshots, live_manifests)
        gone = _reachable(table, doomed, set(live_manifests)) - live
        for path in sorted(gone):
            _delete(table, path, out)
    _delete_stale_metadata(table, policy, out, clock)


def _delete_stale_metadata(
    table: Table, policy: MaintenancePolicy, out: TableReport, clock: Callable[[], float]
) -> None:
    """metadata.json files neither current nor in the metadata log, older than the grace period."""
    folder = _local_dir(table.metadata_location)
    if folder is None:
        return
    folder = folder.parent
    keep = {table.metadata_location, *(e.metadata_file for e in table.metadata.metadata_log)}
    keep_paths = {str(_local_dir(k)) for k in keep}
    for path in folder.glob("*.metadata.json"):
        with contextlib.suppress(FileNotFoundError):
            if str(path) not in keep_paths and path.stat().st_mtime < clock() - policy.metadata_grace_s:
                _delete(table, path.as_uri(), out)


def _delete(table: Table, path: str, out: TableReport) -> None:
    local = _local_dir(path)
    size = 0
    if local is not None:
        with contextlib.suppress(OSError):
            size = local.stat().st_size
    try:
        table.io.delete(path)
    except FileNotFoundError:
        return
    out.deleted_files += 1
    out.deleted_bytes += size


# -- figures ----------------------------------------------------------------------------------------


def _local_dir(location: str) -> Path | None:
    parsed = urlparse(location)
    if parsed.scheme in ("", "file"):
        return Path(parsed.path)
    return None


def _measure(table: Table, out: TableReport, when: str) -> None:
    table.refresh()
    snap = table.current_snapshot()
    files = list(table.scan().plan_files()) if snap is not None else []
    rows = int(snap.summary.get("total-records") or 0) if snap is not None and snap.summary else 0
    setattr(out, f"data_files_{when}", len(files))
    setattr(out, f"data_bytes_{when}", sum(t.file.file_size_in_bytes for t in files))
    setattr(out, f"rows_{when}", rows)
    setattr(out, f"snapshots_{when}", len(table.metadata.snapshots))
    root = _local_dir(table.location())
    if root is not None and root.exists():
        n = size = 0
        for dirpath, _, names in os.walk(root):
            for name in names:
                with contextlib.suppress(OSError):
                    size += os.stat(os.path.join(dirpath, name)).st_size
                    n += 1
        setattr(out, f"disk_files_{when}", n)
        setattr(out, f"disk_bytes_{when}", size)
