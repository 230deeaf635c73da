"""``/v1/admin/projections/{name}/rebuild``: rebuild a read model from position 0 inside this process,
without stopping the API (services/rebuild.py). A read model holds every tenant's rows and is rebuilt as
a whole: an ``operator`` action (403 for other keys, admin keys included)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import msgspec
from litestar import get, post
from litestar.di import NamedDependency
from litestar.params import PathParameter

from readmodels.api_keys import Principal
from services.api.dependencies import OPERATOR
from services.api.errors import ApiError
from services.api.openapi import errors
from services.rebuild import NotProjectedHere, RebuildBusy, RebuildProgress, Rebuilds, UnknownReadModel

ReadModel = Annotated[str, PathParameter(description="clickhouse, iceberg or all")]


class RebuildStatus(msgspec.Struct):
    name: str
    state: str  # running | done | failed
    phase: str
    started_at: float  # unix seconds
    finished_at: float | None
    target_position: int
    position: int
    events: int
    error: str | None
    elapsed_seconds: float
    events_per_second: float
    percent: float


class RebuildList(msgspec.Struct):
    rebuilds: list[RebuildStatus]


def _views(progress: list[RebuildProgress]) -> RebuildList:
    return RebuildList([msgspec.convert(p.public(), RebuildStatus) for p in progress])


@contextmanager
def _refusals() -> Iterator[None]:
    try:
        yield
    except UnknownReadModel as exc:
        raise ApiError(404, "not_found", str(exc.args[0])) from exc
    except NotProjectedHere as exc:
        raise ApiError(409, "not_projected_here", str(exc)) from exc
    except RebuildBusy as exc:
        raise ApiError(409, "rebuild_running", str(exc)) from exc


@post(
    "/v1/admin/projections/{name:str}/rebuild", opt=OPERATOR, status_code=202,
    responses=errors(401, 403, 404, 409),
)  # fmt: skip
async def start_rebuild(
    principal: NamedDependency[Principal], rebuilds: NamedDependency[Rebuilds], name: ReadModel
) -> RebuildList:
    """Start rebuilding ``clickhouse``, ``iceberg`` or ``all`` from position 0; 202 with the progress
    (poll GET on the same path). 409 if one is already running."""
    with _refusals():
        return _views(rebuilds.start_selected(name))


@get("/v1/admin/projections/{name:str}/rebuild", opt=OPERATOR, responses=errors(401, 403, 404, 409))
async def rebuild_progress(
    principal: NamedDependency[Principal], rebuilds: NamedDependency[Rebuilds], name: ReadModel
) -> RebuildList:
    """Progress of the latest rebuild(s): state, phase, position, target, percent, events/s."""
    with _refusals():
        found = rebuilds.latest(name)
    if not found:
        raise ApiError(404, "not_found", f"no rebuild of {name} has run in this process")
    return _views(found)


REBUILD_ROUTES = [start_rebuild, rebuild_progress]
