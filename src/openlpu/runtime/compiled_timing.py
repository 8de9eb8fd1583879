"""LPU seconds of the served model's steps, read from its compiled programs.

The serving engine (reference_engine.py) runs a sequence the way the LPU engine does (lpu_engine.py, with
one token a step): every token, prompt tokens included, goes through the decode step, the step graph of
models/lpu_graph.py compiled for one chip with the KV cache padded to a bucket of `cache_bucket` slots.
A compiled program's cycles do not depend on its data (docs/lpu.md), so each bucket's step is compiled
once and its cycles give every step at that bucket: a prefill of P tokens is P steps, a decode step one.
The cycles are a run's, the end of its last result (the fast executor's static plan of the program,
which every run of it reports), and seconds are cycles / the chip's clock.

Compiling SmolLM2's decode step takes ~28 s on a 2-core machine and a long context needs one program per
64 slots, so compiling every bucket at start would take an hour. Each bucket is compiled when a step
first needs it (or by `warm`), and its cycles are kept on disk under ~/.cache/openlpu/step-cycles, keyed
by a hash of everything they depend on: the model file, the numerics, the chip spec, the cache length
and the source of the packages that build, compile and plan the program. A later server starts with them.
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
from openlpu.compiler.compile import compile
from openlpu.errors import UserError
from openlpu.models.lpu_graph import build_step_graph, check_numerics
from openlpu.models.registry import LoadedModel
from openlpu.sim.fast import plan_for

SCHEDULE_PACKAGES = ("chip", "compiler", "models", "sim")  # the code a step's cycles depend on


def bucket_of(position: int, cache_bucket: int) -> int:
    """Cache slots of the step whose token sits at `position`: the cache padded as lpu_engine.LpuEngine pads it."""
    return cache_bucket * max(1, -(-position // cache_bucket))


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

    cache_len: int
    cycles: int  # a run's cycles, whatever the data
    cycles_scheduled: int  # the last instruction's issue cycle
    compile_s: float  # host seconds to build, compile and plan it (on the machine that did)


class CompiledTiming:
    """`LpuTiming` of the served model: each step's seconds are its compiled program's cycles / clock."""

    kind = "compiled"

    def __init__(self, model: LoadedModel, numerics: str = "int8", chip: str | ChipSpec = "tsp-v1",
                 cache_bucket: int = 64, cache_dir: Path | None = None) -> None:
        if cache_bucket < 1:
            raise UserError(f"cache bucket {cache_bucket} is not a number of slots; give 1 or more")
        self.model, self.numerics, self.chip = model, check_numerics(numerics), get_chip(chip)
        self.cache_bucket = cache_bucket
        self.cache_dir = default_cache_dir() if cache_dir is None else cache_dir
        self._key = hashlib.sha256(json.dumps([_file_digest(model.path), self.numerics, repr(self.chip),
                                               _source_digest()]).encode()).hexdigest()
        self._programs: dict[int, StepProgram] = {}
        self._lock = threading.Lock()
        self._compiling: dict[int, threading.Lock] = {}  # one lock per bucket: each is compiled once

    @property
    def source(self) -> str:
        return (f"cycles of {Path(self.model.name).stem}'s {self.numerics} decode step compiled for one "
                f"{self.chip.name} (a program per {self.cache_bucket}-slot cache bucket) at "
                f"{self.chip.clock_hz / 1e6:g} MHz")

    def bucket(self, position: int) -> int:
        return bucket_of(position, self.cache_bucket)

    def compiled(self) -> dict[int, int]:
        """Cycles of the steps known so far, by cache length."""
        with self._lock:
            return {n: p.cycles for n, p in sorted(self._programs.items())}

    def step(self, cache_len: int) -> StepProgram:
        """The step program for this cache length: from memory, from disk, or compiled now."""
        with self._lock:
            if cache_len in self._programs:
                return self._programs[cache_len]
            lock = self._compiling.setdefault(cache_len, threading.Lock())
        with lock:
            with self._lock:
                if cache_len in self._programs:
                    return self._programs[cache_len]
            program = self._load(cache_len) or self._compile(cache_len)
            with self._lock:
                self._programs[cache_len] = program
            return program

    def prefill_seconds(self, prompt_tokens: int) -> float:
        if prompt_tokens < 1:
            raise UserError(f"a prefill of {prompt_tokens} tokens is empty; give a prompt of at least one token")
        steps = Counter(self.bucket(position) for position in range(prompt_tokens))
        return sum(n * self.step(cache_len).cycles for cache_len, n in steps.items()) / self.chip.clock_hz

    def decode_seconds(self, context: int) -> float:
        return self.step(self.bucket(context - 1)).cycles / self.chip.clock_hz

    def warm(self, tokens: int, on_step: Callable[[StepProgram, int, int], None] = lambda p, i, n: None) -> None:
        """Make sure the steps of sequences up to `tokens` long are known, shortest cache first."""
        lengths = sorted({self.bucket(position) for position in range(min(tokens, self.model.config.context))})
        for i, cache_len in enumerate(lengths):
            on_step(self.step(cache_len), i + 1, len(lengths))

    def _path(self, cache_len: int) -> Path:
        return self.cache_dir / f"{self._key[:32]}-{cache_len}.json"

    def _load(self, cache_len: int) -> StepProgram | None:
        try:
            return StepProgram(**json.loads(self._path(cache_len).read_text()))
        except (OSError, ValueError, TypeError):  # not there yet, or unreadable: compile it again
            return None

    def _compile(self, cache_len: int) -> StepProgram:
        start = time.perf_counter()
        graph = build_step_graph(self.model.config, self.model.weights, self.numerics, 1, cache_len, self.chip)
        compiled = compile(graph, self.chip, check=False)
        program = StepProgram(cache_len, plan_for(compiled.program).cycles, compiled.cycles_scheduled,
                              time.perf_counter() - start)
        path = self._path(cache_len)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(f".{os.getpid()}.tmp")
            partial.write_text(json.dumps(asdict(program)))
            partial.replace(path)  # whole or not at all, for other servers reading the same cache
        except OSError:  # a read-only home: the cycles stay in memory for this run
            pass
        return program
