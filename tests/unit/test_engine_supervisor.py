"""The supervisor's rules with stand-in engines (pure logic; the real engines are killed in
tests/e2e/test_distributed_healing.py): backoff, reporting, requested restarts."""

from __future__ import annotations

from pathlib import Path

from services.distributed.supervisor import Backoff, Engine, Supervisor, done_file, request_file


def test_backoff_doubles_per_failure_caps_and_resets_after_a_stable_run() -> None:
    b = Backoff(initial=1.0, maximum=8.0, stable_after=60.0)
    b.started(0.0)
    assert [b.next_delay(1.0) for _ in range(5)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    b.started(100.0)
    assert b.next_delay(130.0) == 8.0  # not a minute yet: still at the cap
    b2 = Backoff(initial=1.0, maximum=8.0, stable_after=60.0, failures=3)
    b2.started(100.0)
    assert b2.next_delay(161.0) == 1.0  # ran a minute: a fresh failure starts over


class FakeEngine:
    def __init__(self) -> None:
        self.dead: str | None = None
        self.calls: list[str] = []
        self.fail_start = False

    def poll(self) -> str | None:
        return self.dead

    def stop(self) -> None:
        self.calls.append("stop")

    def start(self) -> None:
        self.calls.append("start")
        if self.fail_start:
            raise RuntimeError("port in use\nmore detail")
        self.dead = None


def _supervisor(tmp_path: Path, fake: FakeEngine, said: list[str]) -> tuple[Supervisor, Engine]:
    engine = Engine("kafka", fake.poll, fake.stop, fake.start, Backoff(initial=0.0))
    return Supervisor([engine], tmp_path, said.append), engine


def test_a_dead_engine_is_reported_and_restarted_a_live_one_left_alone(tmp_path: Path) -> None:
    fake, said = FakeEngine(), list[str]()
    sup, engine = _supervisor(tmp_path, fake, said)
    sup.check(engine)
    assert fake.calls == [] and said == []
    fake.dead = "killed by SIGKILL"
    sup.check(engine)
    assert fake.calls == ["stop", "start"]
    assert said[0].startswith("kafka died (killed by SIGKILL); restarting")
    assert said[-1].startswith("kafka restarted in")
    assert sup.restarts["kafka"] == 1


def test_a_failed_start_is_said_and_retried_with_a_longer_backoff(tmp_path: Path) -> None:
    fake, said = FakeEngine(), list[str]()
    sup, engine = _supervisor(tmp_path, fake, said)
    engine.backoff = Backoff(initial=0.0)
    fake.dead, fake.fail_start = "exit code 1", True
    sup.check(engine)
    assert said[-1] == "starting kafka failed: port in use"
    assert engine.backoff.failures == 1
    fake.dead = None  # a start that timed out may leave nothing to poll: it is retried all the same
    fake.fail_start = False
    sup.check(engine)
    assert engine.backoff.failures == 2 and fake.calls.count("start") == 2
    assert said[-2].startswith("kafka died (its last start failed)") and not engine.start_failed
    sup.check(engine)
    assert fake.calls.count("start") == 2


def test_a_requested_restart_stops_and_starts_at_once_and_writes_the_outcome(tmp_path: Path) -> None:
    fake, said = FakeEngine(), list[str]()
    sup, engine = _supervisor(tmp_path, fake, said)
    engine.backoff = Backoff(initial=3600.0)  # a request never waits for a backoff
    request_file(tmp_path, "kafka").touch()
    sup.check(engine)
    assert fake.calls == ["stop", "start"]
    assert not request_file(tmp_path, "kafka").exists()
    assert done_file(tmp_path, "kafka").read_text() == "ok"
    assert said[0] == "restarting kafka (requested) ..."


def test_supervision_start_drops_a_request_left_from_an_earlier_run(tmp_path: Path) -> None:
    fake, said = FakeEngine(), list[str]()
    sup, _ = _supervisor(tmp_path, fake, said)
    request_file(tmp_path, "kafka").touch()
    sup.start()
    sup.stop()
    assert not request_file(tmp_path, "kafka").exists() and fake.calls == []
