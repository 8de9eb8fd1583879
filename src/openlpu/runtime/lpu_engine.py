"""Greedy generation with the llama step graph (models/lpu_graph.py) compiled for the simulated LPU.

The engine strings steps together: prefill steps of `prefill_tokens` prompt tokens (default 1: the decode
step, since SmolLM2's steps of 8 or more tokens do not fit one chip yet), then one decode step per generated
token. It owns the KV cache, on the host for now: every step receives the cache padded to a bucket of
`cache_bucket` slots and returns its new keys and values, which the engine writes into the cache. One
program is compiled per (tokens, cache bucket) and reused with new inputs; its cycles are known at compile
time and the run confirms them. The embedding lookup and the argmax are on the host too.

Executors: `fast` and `exact` run the compiled program (openlpu.sim); `reference` evaluates the same graph in
numpy with the chip's numerics (`Graph.evaluate`), without compiling: the oracle that the LPU must equal
token for token.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from openlpu.chip.spec import ChipSpec, get_chip
from openlpu.compiler.compile import Compiled, compile
from openlpu.compiler.graph import Graph
from openlpu.errors import UserError
from openlpu.models.lpu_graph import build_step_graph, check_numerics, step_inputs
from openlpu.models.registry import LoadedModel

EXECUTORS = ("fast", "exact", "reference")


@dataclass
class Step:
    """One step shape: its graph and, unless the executor is `reference`, its compiled program."""

    tokens: int
    cache_len: int
    graph: Graph
    compiled: Compiled | None
    compile_s: float


@dataclass
class StepRun:
    tokens: int  # real tokens in the step
    cache_len: int
    cycles: int  # simulated cycles (0 for the reference executor)


@dataclass
class Generation:
    """What one greedy generation did: tokens, simulated LPU time per step and host time."""

    prompt_ids: list[int]
    token_ids: list[int]
    chip: ChipSpec
    numerics: str
    executor: str
    prefill: list[StepRun] = field(default_factory=list)
    decode: list[StepRun] = field(default_factory=list)
    compile_s: float = 0.0  # host seconds compiling programs for this generation
    host_s: float = 0.0  # host seconds in all (compiling included)

    @property
    def prompt_tokens(self) -> int:
        return len(self.prompt_ids)

    @property
    def completion_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def prefill_cycles(self) -> int:
        return sum(s.cycles for s in self.prefill)

    @property
    def decode_cycles(self) -> int:
        return sum(s.cycles for s in self.decode)

    @property
    def ttft_s(self) -> float:
        """Simulated time to the first token: the prefill steps, which also give the first token."""
        return self.prefill_cycles / self.chip.clock_hz

    @property
    def cycles_per_token(self) -> float:
        """Simulated cycles per decode step (the tokens after the first)."""
        return self.decode_cycles / len(self.decode) if self.decode else 0.0

    @property
    def tokens_per_s(self) -> float:
        """Simulated decode tokens per second at the chip's clock."""
        return self.chip.clock_hz / self.cycles_per_token if self.decode_cycles else 0.0

    def summary(self) -> dict:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "token_ids": self.token_ids, "numerics": self.numerics, "executor": self.executor,
                "chip": self.chip.name, "chips": 1, "prefill_cycles": self.prefill_cycles,
                "cycles_per_token": self.cycles_per_token, "ttft_s": self.ttft_s, "tokens_per_s": self.tokens_per_s,
                "compile_s": self.compile_s, "host_s": self.host_s}


