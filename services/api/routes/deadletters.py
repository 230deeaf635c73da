"""``/v1/deadletter``: events a pipeline stage rejected -- list, stats, get, replay, dismiss
(tenant-scoped). Reads go to the dead-letter store (connectors/dead_letters.py); replay and dismissal are
the write side's (commands/dead_letter_replay.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.params import HeaderParameter, JSONBody, PathParameter, QueryParameter

from commands.dead_letter_replay import DeadLetterNotFound, DeadLetterReplayer, ReplayConflict, ReplayRejected
from connectors.dead_letters import DeadLetter, DeadLetterFilter, DeadLetterStore
from services.api.blocking import in_thread
from services.api.dependencies import READ, WRITE, correlation_id
from services.api.errors import ApiError
from services.api.openapi import errors

MAX_LIST = 500

LetterId = Annotated[str, PathParameter(description="a dead letter id (an integer)")]
Status = Literal["failed", "replay_pending", "replayed", "dismissed"]
Pipeline = Literal["embedded", "distributed", "cdc"]


class DeadLetterView(msgspec.Struct):
    id: int | None
    tenant_id: str | None
    pipeline: str  # embedded | distributed | cdc
    stage: str  # the stage that rejected it (parse, validate, project, translate, ...)
    reason: str
    reason_class: str
    event_id: str | None
    position: int | None
    event_type: str | None
    record: Any  # what the stage received
    status: str  # failed | replay_pending | replayed | dismissed
    status_note: str | None
    created_at: str | None
    updated_at: str | None
    replayed_at: str | None
    dismissed_at: str | None
    replay_position: int | None
    replay_event_id: str | None
    corrected_data: Any


class DeadLetterList(msgspec.Struct):
    data: list[DeadLetterView]
    count: int
    next_cursor: str | None  # pass as ?cursor= for the next (older) page


class DeadLetterStats(msgspec.Struct):
    total: int
    by_status: dict[str, int]
    by_stage: dict[str, int]
    by_pipeline: dict[str, int]
    by_reason_class: dict[str, int]
    by_event_type: dict[str, int]


class DeadLetterReplayRequest(msgspec.Struct):
    data: dict[str, Any] | None = None  # the corrected event data; the original's when left out


class DeadLetterDismissRequest(msgspec.Struct):
    note: str | None = None


class DeadLetterReplayed(DeadLetterView):
    """The replayed letter; ``position`` and ``replay_event_id`` are the appended event's."""

    appended: bool  # false: an earlier replay had appended it already


def _iso(v: datetime | None) -> str | None:
    return v.isoformat() if v is not None else None


def _fields(d: DeadLetter) -> dict[str, Any]:
    return {
        "id": d.id, "tenant_id": d.tenant_id, "pipeline": d.pipeline, "stage": d.stage, "reason": d.reason,
        "reason_class": d.reason_class, "event_id": d.event_id, "position": d.position,
        "event_type": d.event_type, "record": d.record, "status": d.status, "status_note": d.status_note,
        "created_at": _iso(d.created_at), "updated_at": _iso(d.updated_at),
        "replayed_at": _iso(d.replayed_at), "dismissed_at": _iso(d.dismissed_at),
        "replay_position": d.replay_position, "replay_event_id": d.replay_event_id,
        "corrected_data": d.corrected_data,
    }  # fmt: skip


def letter_view(d: DeadLetter) -> DeadLetterView:
    return DeadLetterView(**_fields(d))


def _filters(
    status: Status | None, stage: str | None, pipeline: Pipeline | None, event_type: str | None,
    since: datetime | None,
) -> DeadLetterFilter:  # fmt: skip
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return DeadLetterFilter(status or None, stage or None, pipeline or None, event_type or None, since)


