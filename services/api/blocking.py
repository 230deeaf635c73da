"""``@in_thread``: a route handler that blocks (database, DNS, Kafka) written as a plain function and run
in a worker thread.

Stack it under the route decorator::

    @get("/v1/things/{thing_id:str}", responses=errors(401, 404))
    @in_thread
    def get_thing(tenant: str, things: Things, thing_id: str) -> Thing: ...

Litestar sees an ``async def`` with the function's own signature (parameters, annotations, name: the
OpenAPI schema and the operation id are the function's). Litestar's own ``sync_to_thread=True`` wraps
the handler when an app registers it, and module-level handlers registered by a second app in one
process (the schema document, each test module's app) get wrapped twice: they then answer a coroutine.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from anyio import to_thread

P = ParamSpec("P")
T = TypeVar("T")


def in_thread(fn: Callable[P, T]) -> Callable[P, Awaitable[T]]:
    @functools.wraps(fn)
    async def run(*args: P.args, **kwargs: P.kwargs) -> T:
        return await to_thread.run_sync(functools.partial(fn, *args, **kwargs))

    return run
