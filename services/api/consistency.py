"""Read-your-writes for reads (API.md "Consistency"): ``min_position``, ``timeout_ms`` and ``allow_stale``.

A route that honours them declares ``read_after: NamedDependency[ReadAfter]`` (dependencies.py provides it
from these three query parameters, which then appear in the route's schema) and awaits
``read_after.wait()`` once its own input is valid: the wait is bounded by the ``min_position_timeout_s``
setting (and ``timeout_ms``); past it the read answers 503 ``position_not_yet_applied`` with Retry-After,
or goes ahead flagged stale when the client passed ``allow_stale=true``.
"""

from __future__ import annotations

from typing import Annotated

from litestar.di import NamedDependency
from litestar.params import QueryParameter

from services.api.errors import ApiError
from services.runtime import Runtime


class ReadAfter:
    __slots__ = ("allow_stale", "position", "runtime", "timeout")

    def __init__(self, runtime: Runtime, position: int | None, timeout: float, allow_stale: bool) -> None:
        self.runtime = runtime
        self.position = position
        self.timeout = timeout
        self.allow_stale = allow_stale

    async def wait(self) -> bool:
        """Until the read models have applied ``min_position`` (at once without one). False only when
        the bound passed and the client accepted a stale answer; 503 when it did not."""
        position = self.position
        if position is None:
            return True
        runtime = self.runtime
        if await runtime.wait_for_position(position, self.timeout):
            return True
        if self.allow_stale:
            return False
        raise ApiError(
            503,
            "position_not_yet_applied",
            f"read model has applied position {runtime.watermark}, not yet {position}",
            {"as_of_position": runtime.watermark, "min_position": position},
            headers={"Retry-After": "1"},
        )


def read_after(
    runtime: NamedDependency[Runtime],
    min_position: Annotated[
        int | None,
        QueryParameter(description="answer only once the read models have applied this position "
                       "(the `position` a command returned)"),
    ] = None,
    timeout_ms: Annotated[
        int | None,
        QueryParameter(description="wait at most this long for min_position (capped by the server's bound)"),
    ] = None,
    allow_stale: Annotated[
        bool,
        QueryParameter(description="when min_position is not applied in time, answer anyway (meta.stale) "
                       "instead of 503"),
    ] = False,
) -> ReadAfter:
    timeout = runtime.settings.min_position_timeout_s
    if timeout_ms is not None:
        timeout = min(timeout, max(0.0, timeout_ms / 1000))
    return ReadAfter(runtime, min_position, timeout, allow_stale)
