"""Requests share the simulated machine: a FIFO queue in front of the engine's slots, on one timeline.

Simulated time starts at 0 when the scheduler is made and runs alongside the wall clock: a request
arriving w seconds later arrives at simulated time w. It starts on the slot that frees first, at
max(arrival, that slot's free time); its first token comes a prefill later and each next token one
decode step after that (the `lpu_s` of each `TokenEvent`). So `queue_time` is the wait a real LPU
system of the same partitioning would impose on the same arrivals, whatever speed this host computes at.

One host thread computes the tokens of all running requests in turn and hands them to the event loop.
With `pace="lpu"` a token is released no earlier than its simulated time (the stream shows the LPU's
speed when the host is faster); with `pace="host"` as soon as it is computed. A cancelled request (a
client gone) is dropped at its next step: its slot frees at the simulated time it had reached.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field

from openlpu.errors import UserError
from openlpu.runtime.engine import Engine, TokenEvent
from openlpu.runtime.sampling import SamplingParams

PACES = ("lpu", "host")


class Overloaded(Exception):
    """The waiting queue is full."""


@dataclass(frozen=True)
class TimedToken:
    event: TokenEvent
    lpu_time: float  # simulated seconds from the request's arrival to the end of this token's step
    host_time: float  # wall seconds from the request's arrival to this token being computed


@dataclass(frozen=True)
class _Failed:
    message: str
    user_error: bool  # bad input (400) rather than a fault of the server (500)


_DONE = object()  # posted after the last token (or after a failure)


@dataclass(eq=False)
class Ticket:
    """One request in the scheduler: iterate `tokens()`, read the times, `cancel()` if the client leaves."""

    prompt: list[int]
    params: SamplingParams
    arrival_sim: float
    arrival_wall: float
    _scheduler: Scheduler
    _loop: asyncio.AbstractEventLoop
    _inbox: asyncio.Queue = field(default_factory=asyncio.Queue)
    start_sim: float | None = None
    start_wall: float | None = None
    tokens_seen: list[TimedToken] = field(default_factory=list)
    _cancelled: bool = False
    _generator: Iterator[TokenEvent] | None = None
    _slot: int = -1
    _sim_clock: float = 0.0  # simulated time reached by this request's last step

    def cancel(self) -> None:
        self._cancelled = True
        self._scheduler._withdraw(self)

    async def tokens(self) -> AsyncIterator[TimedToken]:
        """The completion's tokens, paced as the scheduler says; raises UserError/RuntimeError on failure."""
        while True:
            item = await self._inbox.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise UserError(item.message) if item.user_error else RuntimeError(item.message)
            if self._scheduler.pace == "lpu":
                delay = self._scheduler.wall_of(self.arrival_sim + item.lpu_time) - self._scheduler.clock()
                if delay > 0:
                    await asyncio.sleep(delay)
            self.tokens_seen.append(item)
            yield item

    def usage_times(self) -> dict[str, float]:
        """Groq's timing fields on the simulated timeline: total_time = prompt_time + completion_time."""
        steps = [t.event.lpu_s for t in self.tokens_seen]
        return _times(self.start_sim - self.arrival_sim, steps)

    def host_times(self) -> dict[str, float]:
        """The same fields on this host's wall clock."""
        steps = [t.event.host_s for t in self.tokens_seen]
        return _times(self.start_wall - self.arrival_wall, steps)

    def _post(self, item) -> None:
        with contextlib.suppress(RuntimeError):  # the event loop is gone: nobody is listening
            self._loop.call_soon_threadsafe(self._inbox.put_nowait, item)


def _times(queue: float, steps: Sequence[float]) -> dict[str, float]:
    prompt, completion = (steps[0], sum(steps[1:])) if steps else (0.0, 0.0)
    return {"queue_time": queue, "prompt_time": prompt, "completion_time": completion,
            "total_time": prompt + completion}


class Timeline:
    """The slots of the simulated machine and when each frees. A request goes to the candidate slot that
    frees first and starts at max(its arrival, that time): the live scheduler places requests with it, and
    so does the simulated benchmark (openlpu.serve.simulate)."""

    def __init__(self, slots: int) -> None:
        self.free_at = [0.0] * slots

    def place(self, arrival: float, candidates: Sequence[int]) -> tuple[int, float]:
        slot = min(candidates, key=lambda s: (self.free_at[s], s))
        return slot, max(arrival, self.free_at[slot])

    def release(self, slot: int, at: float) -> None:
        self.free_at[slot] = at


