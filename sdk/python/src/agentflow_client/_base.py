"""What the sync and async clients share: the target, the key, headers, the retry policy, how a
:class:`~agentflow_client.calls.Call` becomes a request and an answer becomes a result or an error,
and the position a session remembers."""

from __future__ import annotations

from typing import Any, TypeVar

import httpx
import msgspec

from agentflow_client.calls import Call
from agentflow_client.errors import ApiError, api_error
from agentflow_client.retry import RetryPolicy, parse_retry_after

T = TypeVar("T")
DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = 30.0
USER_AGENT = "agentflow-client-python/0.1"
_encode = msgspec.json.Encoder().encode


class RateLimit(msgspec.Struct, frozen=True):
    """The key's budget as the last answer's ``X-RateLimit-*`` headers told it."""

    limit: int
    remaining: int
    reset: int  # unix seconds by which the whole budget is back


def rate_limit_of(headers: httpx.Headers) -> RateLimit | None:
    try:
        return RateLimit(int(headers["x-ratelimit-limit"]), int(headers["x-ratelimit-remaining"]),
                         int(headers["x-ratelimit-reset"]))  # fmt: skip
    except (KeyError, ValueError):
        return None


class Retry:
    """The verdict on one answer: wait ``seconds`` and send again."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds


class ClientBase:
    tracks_position = False

    def __init__(
        self, base_url: str, api_key: str | None, timeout: float | httpx.Timeout, retry: RetryPolicy,
        headers: dict[str, str] | None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self.retry = retry
        self.position = 0  # the last position this client's commands wrote (a session reads after it)
        self.rate_limit: RateLimit | None = None  # from the last answer that carried X-RateLimit-*
        self._headers = {"User-Agent": USER_AGENT, "Accept": "application/json", **(headers or {})}
        if api_key:
            self._headers["X-API-Key"] = api_key

    def _request_args(self, call: Call[Any]) -> dict[str, Any]:
        params = dict(call.params)
        if self.tracks_position and call.consistent and "min_position" not in params and self.position:
            params["min_position"] = self.position
        headers: dict[str, str] = {}
        if call.idempotency_key is not None:
            headers["Idempotency-Key"] = call.idempotency_key
        if call.if_match is not None:
            headers["If-Match"] = str(call.if_match)
        args: dict[str, Any] = {"method": call.method, "url": call.path, "params": params, "headers": headers}
        if call.method != "GET":
            args["content"] = b"" if call.body is None else _encode(call.body)
            headers["Content-Type"] = "application/json"
        return args

    def _outcome(self, call: Call[T], response: httpx.Response, attempt: int) -> T | Retry:
        """The decoded result, a :class:`Retry`, or raises the typed error."""
        self.rate_limit = rate_limit_of(response.headers) or self.rate_limit
        if response.status_code < 400:
            result = msgspec.json.decode(response.content, type=call.result)
            self._observe(result)
            return result
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        if response.status_code in self.retry.statuses and call.retryable:
            wait = self.retry.delay(attempt, retry_after)
            if wait is not None:
                return Retry(wait)
        raise self._error(call, response, retry_after)

    def _error(self, call: Call[Any], response: httpx.Response, retry_after: float | None) -> ApiError:
        return api_error(response.status_code, response.content, response.headers, retry_after, call.method,
                         call.path)  # fmt: skip

    def _retry_lost(self, call: Call[Any], attempt: int) -> float | None:
        """After a lost connection: the wait before sending again, or None (not safe, or out of tries)."""
        if not (call.read or call.idempotency_key is not None):
            return None
        return self.retry.delay(attempt, None)

    def _observe(self, result: Any) -> None:
        position = getattr(result, "position", None)
        if isinstance(position, int) and getattr(result, "stream_version", None) is not None:
            self.position = max(self.position, position)