class LpuEngine:
    """A loaded model on one simulated chip; `generate` runs greedy generation."""

    def __init__(self, model: LoadedModel, numerics: str = "int8", chip: str | ChipSpec = "tsp-v1",
                 executor: str = "fast", cache_bucket: int = 64, prefill_tokens: int = 1):
        if executor not in EXECUTORS:
            raise UserError(f"unknown executor {executor!r}: use one of {', '.join(EXECUTORS)}.")
        if cache_bucket < 1 or prefill_tokens < 1:
            raise UserError(f"cache_bucket ({cache_bucket}) and prefill_tokens ({prefill_tokens}) must be at least 1.")
        self.model, self.numerics, self.executor = model, check_numerics(numerics), executor
        self.chip = get_chip(chip)
        self.cache_bucket, self.prefill_tokens = cache_bucket, prefill_tokens
        self._steps: dict[tuple[int, int], Step] = {}

    def step(self, tokens: int, cache_len: int) -> Step:
        """The (compiled) step for this shape, built on first use."""
        key = (tokens, cache_len)
        if key not in self._steps:
            t0 = time.perf_counter()
            graph = build_step_graph(self.model.config, self.model.weights, self.numerics, tokens, cache_len,
                                     self.chip)
            compiled = None if self.executor == "reference" else compile(graph, self.chip, check=False)
            self._steps[key] = Step(tokens, cache_len, graph, compiled, time.perf_counter() - t0)
        return self._steps[key]

    def _bucket(self, n: int) -> int:
        return self.cache_bucket * max(1, -(-n // self.cache_bucket))

    def _check(self, ids: Sequence[int], new_tokens: int) -> list[int]:
        c = self.model.config
        ids = [int(t) for t in ids]
        if not ids:
            raise UserError("the prompt has no tokens; give at least one token.")
        if len(ids) + new_tokens > c.context:
            raise UserError(f"{len(ids)} prompt tokens plus {new_tokens} new tokens exceed the context length "
                            f"of {c.context}; shorten the prompt or ask for fewer new tokens.")
        bad = [t for t in ids if not 0 <= t < c.vocab]
        if bad:
            raise UserError(f"token ids must lie in [0, {c.vocab}); got {bad[:5]}; encode text with the model's own "
                            "tokenizer.")
        return ids

    def generate(self, prompt_ids: Sequence[int], max_new_tokens: int, stop_ids: Iterable[int] = ()) -> Generation:
        """Greedy continuation of `prompt_ids`, up to `max_new_tokens`; stops after a stop id (kept)."""
        t_start = time.perf_counter()
        if max_new_tokens < 1:
            raise UserError(f"max_new_tokens is {max_new_tokens}; ask for at least 1 new token.")
        prompt = self._check(prompt_ids, max_new_tokens)
        stops = frozenset(stop_ids)
        gen = Generation(prompt, [], self.chip, self.numerics, self.executor)
        compiled_before = sum(s.compile_s for s in self._steps.values())
        seq = _Sequence(self, self._bucket(len(prompt) + max_new_tokens))
        logits = seq.prefill(prompt, gen.prefill)[-1][-1]
        while True:
            token = int(np.argmax(logits))
            gen.token_ids.append(token)
            if token in stops or len(gen.token_ids) == max_new_tokens:
                break
            logits = seq.run([token], 1, gen.decode)[-1]
        gen.compile_s = sum(s.compile_s for s in self._steps.values()) - compiled_before
        gen.host_s = time.perf_counter() - t_start
        return gen

    def teacher_forced_logits(self, ids: Sequence[int]) -> np.ndarray:
        """Logits [len(ids), vocab]: row i predicts ids[i + 1] having seen ids[:i + 1] (prefill steps only)."""
        ids = self._check(ids, 0)
        return np.concatenate(_Sequence(self, self._bucket(len(ids))).prefill(ids, []))


class _Sequence:
    """One sequence's KV cache, on the host, and the steps that extend it."""

    def __init__(self, engine: LpuEngine, capacity: int):
        c = engine.model.config
        kv = c.n_kv_heads * c.head_dim
        self.engine, self.position = engine, 0
        self.k = np.zeros((c.n_layers, capacity, kv), np.float16)
        self.vt = np.zeros((c.n_layers, kv, capacity), np.float16)

    def prefill(self, ids: list[int], log: list[StepRun]) -> list[np.ndarray]:
        """The prompt in steps of `prefill_tokens` (a single token takes the decode step); logits per step."""
        rows = 1 if len(ids) == 1 else self.engine.prefill_tokens
        return [self.run(ids[i:i + rows], rows, log) for i in range(0, len(ids), rows)]

    def run(self, ids: list[int], rows: int, log: list[StepRun]) -> np.ndarray:
        """`ids` at the current position in a step of `rows` tokens (the rest padding); stores their keys and
        values; returns their logits [len(ids), vocab]."""
        engine, c = self.engine, self.engine.model.config
        step = engine.step(rows, engine._bucket(self.position))
        embeddings = np.zeros((rows, c.d_model), np.float32)
        embeddings[:len(ids)] = engine.model.weights.token_embd[ids]
        inputs = step_inputs(c, embeddings, self.position, step.cache_len)
        for i in range(c.n_layers):
            inputs[f"k{i}"] = self.k[i, :step.cache_len]
            inputs[f"vt{i}"] = self.vt[i, :, :step.cache_len]
        if step.compiled is None:
            outputs, cycles = step.graph.evaluate(inputs, lanes=engine.chip.lanes), 0
        else:
            result = step.compiled.run(inputs, executor=engine.executor)
            outputs, cycles = result.outputs, result.cycles
        end = self.position + len(ids)
        for i in range(c.n_layers):
            self.k[i, self.position:end] = outputs[f"k_new{i}"][:len(ids)]
            self.vt[i, :, self.position:end] = outputs[f"v_new{i}"][:len(ids)].T
        self.position = end
        log.append(StepRun(len(ids), step.cache_len, cycles))
        return outputs["logits"][:len(ids)]
