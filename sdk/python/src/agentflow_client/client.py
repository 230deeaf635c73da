"""The synchronous client: ``Client(url, api_key)``; every endpoint of :mod:`agentflow_client.calls` is a
method, ``stream_events`` tails the SSE stream, ``session()`` reads its own writes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, Concatenate, ParamSpec, TypeVar

import httpx

from agentflow_client import calls
from agentflow_client._base import DEFAULT_TIMEOUT, DEFAULT_URL, ClientBase, Retry
from agentflow_client.calls import Call
from agentflow_client.errors import Timeout, TransportError
from agentflow_client.retry import RetryPolicy
from agentflow_client.sse import SseParser, stream_params
from agentflow_client.types import StreamEvent

P = ParamSpec("P")
T = TypeVar("T")


def _run(build: Callable[P, Call[T]]) -> Callable[Concatenate[Any, P], T]:
    def method(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self.run(build(*args, **kwargs))

    method.__name__, method.__doc__ = build.__name__, build.__doc__
    return method


class Client(ClientBase):
    def __init__(
        self, base_url: str = DEFAULT_URL, api_key: str | None = None, *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT, retry: RetryPolicy | None = None,
        headers: dict[str, str] | None = None, transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:  # fmt: skip
        super().__init__(base_url, api_key, timeout, retry or RetryPolicy(), headers)
        self._http = httpx.Client(base_url=self.base_url, headers=self._headers, timeout=self.timeout,
                                  transport=transport)  # fmt: skip
        self._sleep = sleep

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def session(self) -> Session:
        """A view of this client that remembers the last position its commands wrote and passes it as
        ``min_position`` to every read that takes one (it shares this client's connections)."""
        return Session(self)

    def run(self, call: Call[T]) -> T:
        """Send one call with the retry policy; its typed result or a typed error."""
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._http.request(**self._request_args(call))
            except httpx.TransportError as exc:
                wait = self._retry_lost(call, attempt)
                if wait is None:
                    raise (Timeout if isinstance(exc, httpx.TimeoutException) else TransportError)(
                        f"{call.method} {call.path}: {exc!r}"
                    ) from exc
                self._sleep(wait)
                continue
            outcome = self._outcome(call, response, attempt)
            if not isinstance(outcome, Retry):
                return outcome
            self._sleep(outcome.seconds)

    def stream_events(
        self, *, event_type: str | list[str] | None = None, entity_type: str | None = None,
        entity_id: str | None = None, last_event_id: int | None = None, max_events: int | None = None,
        heartbeat: float | None = None, reconnect: bool = True, max_reconnects: int = 10,
    ) -> EventStream:
        """``GET /v1/stream/events`` as an iterator of :class:`StreamEvent`, resuming after
        ``last_event_id``; a dropped connection is reopened with ``Last-Event-ID`` (after the server's
        ``retry`` delay) unless ``reconnect`` is false. ``max_events`` ends it after that many events."""
        params = stream_params(event_type, entity_type, entity_id, heartbeat, None)
        return EventStream(self, params, last_event_id, max_events, reconnect, max_reconnects, heartbeat)

    metric = _run(calls.metric)
    entity = _run(calls.entity)
    timeline = _run(calls.timeline)
    query = _run(calls.query)
    search = _run(calls.search)
    catalog = _run(calls.catalog)
    health = _run(calls.health)
    whoami = _run(calls.whoami)
    deadletters = _run(calls.deadletters)
    deadletter = _run(calls.deadletter)
    replay_deadletter = _run(calls.replay_deadletter)
    dismiss_deadletter = _run(calls.dismiss_deadletter)
    register_user = _run(calls.register_user)
    register_product = _run(calls.register_product)
    restock_product = _run(calls.restock_product)
    reserve_stock = _run(calls.reserve_stock)
    release_stock = _run(calls.release_stock)
    adjust_stock = _run(calls.adjust_stock)
    change_price = _run(calls.change_price)
    place_order = _run(calls.place_order)
    confirm_order = _run(calls.confirm_order)
    ship_order = _run(calls.ship_order)
    deliver_order = _run(calls.deliver_order)
    cancel_order = _run(calls.cancel_order)
    refund_order = _run(calls.refund_order)
    initiate_payment = _run(calls.initiate_payment)
    complete_payment = _run(calls.complete_payment)
    fail_payment = _run(calls.fail_payment)
    refund_payment = _run(calls.refund_payment)
    record_session_event = _run(calls.record_session_event)


class Session(Client):
    """``client.session()``: reads wait for this session's own writes."""

    tracks_position = True

    def __init__(self, parent: Client) -> None:  # noqa: D107 -- shares the parent's connections
        self.__dict__.update(parent.__dict__)
        self.position = 0

    def close(self) -> None:
        """The parent owns the connections."""


class EventStream:
    """Iterate for events; ``last_event_id`` is the resume point, ``reconnects`` how often it reopened."""

    def __init__(
        self, client: Client, params: dict[str, Any], last_event_id: int | None, max_events: int | None,
        reconnect: bool, max_reconnects: int, heartbeat: float | None,
    ) -> None:  # fmt: skip
        self._client = client
        self._params = params
        self._parser = SseParser(last_event_id)
        self._left = max_events
        self._reconnect = reconnect
        self._max_reconnects = max_reconnects
        self._timeout = client.timeout.read if heartbeat is None else max(3 * heartbeat, 5.0)
        self.reconnects = 0
        self._response: httpx.Response | None = None
        self._closed = False

    @property
    def last_event_id(self) -> int | None:
        return self._parser.last_event_id

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True
        if self._response is not None:
            self._response.close()

    def __iter__(self) -> Iterator[StreamEvent]:
        failures = 0
        while not self._closed and self._left != 0:
            try:
                for event in self._connection():
                    failures = 0
                    yield event
                    if self._left is not None:
                        self._left -= 1
                        if self._left == 0:
                            break
            except httpx.TransportError as exc:  # dropped: reopen after the last id (an API error is raised)
                failures += 1
                if self._closed or not self._reconnect or failures > self._max_reconnects:
                    raise TransportError(f"event stream: {exc!r}") from exc
            else:
                if self._closed or self._left == 0 or not self._reconnect:
                    break
            self.reconnects += 1
            self._client._sleep(self._parser.retry_s)
        self.close()

    def _connection(self) -> Iterator[StreamEvent]:
        headers = {"Accept": "text/event-stream"}
        if self._parser.last_event_id is not None:
            headers["Last-Event-ID"] = str(self._parser.last_event_id)
        params = dict(self._params)
        if self._left is not None:
            params["max_events"] = self._left
        timeout = httpx.Timeout(self._client.timeout.connect, read=self._timeout)
        attempt = 0
        while True:  # 429 too_many_streams / 503: after Retry-After, as every request
            attempt += 1
            request = self._client._http.build_request("GET", "/v1/stream/events", params=params,
                                                       headers=headers, timeout=timeout)  # fmt: skip
            response = self._client._http.send(request, stream=True)
            if response.status_code < 400:
                break
            response.read()
            outcome = self._client._outcome(Call("GET", "/v1/stream/events", dict), response, attempt)
            assert isinstance(outcome, Retry)
            self._client._sleep(outcome.seconds)
        self._response = response
        try:
            for line in response.iter_lines():
                event = self._parser.feed(line)
                if event is not None:
                    yield event
        finally:
            response.close()
            self._response = None