def _letter_id(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(404, "not_found", f"dead letter {raw} not found") from None
    if value <= 0:
        raise ApiError(404, "not_found", f"dead letter {raw} not found")
    return value


@contextmanager
def _refusals() -> Iterator[None]:
    try:
        yield
    except DeadLetterNotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from exc
    except ReplayRejected as exc:
        raise ApiError(
            422, "replay_invalid", str(exc), [{"field": "data", "message": p} for p in exc.problems]
        ) from exc
    except ReplayConflict as exc:
        raise ApiError(409, "invalid_status", str(exc), {"status": exc.status}) from exc


StatusQ = Annotated[Status | None, QueryParameter(description="only letters in this status")]
StageQ = Annotated[
    str | None, QueryParameter(description="only letters of this stage (the pipelines' own names)")
]
PipelineQ = Annotated[Pipeline | None, QueryParameter(description="only letters of this pipeline")]
EventTypeQ = Annotated[str | None, QueryParameter(description="only letters of this event type")]
SinceQ = Annotated[datetime | None, QueryParameter(description="only letters filed at or after (ISO-8601)")]


@get("/v1/deadletter", opt=READ, responses=errors(401, 422))
@in_thread
def list_dead_letters(
    tenant: NamedDependency[str],
    dead_letters: NamedDependency[DeadLetterStore],
    status: StatusQ = None,
    stage: StageQ = None,
    pipeline: PipelineQ = None,
    event_type: EventTypeQ = None,
    since: SinceQ = None,
    limit: Annotated[int, QueryParameter(description="page size (1-500)")] = 50,
    cursor: Annotated[int | None, QueryParameter(description="the next_cursor of the previous page")] = None,
) -> DeadLetterList:
    """Newest first."""
    filters = _filters(status, stage, pipeline, event_type, since)
    limit = min(MAX_LIST, max(1, limit))
    rows = dead_letters.page(tenant, filters, limit, cursor)
    next_cursor = str(rows[-1].id) if len(rows) == limit else None
    return DeadLetterList([letter_view(r) for r in rows], len(rows), next_cursor)


@get("/v1/deadletter/stats", opt=READ, responses=errors(401, 422))
@in_thread
def dead_letter_stats(
    tenant: NamedDependency[str],
    dead_letters: NamedDependency[DeadLetterStore],
    status: StatusQ = None,
    stage: StageQ = None,
    pipeline: PipelineQ = None,
    event_type: EventTypeQ = None,
    since: SinceQ = None,
) -> DeadLetterStats:
    """Counts by status, stage, pipeline, reason class and event type (the list's filters apply)."""
    stats = dead_letters.stats(tenant, _filters(status, stage, pipeline, event_type, since))
    return msgspec.convert(stats, DeadLetterStats)


@get("/v1/deadletter/{letter_id:str}", opt=READ, responses=errors(401, 404))
@in_thread
def get_dead_letter(
    tenant: NamedDependency[str], dead_letters: NamedDependency[DeadLetterStore], letter_id: LetterId
) -> DeadLetterView:
    letter = dead_letters.get(tenant, _letter_id(letter_id))
    if letter is None:
        raise ApiError(404, "not_found", f"dead letter {letter_id} not found")
    return letter_view(letter)


@post(
    "/v1/deadletter/{letter_id:str}/replay", opt=WRITE, status_code=200,
    responses=errors(401, 404, 409, 413, 422),
)  # fmt: skip
@in_thread
def replay_dead_letter(
    request: Request[Any, Any, Any],
    tenant: NamedDependency[str],
    dead_letter_replay: NamedDependency[DeadLetterReplayer],
    letter_id: LetterId,
    actor: Annotated[str | None, HeaderParameter(name="x-actor", description="who replays (audit)")] = None,
    data: JSONBody[DeadLetterReplayRequest | None] = None,
) -> DeadLetterReplayed:
    """Append the event again -- with ``{"data": {...}}`` replacing its data -- after re-validating it;
    the deployment's normal pipeline projects it. 200 with the dead letter (``replayed``) and the new
    ``position`` (read with ``min_position`` to see it in the metrics); 422 if still invalid (status
    stays ``failed``); 409 if dismissed. Repeating it appends nothing (``appended: false``)."""
    lid = _letter_id(letter_id)
    cid = correlation_id(request)  # X-Correlation-Id, or a new one (the event's metadata carries it)
    with _refusals():
        outcome = dead_letter_replay.replay(tenant, lid, data.data if data else None, cid,
                                            actor or f"api-key:{tenant}")  # fmt: skip
    fields = {**_fields(outcome.letter), "position": outcome.position, "replay_event_id": outcome.event_id}
    return DeadLetterReplayed(**fields, appended=outcome.appended)


@post(
    "/v1/deadletter/{letter_id:str}/dismiss", opt=WRITE, status_code=200,
    responses=errors(401, 404, 409, 413, 422),
)  # fmt: skip
@in_thread
def dismiss_dead_letter(
    tenant: NamedDependency[str],
    dead_letter_replay: NamedDependency[DeadLetterReplayer],
    letter_id: LetterId,
    data: JSONBody[DeadLetterDismissRequest | None] = None,
) -> DeadLetterView:
    """failed -> dismissed (``{"note": "..."}`` optional); 409 when replayed or being replayed."""
    lid = _letter_id(letter_id)
    with _refusals():
        return letter_view(dead_letter_replay.dismiss(tenant, lid, data.note if data else None))


DEADLETTER_ROUTES = [
    list_dead_letters,
    dead_letter_stats,
    get_dead_letter,
    replay_dead_letter,
    dismiss_dead_letter,
]
