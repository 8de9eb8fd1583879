"""The scheduler on a simulated timeline, driven by an engine whose step times are known exactly."""

import asyncio
import time

import pytest

from openlpu.errors import UserError
from openlpu.runtime.engine import FINISH_LENGTH, Engine, TokenEvent
from openlpu.runtime.sampling import SamplingParams
from openlpu.serve.scheduler import Overloaded, Scheduler

PREFILL, DECODE = 1.0, 0.5


class FakeTiming:
    kind = "test"

    def prefill_seconds(self, prompt_tokens, sampling="greedy"):
        return PREFILL

    def decode_seconds(self, context, sampling="greedy"):
        return DECODE


class FakeEngine(Engine):
    """`max_tokens` tokens (default 3), no computing; remembers how many steps ran and which were closed."""

    model_id, aliases, context_length, timing = "fake-64", frozenset(), 64, FakeTiming()

    def __init__(self, concurrency=1, fail_at=None):
        self.concurrency, self.fail_at = concurrency, fail_at
        self.steps, self.closed = 0, 0

    def prompt_ids(self, messages):
        return [1, 2, 3]

    def generate(self, slot, prompt, params):
        n = params.max_tokens or 3
        try:
            for i in range(n):
                if i == self.fail_at:
                    raise UserError("the fake engine refuses this token")
                self.steps += 1
                lpu = PREFILL if i == 0 else DECODE
                yield TokenEvent(i, 100 + i, f"t{i} ", lpu, 0.0, FINISH_LENGTH if i == n - 1 else None)
        finally:
            self.closed += 1


class FrozenClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


async def _drain(ticket):
    return [t async for t in ticket.tokens()]


async def _run_all(scheduler, n):
    tickets = [scheduler.submit([1, 2, 3], SamplingParams()) for _ in range(n)]
    await asyncio.gather(*(_drain(t) for t in tickets))
    return tickets


def _with_scheduler(engine, scenario, **kwargs):
    scheduler = Scheduler(engine, **kwargs)
    scheduler.start()
    try:
        return asyncio.run(scenario(scheduler))
    finally:
        scheduler.stop()


def test_requests_arriving_together_queue_one_after_another_on_one_slot():
    busy = PREFILL + 2 * DECODE  # each request: a prefill and two decode steps
    tickets = _with_scheduler(FakeEngine(1), lambda s: _run_all(s, 3), pace="host", clock=FrozenClock())
    assert [t.usage_times()["queue_time"] for t in tickets] == [0.0, busy, 2 * busy]
    assert all(t.usage_times() == {"queue_time": t.usage_times()["queue_time"], "prompt_time": PREFILL,
                                   "completion_time": 2 * DECODE, "total_time": busy} for t in tickets)
    # token times count from the request's arrival: the third waits two requests, then runs its own steps
    assert [tok.lpu_time for tok in tickets[2].tokens_seen] == [2 * busy + 1.0, 2 * busy + 1.5, 2 * busy + 2.0]


def test_two_slots_run_two_requests_at_once():
    busy = PREFILL + 2 * DECODE
    tickets = _with_scheduler(FakeEngine(2), lambda s: _run_all(s, 5), pace="host", clock=FrozenClock())
    assert [t.usage_times()["queue_time"] for t in tickets] == [0.0, 0.0, busy, busy, 2 * busy]


def test_a_request_arriving_after_the_slot_frees_does_not_wait():
    clock = FrozenClock()

    async def scenario(s):
        first = s.submit([1], SamplingParams())
        await _drain(first)
        clock.now = 10.0  # the first request ended at simulated time 2.0
        second = s.submit([1], SamplingParams())
        await _drain(second)
        return first, second

    first, second = _with_scheduler(FakeEngine(1), scenario, pace="host", clock=clock)
    assert second.arrival_sim == 10.0 and second.start_sim == 10.0
    assert second.usage_times()["queue_time"] == 0.0


def test_lpu_pace_releases_no_token_before_its_simulated_time():
    scale = 0.02  # a fast fake: 20 ms prefill, 10 ms per decode step, on the real clock

    class Scaled(FakeEngine):
        def generate(self, slot, prompt, params):
            for e in super().generate(slot, prompt, params):
                yield TokenEvent(e.index, e.token_id, e.text, e.lpu_s * scale, 0.0, e.finish_reason)

    async def scenario(s):
        ticket = s.submit([1], SamplingParams(max_tokens=5))
        arrivals = []
        async for tok in ticket.tokens():
            arrivals.append((time.monotonic(), s.wall_of(ticket.arrival_sim + tok.lpu_time)))
        return arrivals

    arrivals = _with_scheduler(Scaled(1), scenario, pace="lpu")
    assert len(arrivals) == 5
    assert all(wall >= due - 1e-3 for wall, due in arrivals)
    assert arrivals[-1][1] - arrivals[0][1] == pytest.approx(4 * DECODE * scale)


def test_a_cancelled_request_frees_its_slot_and_stops_its_work():
    engine = FakeEngine(1)

    async def scenario(s):
        long = s.submit([1], SamplingParams(max_tokens=10_000))
        waiting = s.submit([1], SamplingParams())
        gone = s.submit([1], SamplingParams())
        gone.cancel()  # leaves the queue at once, before the slot frees
        assert await _drain(gone) == []  # the long request still holds the only slot
        async for _ in long.tokens():
            long.cancel()  # the client left after the first token
        return await _drain(waiting)

    scheduler = Scheduler(engine, pace="host")
    scheduler.start()
    try:
        tokens = asyncio.run(scenario(scheduler))
        assert len(tokens) == 3
        assert engine.steps < 10_000 and engine.closed == 2
        stats = scheduler.stats()
        assert stats.pop("engine_cpu_s") >= 0
        assert stats == {"running": 0, "waiting": 0, "slots": 1, "completed": 1}
    finally:
        scheduler.stop()


def test_an_engine_failure_reaches_the_request_and_frees_the_slot():
    engine = FakeEngine(1, fail_at=1)

    async def scenario(s):
        ticket = s.submit([1], SamplingParams())
        with pytest.raises(UserError, match="refuses"):
            await _drain(ticket)
        return ticket

    scheduler = Scheduler(engine, pace="host")
    scheduler.start()
    try:
        ticket = asyncio.run(scenario(scheduler))
        assert len(ticket.tokens_seen) == 1 and scheduler.stats()["running"] == 0
    finally:
        scheduler.stop()


def test_a_full_queue_refuses_more():
    scheduler = Scheduler(FakeEngine(1), pace="host", max_queue=2)  # not started: nothing leaves the queue

    async def scenario():
        scheduler.submit([1], SamplingParams())
        scheduler.submit([1], SamplingParams())
        with pytest.raises(Overloaded):
            scheduler.submit([1], SamplingParams())

    asyncio.run(scenario())


def test_an_unknown_pace_is_refused():
    with pytest.raises(UserError, match="pace 'fast'"):
        Scheduler(FakeEngine(1), pace="fast")
