"""Generation with the llama step graph (models/lpu_graph.py) compiled for the simulated LPU.

The engine strings steps together: prefill steps of `prefill_tokens` prompt tokens (`PREFILL_TOKENS` by
default; halved while a step that size does not fit the chip's SRAM), then one decode step per generated
token, sampled on the chip itself: the step program's `next` (greedy: the argmax; with a temperature: a
Gumbel-max sample from noise the host draws with the request's seed, within the top-p nucleus the chip finds;
models/sampling_graph.py; of the prompt's steps only the last, which gives the first token, samples).
Stop tokens and stop strings end the answer.
Over several chips each step is a pipeline of stages (layer ranges) that hand the residual stream on over
scheduled links, or, with `parallel="tensor"`, every layer split over the chips with two all-reduces a layer
(runtime/tensor_parallel.py). The KV cache lives in the chip's SRAM (state tensors of the step programs, a
bucket of `cache_bucket` slots in use): a step receives the embeddings, the position and the RoPE tables and mask
that follow from it, and writes its tokens' keys and values into the cache itself. One program is compiled
per (tokens, cache bucket) and reused with new inputs; its cycles are known at compile time and the run
confirms them. Every program pins the cache to the same SRAM regions (`pin_states`, sized for the longest
sequence yet), so a program of another shape finds it where the last one left it. The embedding lookup is on
the host.

Executors: `fast` and `exact` run the compiled program (openlpu.sim); `reference` evaluates the same graph in
numpy with the chip's numerics (`Graph.evaluate`), without compiling: the oracle that the LPU must equal
token for token.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from openlpu.chip.spec import ChipSpec, get_chip
from openlpu.compiler.alloc import SramFull
from openlpu.compiler.compile import Compiled, compile, pin_states
from openlpu.compiler.graph import Graph
from openlpu.errors import UserError
from openlpu.models.lpu_graph import NUMERICS, build_step_graph, check_numerics, split_stages, step_inputs
from openlpu.models.registry import LoadedModel
from openlpu.models.sampling_graph import sampling_inputs, sampling_mode
from openlpu.models.tp_graph import shard_plan
from openlpu.runtime import tensor_parallel
from openlpu.runtime.detokenize import IncrementalDetokenizer
from openlpu.runtime.engine import FINISH_LENGTH, FINISH_STOP
from openlpu.runtime.sampling import SamplingParams, StopMatcher
from openlpu.system import topology
from openlpu.system.faults import parse_link, probe_links
from openlpu.system.netexec import MissingArrival, execute
from openlpu.system.schedule import NetworkSchedule, Transfer, schedule
from openlpu.system.spec import GROQ_V1

EXECUTORS = ("fast", "exact", "reference")
# prompt tokens a prefill step takes by default: SmolLM2's int8 step of 16 fits one tsp-v1 with ~29 MB to
# spare (32 fits greedy decoding with 20 MB; the sampling programs' [P, vocab] tensors take more)
PREFILL_TOKENS = 16
PARALLEL = ("pipeline", "tensor")
GREEDY = SamplingParams(temperature=0.0)

# progress(phase, done, total): phase "prompt" while the prompt's steps run, "decode" for new tokens
Progress = Callable[[str, int, int], None]
# (resource, cycles) of one piece of a step: "chip k" ran its stage or "link k->k+1" its hand-off (0 cycles on
# the reference executor). Steps yield them as they run, so several sequences can share the pipeline.
Span = tuple[str, int]
T = TypeVar("T")


def drain(spans: Generator[Span, None, T]) -> T:
    """Run a step's (or a generation's) spans one after the other; returns what it returns."""
    while True:
        try:
            next(spans)
        except StopIteration as done:
            return done.value


def bucket_of(tokens: int, cache_bucket: int) -> int:
    """Cache slots of a step that leaves `tokens` tokens cached (its first position plus its rows, which it
    writes into the cache): padded to a multiple of `cache_bucket` slots, at least one bucket."""
    return cache_bucket * max(1, -(-tokens // cache_bucket))


def region_slots(tokens: int, cache_bucket: int, cache_slots: int) -> int:
    """Rows of the KV cache's pinned regions (compiler pin_states) that hold `tokens` tokens: `cache_slots`,
    doubled until it holds their bucket (so varied lengths recompile seldom)."""
    while cache_slots < bucket_of(tokens, cache_bucket):
        cache_slots *= 2
    return cache_slots


@dataclass
class Stage:
    """One chip's part of a step: a range of layers, its graph and (unless the executor is `reference`) its
    compiled program."""

    layers: tuple[int, int]
    graph: Graph
    compiled: Compiled | None


@dataclass
class Step:
    """One step shape on the pipeline: a stage per chip, and the scheduled hand-off of the residual stream
    from each stage to the next over their link."""

    tokens: int
    cache_len: int
    stages: list[Stage]
    handoffs: list[NetworkSchedule]
    compile_s: float


@dataclass
class StepRun:
    tokens: int  # real tokens in the step
    cache_len: int
    cycles: int  # simulated cycles, the stages' and the links' (0 for the reference executor)
    link_cycles: int = 0  # of which on the links between chips
    # for the trace: (track, start, cycles) from the step's start; a track is "chip k", a pipeline hand-off
    # "link k->k+1" or, under tensor parallelism, a physical link "link a-b" carrying an all-reduce
    events: tuple[tuple[str, int, int], ...] = ()


@dataclass
class Generation:
    """What one generation did: tokens and text, simulated LPU time per step and host time."""

    prompt_ids: list[int]
    token_ids: list[int]
    chip: ChipSpec
    numerics: str
    executor: str
    chips: int = 1
    parallel: str = "pipeline"  # how the model is split over `chips`: PARALLEL
    prefill_tokens: int = 1  # prompt tokens a prefill step took
    replans: list[str] = field(default_factory=list)  # link failures detected, each followed by a re-plan
    text: str = ""  # the answer: stop tokens left out, cut before a stop string
    finish_reason: str = FINISH_LENGTH
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
        return {"text": self.text, "token_ids": self.token_ids, "finish_reason": self.finish_reason,
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "numerics": self.numerics, "executor": self.executor, "chip": self.chip.name, "chips": self.chips,
                "parallel": self.parallel,
                "prefill_cycles": self.prefill_cycles, "cycles_per_token": self.cycles_per_token,
                "ttft_s": self.ttft_s, "tokens_per_s": self.tokens_per_s, "compile_s": self.compile_s,
                "host_s": self.host_s, "prefill_tokens": self.prefill_tokens, "replans": self.replans}


class LpuEngine:
    """A loaded model on `chips` simulated chips of one node, split as a pipeline of layer ranges (one chip
    holds the whole model when it fits) or by tensor parallelism (every layer's heads and FFN columns over
    the chips, runtime/tensor_parallel.py); `generate` runs a generation."""

    def __init__(self, model: LoadedModel, numerics: str = "int8", chip: str | ChipSpec = "tsp-v1",
                 executor: str = "fast", cache_bucket: int = 64, prefill_tokens: int = PREFILL_TOKENS, chips: int = 1,
                 failed_links: Iterable[str | int] = (), steps_kept: int | None = None, parallel: str = "pipeline",
                 cache_slots: int | None = None):
        if executor not in EXECUTORS:
            raise UserError(f"unknown executor {executor!r}: use one of {', '.join(EXECUTORS)}.")
        if parallel not in PARALLEL:
            raise UserError(f"unknown parallelism {parallel!r}: use one of {', '.join(PARALLEL)}.")
        if cache_bucket < 1 or prefill_tokens < 1:
            raise UserError(f"cache_bucket ({cache_bucket}) and prefill_tokens ({prefill_tokens}) must be at least 1.")
        self.model, self.numerics, self.executor = model, check_numerics(numerics), executor
        self.chip = get_chip(chip)
        self.cache_bucket, self.prefill_tokens = cache_bucket, prefill_tokens
        # the stages sit on chips 0..chips-1 of a full node, whose other chips give hand-offs their detours
        self.topology = topology.node(GROQ_V1.chips_per_node)
        if not 1 <= chips <= self.topology.chips:
            raise UserError(f"{chips} chips: a model runs on the {self.topology.chips} chips of one node; use 1 to "
                            f"{self.topology.chips}.")
        self.parallel = parallel
        self.shards = shard_plan(model.config, chips) if parallel == "tensor" else []
        self.layers = split_stages(model.config, 1 if self.shards else chips)
        # links broken in the simulated hardware; the planner learns of them only when a hand-off loses flits
        self.failed_links = tuple(parse_link(self.topology, name) for name in failed_links)
        self.known_failed: tuple[int, ...] = ()
        self.replans: list[MissingArrival] = []  # the detection behind each re-plan
        self.steps_kept = steps_kept  # step shapes held at once (None: all); the least recently used goes first
        self._steps: OrderedDict[tuple[int, int, str], Step] = OrderedDict()
        # rows of the KV cache's pinned regions in every compiled program (a bucket by default), grown for good
        # by a longer sequence
        self.cache_slots = cache_slots or cache_bucket
        self._pins: dict[int, dict] = {}  # stage -> its states' regions (compiler pin_states)

    @property
    def chips(self) -> int:
        return len(self.shards) or len(self.layers)

    def step(self, tokens: int, cache_len: int, sampling: str = "greedy") -> Step:
        """The (compiled) step for this shape and sampling mode (models/sampling_graph.py), built on first use."""
        key = (tokens, cache_len, sampling)
        if key in self._steps:
            self._steps.move_to_end(key)
        elif self.shards:
            self._steps[key] = tensor_parallel.build_step(self, self.shards, tokens, cache_len, sampling)
        else:
            self._pin_cache(cache_len)  # a step past the regions (called directly) grows them
            t0 = time.perf_counter()
            c, w = self.model.config, self.model.weights
            graphs = [build_step_graph(c, w, self.numerics, tokens, cache_len, self.chip, layers, sampling)
                      for layers in self.layers]
            stages = []
            for k, (layers, graph) in enumerate(zip(self.layers, graphs, strict=True)):
                if self.executor != "reference":
                    self._check_fits(graphs, k)
                compiled = None
                if self.executor != "reference":
                    if k not in self._pins:
                        self._pins[k] = pin_states(graph, self.chip, self.cache_slots)
                    compiled = compile(graph, self.chip, check=False, states=self._pins[k])
                stages.append(Stage(layers, graph, compiled))
            self._steps[key] = Step(tokens, cache_len, stages, self._plan_handoffs(tokens), time.perf_counter() - t0)
        while self.steps_kept is not None and len(self._steps) > self.steps_kept:
            self._steps.popitem(last=False)
        return self._steps[key]

    def _plan_handoffs(self, tokens: int) -> list[NetworkSchedule]:
        nbytes = tokens * self.model.config.d_model * 4  # the fp32 residual stream
        return [schedule(self.topology, [Transfer(k, k + 1, nbytes, name=f"stage {k} -> stage {k + 1}")],
                         failed_links=self.known_failed) for k in range(self.chips - 1)]

    def hand_off(self, step: Step, k: int, x: np.ndarray) -> tuple[np.ndarray, int]:
        """Move the residual stream from stage k to k + 1 over its scheduled route, byte for byte. A dead link
        loses flits, which the receiving chip notices in the slot they were due: then every link is probed,
        every hand-off re-planned around the dead ones, and this one replayed (ISCA22: no link retry; a fatal
        error replays in software). Returns what the next stage receives and the cycles the hand-off took, the
        lost attempt's included."""
        plan = step.handoffs[k]
        moved = execute(plan, {0: np.ascontiguousarray(x).view(np.uint8).reshape(-1)}, self.failed_links)
        if not moved.ok:
            self.link_failed(moved.detections[0])
            x, cycles = self.hand_off(step, k, x)
            return x, plan.makespan + cycles
        return moved.received[0].view(np.float32).reshape(x.shape), plan.makespan

    def link_failed(self, detection: MissingArrival) -> None:
        """A chip missed a flit: probe every link, learn the dead ones and re-plan every kept step's transfers
        (hand-offs, or tensor parallelism's all-reduces) around them, for the caller to replay."""
        known = set(self.known_failed)
        self.replans.append(detection)
        self.known_failed = tuple(sorted({d.link for d in probe_links(self.topology, self.failed_links)}))
        if not set(self.known_failed) - known:
            raise UserError(f"link {detection.link} still loses flits with links {sorted(known)} avoided: repair "
                            "the links and run again.")
        for other in self._steps.values():
            if self.shards:
                other.allreduce = tensor_parallel.plan_allreduce(self, len(self.shards), other.tokens)
            else:
                other.handoffs = self._plan_handoffs(other.tokens)

    def _check_fits(self, graphs: list[Graph], k: int) -> None:
        """Stage k's constants alone must fit its chip's SRAM: say so before a long compile finds out."""
        if graphs[k].constant_bytes > self.chip.sram_bytes:
            c, (lo, hi) = self.model.config, self.layers[k]
            total = sum(g.constant_bytes for g in graphs)
            head = c.vocab * c.d_model
            per_param = total / (c.n_layers * c.layer_params + head)

            def biggest_stage(n: int) -> float:  # bytes of the largest stage of an n-chip pipeline
                return per_param * max((b - a) * c.layer_params + head * (b == c.n_layers)
                                       for a, b in split_stages(c, n))

            chips = range(self.chips + 1, min(self.topology.chips, c.n_layers) + 1)
            need = next((n for n in chips if biggest_stage(n) <= self.chip.sram_bytes), None)
            fix = (f"use --chips {need} (a pipeline of {need} chips)" if need
                   else f"no pipeline over a node's {self.topology.chips} chips holds it")
            other = [m for m in NUMERICS if m != self.numerics][0]
            raise UserError(
                f"{self.model.name} at {self.numerics} has {total / 2**20:,.0f} MiB of weights and the stage of layers "
                f"{lo}..{hi - 1} on one {self.chip.name} holds {graphs[k].constant_bytes / 2**20:,.0f} MiB, more than "
                f"its {self.chip.sram_bytes / 2**20:,.0f} MiB of SRAM: {fix} or --numerics {other}.")

    def _bucket(self, n: int) -> int:
        return bucket_of(n, self.cache_bucket)

    @property
    def pinned(self) -> bool:
        """Do the steps' programs pin the KV cache to the regions of `cache_slots` rows (compiled pipeline
        stages do; the reference and tensor-parallel shards keep a cache of each step's bucket)?"""
        return self.executor != "reference" and not self.shards

    def _pin_cache(self, tokens: int) -> None:
        """Make the cache's pinned regions hold a sequence of `tokens` tokens; the steps compiled for smaller
        regions go."""
        slots = region_slots(tokens, self.cache_bucket, self.cache_slots)
        if slots > self.cache_slots:
            self.cache_slots = slots
            self._pins.clear()
            if self.pinned:
                self._steps.clear()

    def _check_length(self, prompt_tokens: int, new_tokens: int) -> None:
        if prompt_tokens + new_tokens > self.model.config.context:
            raise UserError(f"{prompt_tokens} prompt tokens plus {new_tokens} new tokens exceed the context length "
                            f"of {self.model.config.context}; shorten the prompt or ask for fewer new tokens.")

    def _check(self, ids: Sequence[int], new_tokens: int) -> list[int]:
        c = self.model.config
        ids = [int(t) for t in ids]
        if not ids:
            raise UserError("the prompt has no tokens; give at least one token.")
        self._check_length(len(ids), new_tokens)
        bad = [t for t in ids if not 0 <= t < c.vocab]
        if bad:
            raise UserError(f"token ids must lie in [0, {c.vocab}); got {bad[:5]}; encode text with the model's own "
                            "tokenizer.")
        return ids

    def prefill_rows(self, position: int, sampling: str = "greedy") -> int:
        """Rows of the prompt step at `position`: `prefill_tokens`, compiled on first use; halved for good while
        such a step does not fit the chip's SRAM (how much fits moves with the compiler's allocation)."""
        while True:
            rows = self.prefill_tokens
            try:
                self.step(rows, self._bucket(position + rows), sampling)
                return rows
            except SramFull:
                if rows == 1:
                    raise
                self.prefill_tokens = rows // 2

    def prompt_step(self, position: int, end: int, mode: str) -> tuple[int, str]:
        """Rows and sampling mode of the prompt step at `position` of a prompt ending at `end`: only the step
        holding the prompt's last token chooses by `mode`; the others' choices go unused, so they run greedy
        programs, without the sampling ops (their cycles grow with the step's rows)."""
        while True:
            rows = self.prefill_tokens
            step_mode = mode if position + rows >= end else "greedy"
            if self.prefill_rows(position, step_mode) == rows:
                return rows, step_mode

    def prepare(self, prompt_tokens: int, max_new_tokens: int, progress: Progress | None = None,
                sampling: SamplingParams = GREEDY) -> float:
        """Build and compile the steps a generation of this size may run, so their cost shows apart from it;
        returns the host seconds spent compiling."""
        mode = sampling_mode(sampling.temperature, sampling.top_p)
        self._check_length(prompt_tokens, max_new_tokens)
        self._pin_cache(prompt_tokens + max_new_tokens)
        before = sum(s.compile_s for s in self._steps.values())
        decode = list(dict.fromkeys(self._bucket(p + 1) for p in range(prompt_tokens,
                                                                        prompt_tokens + max_new_tokens - 1)))
        position, total = 0, prompt_tokens + len(decode)
        while position < prompt_tokens:
            if progress:
                progress("compile", position, total)
            position += 1 if prompt_tokens == 1 else self.prompt_step(position, prompt_tokens, mode)[0]
        for k, cache_len in enumerate(decode):
            if progress:
                progress("compile", prompt_tokens + k, total)
            self.step(1, cache_len, mode)
        if progress:
            progress("compile", total, total)
        return sum(s.compile_s for s in self._steps.values()) - before

    def generate(self, prompt_ids: Sequence[int], max_new_tokens: int, stop_ids: Iterable[int] = (),
                 sampling: SamplingParams = GREEDY, progress: Progress | None = None) -> Generation:
        """Continue `prompt_ids` by up to `max_new_tokens` tokens chosen by `sampling` (greedy by default).
        A stop id ends the answer (it is kept in `token_ids`, not in `text`); so does a stop string of
        `sampling`, which the text then ends before."""
        return drain(self.generation(prompt_ids, max_new_tokens, stop_ids, sampling, progress))

    def generation(self, prompt_ids: Sequence[int], max_new_tokens: int, stop_ids: Iterable[int] = (),
                   sampling: SamplingParams = GREEDY, progress: Progress | None = None
                   ) -> Generator[Span, None, Generation]:
        """`generate`, checked now and run a span at a time as the generator is advanced (pipeline_flight.py
        interleaves several); it returns the Generation."""
        if max_new_tokens < 1:
            raise UserError(f"max_new_tokens is {max_new_tokens}; ask for at least 1 new token.")
        return self._generation(self._check(prompt_ids, max_new_tokens), max_new_tokens, stop_ids, sampling, progress)

    def _generation(self, prompt: list[int], max_new_tokens: int, stop_ids: Iterable[int], sampling: SamplingParams,
                    progress: Progress | None) -> Generator[Span, None, Generation]:
        t_start = time.perf_counter()
        stops = frozenset(stop_ids)
        gen = Generation(prompt, [], self.chip, self.numerics, self.executor, self.chips, self.parallel)
        compiled_before = sum(s.compile_s for s in self._steps.values())
        replans_before = len(self.replans)
        detokenizer, matcher = IncrementalDetokenizer(self.model.tokenizer), StopMatcher(sampling.stop)
        seq = self.sequence(len(prompt) + max_new_tokens, sampling)
        yield from seq.prefill_spans(prompt, gen.prefill, progress)
        gen.prefill_tokens = 1 if len(prompt) == 1 else self.prefill_tokens
        cut = False  # the text ended at a stop string
        while True:
            token = int(seq.chosen[-1])
            gen.token_ids.append(token)
            if progress:
                progress("decode", len(gen.token_ids), max_new_tokens)
            if token in stops:
                gen.finish_reason = FINISH_STOP
                break
            text, cut = matcher.feed(detokenizer.feed(token))
            gen.text += text
            if cut:
                gen.finish_reason = FINISH_STOP
                break
            if len(gen.token_ids) == max_new_tokens:
                break
            yield from seq.spans([token], 1, gen.decode)
        if not cut:  # let out what the detokenizer and the stop matcher still hold
            tail, cut = matcher.feed(detokenizer.flush())
            gen.text += tail if cut else tail + matcher.flush()
        gen.replans = [f"link {d.link}: chip {d.chip} missed a flit due in cycle {d.cycle}; re-planned around links "
                       f"{', '.join(map(str, self.known_failed))}" for d in self.replans[replans_before:]]
        gen.compile_s = sum(s.compile_s for s in self._steps.values()) - compiled_before
        gen.host_s = time.perf_counter() - t_start
        return gen

    def sequence(self, tokens: int, sampling: SamplingParams = GREEDY) -> LpuSequence:
        """A new sequence with room for `tokens` tokens in its KV cache, its tokens chosen by `sampling`."""
        self._pin_cache(tokens)
        return LpuSequence(self, tokens, sampling)

    def teacher_forced_logits(self, ids: Sequence[int], progress: Progress | None = None) -> np.ndarray:
        """Logits [len(ids), vocab]: row i predicts ids[i + 1] having seen ids[:i + 1] (prefill steps only)."""
        ids = self._check(ids, 0)
        return np.concatenate(self.sequence(len(ids)).prefill(ids, [], progress))