class Scheduler:
    def __init__(self, engine: Engine, pace: str = "lpu", max_queue: int = 256,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if pace not in PACES:
            raise UserError(f"pace {pace!r} is unknown; use one of {', '.join(PACES)}")
        self.engine, self.pace, self.max_queue, self.clock = engine, pace, max_queue, clock
        self.origin = clock()  # the wall time of simulated time 0
        self._timeline = Timeline(engine.concurrency)
        self._running: dict[int, Ticket] = {}  # slot -> ticket
        self._waiting: deque[Ticket] = deque()
        self._lock = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.completed = 0
        self.engine_cpu_s = 0.0  # CPU seconds the engine spent computing tokens (what is not the server's cost)

    def wall_of(self, sim_time: float) -> float:
        return self.origin + sim_time

    def start(self) -> None:
        self._stopping = False
        self._thread = threading.Thread(target=self._work, name="openlpu-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify()
        if self._thread is not None:
            self._thread.join()
        for ticket in list(self._running.values()):
            self._release(ticket)

    def submit(self, prompt: Sequence[int], params: SamplingParams) -> Ticket:
        """Queue a request (from the event loop); raises Overloaded when the queue is full."""
        now = self.clock()
        ticket = Ticket(list(prompt), params, now - self.origin, now, self, asyncio.get_running_loop())
        with self._lock:
            if len(self._waiting) >= self.max_queue:
                raise Overloaded(f"{len(self._waiting)} requests are already waiting")
            self._waiting.append(ticket)
            self._lock.notify()
        return ticket

    def stats(self) -> dict[str, int | float]:
        with self._lock:
            return {"running": len(self._running), "waiting": len(self._waiting),
                    "slots": self.engine.concurrency, "completed": self.completed, "engine_cpu_s": self.engine_cpu_s}

    def _withdraw(self, ticket: Ticket) -> None:
        """A cancelled request leaves the queue at once; a running one at its next step."""
        with self._lock:
            if ticket in self._waiting:
                self._waiting.remove(ticket)
                ticket._post(_DONE)

    def _work(self) -> None:
        while True:
            with self._lock:
                self._admit()
                while not self._running and not self._stopping:
                    self._lock.wait()
                    self._admit()
                if self._stopping:
                    return
                running = list(self._running.values())
            for ticket in running:
                self._step(ticket)

    def _admit(self) -> None:
        """Give waiting requests (in arrival order) the free slots that free earliest on the timeline."""
        while self._waiting:
            free = [s for s in range(self.engine.concurrency) if s not in self._running]
            if not free:
                return
            ticket = self._waiting.popleft()
            ticket._slot, ticket.start_sim = self._timeline.place(ticket.arrival_sim, free)
            ticket._sim_clock = ticket.start_sim
            ticket.start_wall = self.clock()
            self._running[ticket._slot] = ticket

    def _step(self, ticket: Ticket) -> None:
        if ticket._cancelled:
            self._release(ticket)
            return
        cpu = time.thread_time()
        try:
            if ticket._generator is None:
                ticket._generator = self.engine.generate(ticket._slot, ticket.prompt, ticket.params)
            event = next(ticket._generator)
        except UserError as err:
            ticket._post(_Failed(str(err), user_error=True))
            self._release(ticket)
            return
        except Exception as err:  # a fault of the engine: the request fails, the server stays up
            ticket._post(_Failed(f"the engine failed: {type(err).__name__}: {err}", user_error=False))
            self._release(ticket)
            return
        finally:
            self.engine_cpu_s += time.thread_time() - cpu
        ticket._sim_clock += event.lpu_s
        ticket._post(TimedToken(event, ticket._sim_clock - ticket.arrival_sim, self.clock() - ticket.arrival_wall))
        if event.finish_reason:
            self._release(ticket, finished=True)

    def _release(self, ticket: Ticket, finished: bool = False) -> None:
        """Free the ticket's slot; a request cut short stops at the simulated time the wall clock reached."""
        if ticket._generator is not None:
            ticket._generator.close()  # drops the sequence's KV cache
        now = self.clock() - self.origin
        reached = ticket._sim_clock if finished else min(ticket._sim_clock, max(ticket.start_sim, now))
        with self._lock:
            if self._running.get(ticket._slot) is ticket:
                del self._running[ticket._slot]
                self._timeline.release(ticket._slot, reached)
                self.completed += finished
        ticket._post(_DONE)

