"""LPU seconds of the served model's steps, read from its compiled programs.

The serving engine (reference_engine.py) runs a sequence the way the LPU engine does (lpu_engine.py): the
prompt in steps of `prefill_tokens` rows (the last one padded; a one-token prompt takes the decode step),
then a decode step per new token, each the step graph of models/lpu_graph.py compiled for one chip with
the KV cache padded to a bucket of `cache_bucket` slots (the bucket of the tokens cached after the step) and
pinned as the LPU engine pins it (regions of `cache_slots` rows, doubled for a bucket past them). A
compiled program's cycles do not depend on its data (docs/lpu.md), so each (rows, bucket) step is compiled
once and its cycles give every step of that shape.
The cycles are a run's, the end of its last result (the fast executor's static plan of the program,
which every run of it reports), and seconds are cycles / the chip's clock.

Compiling SmolLM2's decode step takes ~28 s on a quiet 2-core machine and a long context needs programs
per 64 slots, so compiling every shape at start would take hours. Each is compiled when a step first
needs it (or by `warm`), and its cycles are kept on disk under ~/.cache/openlpu/step-cycles, keyed by a
hash of everything they depend on: the model file, the numerics, the chip spec, the cache's regions, the
step's shape and the source of the packages that build, compile and plan the program. A later server starts with them.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import openlpu
from openlpu.chip.spec import ChipSpec, get_chip
from openlpu.compiler.compile import compile, pin_states
from openlpu.errors import UserError
from openlpu.models.lpu_graph import build_step_graph, check_numerics
from openlpu.models.registry import LoadedModel
from openlpu.models.sampling_graph import SAMPLING
from openlpu.runtime.lpu_engine import PREFILL_TOKENS, bucket_of, region_slots
from openlpu.sim.fast import plan_for

SCHEDULE_PACKAGES = ("chip", "compiler", "models", "sim")  # the code a step's cycles depend on


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "openlpu" / "step-cycles"


@lru_cache(maxsize=1)
def _source_digest() -> str:
    root = Path(openlpu.__file__).parent
    h = hashlib.sha256()
    for package in SCHEDULE_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class StepProgram:
    """What is kept of one compiled step: its cycles (the program itself is dropped)."""

    tokens: int  # rows of the step: 1 for decode, `prefill_tokens` for a prompt's steps
    cache_len: int
    sampling: str  # how its `next` chooses a token: one of models/sampling_graph.py's SAMPLING
    cycles: int  # a run's cycles, whatever the data
    cycles_scheduled: int  # the last instruction's issue cycle
    compile_s: float  # host seconds to build, compile and plan it (on the machine that did)


class CompiledTiming:
    """`LpuTiming` of the served model: each step's seconds are its compiled program's cycles / clock."""

    kind = "compiled"

    def __init__(self, model: LoadedModel, numerics: str = "int8", chip: str | ChipSpec = "tsp-v1",
                 cache_bucket: int = 64, cache_dir: Path | None = None,
                 prefill_tokens: int = PREFILL_TOKENS, cache_slots: int | None = None) -> None:
        if cache_bucket < 1 or prefill_tokens < 1:
            raise UserError(f"cache bucket {cache_bucket} and prefill tokens {prefill_tokens} must be at least 1")
        self.model, self.numerics, self.chip = model, check_numerics(numerics), get_chip(chip)
        self.cache_bucket, self.prefill_tokens = cache_bucket, prefill_tokens
        self.cache_slots = cache_slots or cache_bucket  # the KV cache's pinned regions, as LpuEngine's
        self.cache_dir = default_cache_dir() if cache_dir is None else cache_dir
        self._key = hashlib.sha256(json.dumps([_file_digest(model.path), self.numerics, repr(self.chip),
                                               self.cache_slots, _source_digest()]).encode()).hexdigest()
        self._programs: dict[tuple[int, int, str], StepProgram] = {}
        self._lock = threading.Lock()
        self._compiling: dict[tuple[int, int, str], threading.Lock] = {}  # one lock per shape: each compiled once

    @property
    def source(self) -> str:
        prompt = "" if self.prefill_tokens == 1 else f"{self.prefill_tokens}-token prefill and "
        return (f"cycles of {Path(self.model.name).stem}'s {self.numerics} {prompt}decode steps compiled for one "
                f"{self.chip.name} (a program per {self.cache_bucket}-slot cache bucket) at "
                f"{self.chip.clock_hz / 1e6:g} MHz")

    def bucket(self, tokens: int) -> int:
        """Cache slots of a step that leaves `tokens` tokens cached."""
        return bucket_of(tokens, self.cache_bucket)

    def compiled(self) -> dict[str, int]:
        """Cycles of the steps known so far, by shape: "1x64" is the greedy decode step against 64 cache slots,
        "1x64 nucleus" the one that samples within the top-p nucleus."""
        with self._lock:
            return {f"{t}x{n}" + (f" {m}" if m != "greedy" else ""): p.cycles
                    for (t, n, m), p in sorted(self._programs.items())}

    def step(self, cache_len: int, tokens: int = 1, sampling: str = "greedy") -> StepProgram:
        """The step program of this shape and sampling mode: from memory, from disk, or compiled now."""
        shape = (tokens, cache_len, sampling)
        with self._lock:
            if shape in self._programs:
                return self._programs[shape]
            lock = self._compiling.setdefault(shape, threading.Lock())
        with lock:
            with self._lock:
                if shape in self._programs:
                    return self._programs[shape]
            program = self._load(shape) or self._compile(shape)
            with self._lock:
                self._programs[shape] = program
            return program

    def prefill_steps(self, prompt_tokens: int) -> list[tuple[int, int]]:
        """The (rows, cache slots) of a prompt's steps, in order."""
        rows = 1 if prompt_tokens == 1 else self.prefill_tokens
        return [(rows, self.bucket(position + rows)) for position in range(0, prompt_tokens, rows)]

    def prefill_seconds(self, prompt_tokens: int, sampling: str = "greedy") -> float:
        """The prompt's steps; only the last, whose choice is the first token, samples (as LpuEngine's)."""
        if prompt_tokens < 1:
            raise UserError(f"a prefill of {prompt_tokens} tokens is empty; give a prompt of at least one token")
        *steps, (rows, cache_len) = self.prefill_steps(prompt_tokens)
        cycles = sum(n * self.step(c, r).cycles for (r, c), n in Counter(steps).items())
        return (cycles + self.step(cache_len, rows, sampling).cycles) / self.chip.clock_hz

    def decode_seconds(self, context: int, sampling: str = "greedy") -> float:
        return self.step(self.bucket(context), 1, sampling).cycles / self.chip.clock_hz

    def warm(self, tokens: int, on_step: Callable[[StepProgram, int, int], None] = lambda p, i, n: None,
             modes: tuple[str, ...] = SAMPLING) -> None:
        """Make sure the steps of sequences up to `tokens` long are known in each sampling mode, shortest cache
        first (a request's default temperature of 1 samples, so greedy programs alone would leave it waiting);
        the nucleus programs, for the rarer requests with a top_p, after all the others."""
        tokens = min(tokens, self.model.config.context)
        shapes = {(1, self.bucket(cached)) for cached in range(1, tokens)}  # a decode step leaves at most tokens - 1
        shapes |= set(self.prefill_steps(tokens))
        order = sorted(((rows, cache_len, mode) for rows, cache_len in shapes for mode in modes),
                       key=lambda shape: (shape[2] == "nucleus", shape[1], shape[0], SAMPLING.index(shape[2])))
        for i, (rows, cache_len, mode) in enumerate(order):
            on_step(self.step(cache_len, rows, mode), i + 1, len(order))

    def _path(self, shape: tuple[int, int, str]) -> Path:
        return self.cache_dir / f"{self._key[:32]}-{shape[0]}x{shape[1]}-{shape[2]}.json"

    def _load(self, shape: tuple[int, int, str]) -> StepProgram | None:
        try:
            return StepProgram(**json.loads(self._path(shape).read_text()))
        except (OSError, ValueError, TypeError):  # not there yet, or unreadable: compile it again
            return None

    def _compile(self, shape: tuple[int, int, str]) -> StepProgram:
        tokens, cache_len, sampling = shape
        start = time.perf_counter()
        graph = build_step_graph(self.model.config, self.model.weights, self.numerics, tokens, cache_len, self.chip,
                                 sampling=sampling)
        slots = region_slots(cache_len, self.cache_bucket, self.cache_slots)
        compiled = compile(graph, self.chip, check=False, states=pin_states(graph, self.chip, slots))
        program = StepProgram(tokens, cache_len, sampling, plan_for(compiled.program).cycles,
                              compiled.cycles_scheduled, time.perf_counter() - start)
        path = self._path(shape)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(f".{os.getpid()}.tmp")
            partial.write_text(json.dumps(asdict(program)))
            partial.replace(path)  # whole or not at all, for other servers reading the same cache
        except OSError:  # a read-only home: the cycles stay in memory for this run
            pass
        return program