class LpuSequence:
    """One sequence's KV cache and the steps that extend it. The cache is the SRAM of the step programs' state
    tensors (`k{i}`, `v{i}` [slots, kv]), which each run carries over to the next (Compiled.run). Compiled
    programs of every shape pin it to the same regions, so their image [engine.cache_slots, kv] goes from one
    to the next as it is (grown only when the engine's regions grow); the reference executor's is padded to
    each step's bucket. Its steps choose each row's next token by `sampling`; the Gumbel noise comes from a
    generator seeded with its seed, one row per real token."""

    def __init__(self, engine: LpuEngine, tokens: int, sampling: SamplingParams = GREEDY):
        self.engine, self.position, self.tokens = engine, 0, tokens
        self.cache: dict[str, np.ndarray] = {}
        self.sampling, self.mode = sampling, sampling_mode(sampling.temperature, sampling.top_p)
        self.rng = np.random.default_rng(sampling.seed)
        self.chosen = np.zeros(0, np.int32)  # the last step's on-chip choice of each real row's next token

    def _sampling_inputs(self, mode: str, rows: int, real: int) -> dict[str, np.ndarray]:
        """A step's sampling inputs: Gumbel noise for its last real row only, whose choice is the next token
        (one row a token, however the prompt is cut into steps), then 1 / T and top_p."""
        if mode == "greedy":
            return {}
        gumbel = np.zeros((rows, self.engine.model.config.vocab))
        gumbel[real - 1] = self.rng.gumbel(size=gumbel.shape[1])
        return sampling_inputs(mode, gumbel, self.sampling.temperature, self.sampling.top_p)

    def prefill(self, ids: list[int], log: list[StepRun], progress: Progress | None = None) -> list[np.ndarray]:
        """The prompt in steps of `prefill_tokens` (a single token takes the decode step); logits per step."""
        return drain(self.prefill_spans(ids, log, progress))

    def prefill_spans(self, ids: list[int], log: list[StepRun], progress: Progress | None = None
                      ) -> Generator[Span, None, list[np.ndarray]]:
        out, i, end = [], 0, self.position + len(ids)
        while i < len(ids):
            rows, mode = (1, self.mode) if len(ids) == 1 else self.engine.prompt_step(self.position, end, self.mode)
            out.append((yield from self.spans(ids[i:i + rows], rows, log, mode)))
            i += rows
            if progress:
                progress("prompt", min(i, len(ids)), len(ids))
        return out

    def run(self, ids: list[int], rows: int, log: list[StepRun]) -> np.ndarray:
        """`ids` at the current position in a step of `rows` tokens (the rest padding); stores their keys and
        values; returns their logits [len(ids), vocab]. The stages run one after the other, each handing the
        residual stream to the next over their link, its bytes moved by the network executor."""
        return drain(self.spans(ids, rows, log))

    def spans(self, ids: list[int], rows: int, log: list[StepRun], mode: str | None = None
              ) -> Generator[Span, None, np.ndarray]:
        """`run`, yielding each stage's and each hand-off's span after it runs; `mode` samples (default: the
        sequence's sampling mode)."""
        mode = mode or self.mode
        engine, c = self.engine, self.engine.model.config
        if self.position + len(ids) > self.tokens:
            raise UserError(f"the sequence has room for {self.tokens} tokens and holds {self.position}: {len(ids)} "
                            "more do not fit; start a sequence with room for them all.")
        step = engine.step(rows, engine._bucket(self.position + rows), mode)
        slots = engine.cache_slots if engine.pinned else step.cache_len
        for name, value in self.cache.items():
            self.cache[name] = np.pad(value, ((0, slots - len(value)), (0, 0)))
        x = np.zeros((rows, c.d_model), np.float32)
        x[:len(ids)] = engine.model.weights.token_embd[ids]
        draws = self._sampling_inputs(mode, rows, len(ids))
        end = self.position + len(ids)
        if engine.shards:
            run = tensor_parallel.run_step(engine, step, engine.shards, self.cache, x, self.position, draws)
        else:
            run = self._pipeline(step, x, draws)
        outputs, cycles, link_cycles, events = yield from run
        self.position = end
        log.append(StepRun(len(ids), step.cache_len, cycles, link_cycles, tuple(events)))
        self.chosen = outputs["next"][:len(ids), 0]  # the chip's choice of each real row's next token
        return outputs["logits"][:len(ids)]

    def _pipeline(self, step: Step, x: np.ndarray, draws: dict[str, np.ndarray]
                  ) -> Generator[Span, None, tuple[dict, int, int, list]]:
        """The stages one after the other (the last takes the sampling inputs `draws`), each handing the
        residual stream to the next over their link, its bytes moved by the network executor; returns the last
        stage's outputs, the step's cycles, the links' share of them and the trace events."""
        engine = self.engine
        shared = step_inputs(engine.model.config, x, self.position, step.cache_len)
        cycles = link_cycles = 0
        events = []
        for k, stage in enumerate(step.stages):
            inputs = {**shared, **draws, "x": x}
            if stage.compiled is None:
                outputs = stage.graph.evaluate(inputs, lanes=engine.chip.lanes, state=self.cache)
                yield f"chip {k}", 0
            else:
                result = stage.compiled.run(inputs, executor=engine.executor, state=self.cache)
                outputs = result.outputs
                events.append((f"chip {k}", cycles, result.cycles))
                cycles += result.cycles
                yield f"chip {k}", result.cycles
            if k < len(step.handoffs):
                x, moved = engine.hand_off(step, k, outputs["x_out"])
                if stage.compiled is None:
                    moved = 0
                else:
                    events.append((f"link {k}->{k + 1}", cycles, moved))
                    cycles, link_cycles = cycles + moved, link_cycles + moved
                yield f"link {k}->{k + 1}", moved
        return outputs, cycles, link_cycles, events
