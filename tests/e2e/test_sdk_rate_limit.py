"""The SDK under the API's rate limits (a server of its own with small budgets): a 429 ``rate_limited``
is a typed error carrying Retry-After; the retry policy waits exactly that long and then succeeds; a
command without an Idempotency-Key is never sent again. Sync and async."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
from agentflow_client import NO_RETRIES, AsyncClient, Client, RateLimited, RetryPolicy
from agentflow_process import AgentFlowProcess

from e2e.conftest import limited_server

KEY = "limited-key"
READ_RPM, WRITE_RPM = 60, 10


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentFlowProcess]:
    data_dir = tmp_path_factory.mktemp("agentflow-limits")
    with limited_server(data_dir, f"{KEY}:tenant-l", READ_RPM, WRITE_RPM) as srv:
        yield srv


class Waits:
    """A client's ``sleep``: records each wait, and really waits unless ``wait`` is false."""

    def __init__(self, wait: bool = True) -> None:
        self.seconds: list[float] = []
        self.wait = wait
        self._pause = threading.Event()  # never set: wait() is the pause itself

    def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)
        if self.wait:
            self._pause.wait(seconds)

    async def asleep(self, seconds: float) -> None:
        self.seconds.append(seconds)
        if self.wait:
            await asyncio.sleep(seconds)


def _exhaust_reads(base: str) -> RateLimited:
    with Client(base, KEY, retry=NO_RETRIES) as api:
        for _ in range(READ_RPM * 3):
            try:
                api.catalog()
            except RateLimited as exc:
                return exc
    raise AssertionError("the read budget never ran out")


def _check_refusal(refused: RateLimited) -> None:
    assert refused.status == 429 and refused.code == "rate_limited" and refused.request_id
    assert refused.retry_after is not None and refused.retry_after >= 1


def test_a_429_is_waited_out_as_retry_after_says(limited: AgentFlowProcess) -> None:
    _check_refusal(_exhaust_reads(limited.base))
    waits = Waits()
    with Client(limited.base, KEY, sleep=waits, retry=RetryPolicy(max_retries=3)) as api:
        assert api.catalog().metrics["revenue"].unit
        assert api.rate_limit is not None and api.rate_limit.limit == READ_RPM  # X-RateLimit-* of the answer
    assert waits.seconds and all(s >= 1 and s == int(s) for s in waits.seconds)  # Retry-After, not backoff


def test_commands_are_retried_only_with_their_key(limited: AgentFlowProcess) -> None:
    waits = Waits(wait=False)
    with Client(limited.base, KEY, retry=RetryPolicy(max_retries=1), sleep=waits) as api:
        with pytest.raises(RateLimited):
            for _ in range(WRITE_RPM * 3):
                api.register_user(idempotency_key=False)
        assert waits.seconds == []  # refused without a key: raised at once, never sent again
        with pytest.raises(RateLimited) as caught:
            api.register_user()
        assert len(waits.seconds) == 1 and waits.seconds[0] == caught.value.retry_after


def test_async_client_waits_out_a_429(limited: AgentFlowProcess) -> None:
    _check_refusal(_exhaust_reads(limited.base))
    waits = Waits()

    async def scenario() -> None:
        patient = RetryPolicy(max_retries=3)
        async with AsyncClient(limited.base, KEY, sleep=waits.asleep, retry=patient) as api:
            assert (await api.catalog()).metrics["revenue"].unit
        async with AsyncClient(limited.base, KEY, retry=NO_RETRIES) as api:
            with pytest.raises(RateLimited):
                for _ in range(WRITE_RPM * 3):
                    await api.register_user(idempotency_key=False)

    asyncio.run(scenario())
    assert waits.seconds and all(s >= 1 and s == int(s) for s in waits.seconds)
