"""`predict`: a decoder LLM on N LPUs, composed from compiled layer shards and scheduled network transfers.

Partitioning: tensor parallelism over the 8 chips of a node (heads, FFN columns and rows, LM-head
columns; a mixture of experts adds expert parallelism inside the node), pipeline parallelism across
nodes (contiguous layer stages, the LM head on the last stage, the embedding looked up on the host).
Each distinct block (shard.py) is compiled once with `openlpu.compile` and read for its scheduled
cycles; every layer of a model has the same shape, so a decode step compiles three programs whatever
the depth. The network terms are schedules too: the tensor-parallel all-reduce is a compiled collective
on a node, each stage hand-off is the group's eight point-to-point transfers scheduled together on the
system's wiring. Nothing is fitted to a published figure: when the result misses one, the breakdown
says where the time goes.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

import openlpu
from openlpu.chip.spec import ChipSpec, get_chip
from openlpu.errors import UserError
from openlpu.models.zoo import DecoderConfig
from openlpu.perf.gpu import GPUS, gpu_baseline
from openlpu.perf.shard import ShardShape, attention_block, default_expert_parallel, lm_head_block, mlp_block
from openlpu.sources import assumed, cited
from openlpu.system import clocks, collectives, topology
from openlpu.system.schedule import Transfer, schedule
from openlpu.system.spec import GROQ_V1

ACTIVATION_BYTES = 4  # the blocks' partial sums and residual stream are fp32 (shard.py)
IDLE_OPS = frozenset({"NOP", "IFETCH"})  # a queue waiting or fetching its instructions is not computing
PARTS = ("matrix", "vector", "memory", "network", "synchronisation", "host")


@dataclass(frozen=True)
class PredictAssumptions:
    tp: int = cited(8, "ISCA22: 8 TSPs fully connected in a node; tensor parallelism stays on the local links")
    margin_bytes_per_layer: int = assumed(
        1 << 20, "instructions of a compiled layer shard (Llama-2-70B: 47k x 8 B = 0.4 MB) plus a step's activations")
    margin_bytes_per_chip: int = assumed(4 << 20, "the LM head's program, host buffers, a prefill chunk's scores")
    prefill_chunk: int = assumed(
        16, "prompt tokens per compiled prefill step: compile time grows with rows (a 70B shard's blocks take "
        "~25 s at 16 rows, ~40 s at 32, over a minute at 128), so `predict` stays under a minute")
    weight_install_cycles: int = cited(40, "ISCA20: installing all 409,600 MXM weights takes < 40 cycles")
    host_bytes_per_s: float = cited(24e9, "GROQFLOW: PCIe 24 GB/s in the performance estimator")
    host_latency_s: float = cited(10e-6, "GROQFLOW: 10 us per PCIe transfer")


DEFAULTS = PredictAssumptions()


# ---- partitioning and capacity ----
@dataclass(frozen=True)
class Plan:
    model: DecoderConfig
    shape: ShardShape
    chips: int  # chips that hold the model
    system_chips: int  # chips of the system they are part of
    stage_layers: tuple[int, ...]  # layers of each pipeline stage (a node), first to last
    context: int
    batch: int
    sram_bytes: int
    a: PredictAssumptions = field(default=DEFAULTS)

    @property
    def stages(self) -> int:
        return len(self.stage_layers)

    def stage_bytes(self, stage: int, users: int | None = None) -> int:
        """SRAM one chip of `stage` needs: weights, `users` KV caches at the context, the margins."""
        layers, s = self.stage_layers[stage], self.shape
        users = self.batch if users is None else users
        kv = layers * users * self.context * s.kv_bytes_per_token()
        head = s.lm_head_bytes() if stage == self.stages - 1 else 0
        return layers * (s.weight_bytes_per_layer() + self.a.margin_bytes_per_layer) + kv + head + \
            self.a.margin_bytes_per_chip

    @property
    def bytes_per_chip(self) -> int:
        return max(self.stage_bytes(i) for i in range(self.stages))

    @property
    def fits(self) -> bool:
        return self.bytes_per_chip <= self.sram_bytes

    @property
    def users_in_flight(self) -> int:
        """Pipeline slots of `batch` users: one per stage, as many as every stage has SRAM for their caches."""
        slots = self.stages
        while slots > 1 and any(self.stage_bytes(i, slots * self.batch) > self.sram_bytes
                                for i in range(self.stages)):
            slots -= 1
        return slots


def split_layers(layers: int, stages: int) -> tuple[int, ...]:
    """Contiguous stages as even as can be, the extra layers on the first ones (the last holds the LM head);
    with one stage more than layers, the LM head has a node to itself."""
    if stages == layers + 1:
        return (1,) * layers + (0,)
    base, extra = divmod(layers, stages)
    return tuple(base + (i < extra) for i in range(stages))


def plan(model: DecoderConfig, chips: int, numerics: str, context: int, batch: int,
         sram_bytes: int, a: PredictAssumptions = DEFAULTS, expert_parallel: int | None = None) -> Plan:
    """`expert_parallel` None: the degree whose chips run the fewest expert columns at this batch."""
    if chips < a.tp or chips % a.tp:
        raise UserError(f"--chips {chips}: give a multiple of {a.tp} (one tensor-parallel node per pipeline stage).")
    stages = min(chips // a.tp, model.n_layers + 1)
    ep = default_expert_parallel(model, a.tp, batch) if expert_parallel is None else expert_parallel
    return Plan(model, ShardShape.of(model, a.tp, numerics, ep), stages * a.tp, chips,
                split_layers(model.n_layers, stages), context, batch, sram_bytes, a)


def system_sizes(spec=GROQ_V1, tp: int = DEFAULTS.tp) -> list[int]:
    """Systems `predict` picks from: nodes of one rack (8, 16, ... 64), then racks of 64 active chips."""
    active = (spec.nodes_per_rack - spec.spare_nodes_per_rack) * spec.chips_per_node
    return list(range(tp, active + 1, tp)) + [r * active for r in range(2, spec.max_racks + 1)]


def smallest_fit(model, numerics, context, batch, sram_bytes, a=DEFAULTS, expert_parallel=None) -> Plan | None:
    for n in system_sizes(tp=a.tp):
        p = plan(model, n, numerics, context, batch, sram_bytes, a, expert_parallel)
        if p.fits:
            return p
        if p.stages == model.n_layers + 1:
            return None  # a layer a node and the LM head alone already: more chips do not help
    return None


def capacity_error(p: Plan, numerics: str) -> UserError:
    best = smallest_fit(p.model, numerics, p.context, p.batch, p.sram_bytes, p.a, p.shape.expert_parallel)
    smaller = "int8, a shorter context or a smaller batch" if numerics == "fp16" else \
        "a shorter context or a smaller batch"
    need = (f"it fits {best.system_chips} chips (--chips {best.system_chips})" if best else
            f"it does not fit even one layer per node: use {smaller}")
    layers = max(p.stage_layers)
    return UserError(
        f"{p.model.name} at {numerics} with context {p.context} and batch {p.batch} needs "
        f"{p.bytes_per_chip / 1e6:,.1f} MB of SRAM per chip on {p.system_chips} chips "
        f"({layers} layer{'s' * (layers > 1)} a node), over the {p.sram_bytes / 1e6:,.1f} MB of a chip: {need}.")


# ---- compiled blocks ----
@dataclass(frozen=True)
class BlockTiming:
    """A compiled block's scheduled cycles, each counted once by the busiest unit class issuing in it."""

    name: str
    cycles: int
    matrix: int  # an MXM queue is busy (LW, IW, ABC, ACC): weights install or vectors multiply
    vector: int  # otherwise a VXM or SXM queue is
    memory: int  # otherwise MEM queues alone (SRAM reads and writes), or data in flight on the streams
    instructions: int

    def scaled(self, k: float) -> dict[str, float]:
        return {"matrix": k * self.matrix, "vector": k * self.vector, "memory": k * self.memory}


# A block is known by every size its schedule depends on: (shape, kind, users, tokens, cache, chip).
BlockKey = tuple[ShardShape, str, int, int, int, str]
_BLOCKS: dict[BlockKey, BlockTiming] = {}  # compiled within this run


def compile_block(shape: ShardShape, kind: str, users: int = 1, tokens: int = 1, cache: int = 1,
                  chip: str = "tsp-v1") -> BlockTiming:
    return compile_blocks([(shape, kind, users, tokens, cache, chip)])[0]


def compile_blocks(keys: list[BlockKey]) -> list[BlockTiming]:
    """Each block's timing, compiling the ones this run has not seen yet in parallel: the compiler runs on one
    core, and the blocks of a prediction are independent programs."""
    todo = [k for k in dict.fromkeys(keys) if k not in _BLOCKS]
    workers = min(len(todo), os.cpu_count() or 1)
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            _BLOCKS.update(zip(todo, pool.map(_compile_block, todo), strict=True))
    else:
        _BLOCKS.update((k, _compile_block(k)) for k in todo)
    return [_BLOCKS[k] for k in keys]


def _compile_block(key: BlockKey) -> BlockTiming:
    shape, kind, users, tokens, cache, chip = key
    graph = {"attention": lambda: attention_block(shape, users, tokens, cache),
             "mlp": lambda: mlp_block(shape, users * tokens),
             "lm_head": lambda: lm_head_block(shape, users)}[kind]()
    compiled = openlpu.compile(graph, chip, check=False)
    n = compiled.cycles_scheduled
    busy = {unit: np.zeros(n, bool) for unit in ("MXM", "VXM", "SXM")}
    for queue, instrs in compiled.program.queues.items():
        unit = busy.get(queue[:3])
        for instr in instrs if unit is not None else ():
            if instr.op not in IDLE_OPS:
                unit[instr.cycle:instr.cycle + max(1, instr.occupancy)] = True
    mxm, vec = busy["MXM"], busy["VXM"] | busy["SXM"]
    matrix, vector = int(mxm.sum()), int((vec & ~mxm).sum())
    rows = users * tokens
    name = f"{kind}, {rows} row{'s' * (rows > 1)}" + (f", cache {cache}" if kind == "attention" else "")
    return BlockTiming(name, n, matrix, vector, n - matrix - vector,
                       compiled.program.instructions())


# ---- network ----
@lru_cache(maxsize=8)
def allreduce_cycles(nbytes: int, tp: int) -> int:
    return collectives.compile_collective("allreduce", topology.node(tp), nbytes).latency


def stage_chips(p: Plan) -> tuple[topology.Topology, np.ndarray]:
    """The system's wiring and the chips of each stage [stages, tp]: active chips first, then the hot spares
    (a 576-chip system, as published, is 8 racks of 72 with the spare nodes at work)."""
    spec, tp = GROQ_V1, p.a.tp
    per_rack = spec.chips_per_rack
    active = (spec.nodes_per_rack - spec.spare_nodes_per_rack) * spec.chips_per_node
    racks = p.system_chips // per_rack if p.system_chips % per_rack == 0 else -(-p.system_chips // active)
    topo = topology.dragonfly(racks)
    order = np.concatenate([collectives.active_chips(topo), collectives.spare_chips(topo)])
    return topo, order[:p.chips].reshape(p.stages, tp)


def handoff_cycles(p: Plan, rows: int) -> list[int]:
    """Each chip of a stage sends the residual stream to its peer of the next stage, all eight together."""
    topo, groups = stage_chips(p)
    nbytes = rows * p.shape.d_model * ACTIVATION_BYTES
    return [schedule(topo, [Transfer(int(s), int(d), nbytes) for s, d in zip(src, dst, strict=True)]).makespan
            for src, dst in zip(groups[:-1], groups[1:], strict=True)]


def host_s(nbytes: float, a: PredictAssumptions) -> float:
    return a.host_latency_s + nbytes / a.host_bytes_per_s


# ---- the prediction ----
@dataclass
class Prediction:
    plan: Plan
    numerics: str
    prompt_tokens: int
    decode_s: float
    breakdown: dict[str, float]  # seconds per decode token, summing to decode_s
    ttft_s: float | None  # None: the prefill was not asked for
    ttft_breakdown: dict[str, float]
    slowest_stage_s: float
    blocks: list[BlockTiming]
    roofline: dict[str, float]
    gpus: list[dict]
    derivation: dict[str, str]
    chips_because: str  # why this system: given, or the smallest that fits and what the next smaller lacks

    @property
    def tokens_per_s_per_user(self) -> float:
        return 1 / self.decode_s

    @property
    def tokens_per_s_system(self) -> float:
        """Users in flight times each one's rate, and no faster than the slowest stage can pass tokens."""
        p = self.plan
        return min(p.users_in_flight * p.batch / self.decode_s, p.batch / self.slowest_stage_s)

    def as_dict(self) -> dict:
        p, s = self.plan, self.plan.shape
        experts = {"expert_parallel": s.expert_parallel, "experts_per_chip": s.experts,
                   "expert_slots_per_decode_step": s.slots(p.batch)} if s.router else {}
        return {
            "model": p.model.name, "numerics": self.numerics, "context": p.context, "batch": p.batch,
            "prompt_tokens": self.prompt_tokens, "chips": p.chips, "system_chips": p.system_chips,
            "partitioning": {"tensor_parallel": p.a.tp, "pipeline_stages": p.stages,
                             "layers_per_stage": sorted(set(p.stage_layers)), "lm_head": "last stage",
                             "embedding": "host"} | experts,
            "chips_because": self.chips_because,
            "sram_bytes_per_chip": p.bytes_per_chip, "sram_bytes_available": p.sram_bytes,
            "ttft_s": self.ttft_s, "decode_s_per_token": self.decode_s,
            "tokens_per_s_per_user": self.tokens_per_s_per_user, "tokens_per_s_system": self.tokens_per_s_system,
            "users_in_flight": p.users_in_flight * p.batch, "slowest_stage_s": self.slowest_stage_s,
            "breakdown": self.breakdown, "ttft_breakdown": self.ttft_breakdown, "derivation": self.derivation,
            "compiled_blocks": [b.__dict__ for b in self.blocks],
            "roofline": self.roofline, "gpu_baselines": self.gpus,
        }


def _add(total: dict[str, float], part: dict[str, float], k: float = 1.0) -> None:
    for key, value in part.items():
        total[key] = total.get(key, 0.0) + k * value


def predict(model: DecoderConfig, chips: int | None = None, numerics: str = "int8", context: int | None = None,
            prompt_tokens: int = 128, batch: int = 1, chip_name: str = "tsp-v1",
            a: PredictAssumptions = DEFAULTS, expert_parallel: int | None = None, prefill: bool = True) -> Prediction:
    """Plan (or check) the partitioning, compile each distinct block once and compose decode and TTFT
    (`prefill` False: decode only, for sweeps that need no TTFT)."""
    chip = get_chip(chip_name)
    context = model.context if context is None else context
    if batch < 1 or (prefill and not 1 <= prompt_tokens <= context):
        raise UserError(f"prompt tokens {prompt_tokens}, context {context}, batch {batch}: give a batch of at "
                        "least 1 and 1 <= prompt tokens <= context.")
    if chips is None:
        p = smallest_fit(model, numerics, context, batch, chip.sram_bytes, a, expert_parallel)
        if p is None:
            raise capacity_error(plan(model, (model.n_layers + 1) * a.tp, numerics, context, batch, chip.sram_bytes, a,
                                      expert_parallel), numerics)
        because = _smallest_because(p)
    else:
        p = plan(model, chips, numerics, context, batch, chip.sram_bytes, a, expert_parallel)
        if not p.fits:
            raise capacity_error(p, numerics)
        because = f"given: --chips {chips}"
    hz, s = chip.clock_hz, p.shape
    layers, stages = model.n_layers, p.stages

    # Decode: every layer the same two blocks and two all-reduces; then the hand-offs, LM head, host.
    prefill_keys = _prefill_keys(p, prompt_tokens, chip_name) if prefill else []
    attn, mlp, head = compile_blocks(decode_keys(p, chip_name) + prefill_keys)[:3]
    reduce = allreduce_cycles(batch * s.d_model * ACTIVATION_BYTES, a.tp)
    hand = handoff_cycles(p, batch)
    cyc: dict[str, float] = {}
    _add(cyc, attn.scaled(layers))
    _add(cyc, mlp.scaled(layers))
    _add(cyc, head.scaled(1))
    programs = 2 * layers + 1
    network = 2 * layers * reduce + sum(hand)
    sync_launch = programs * chip.notify_cycles
    step = sum(cyc.values()) + network + sync_launch
    deskew = clocks.plan_deskews(stage_chips(p)[0], int(step)).cost_cycles
    breakdown = {k: v / hz for k, v in cyc.items()} | {
        "network": network / hz, "synchronisation": (sync_launch + deskew) / hz,
        "host": host_s(batch * s.d_model * 2, a) + host_s(batch * s.vocab * ACTIVATION_BYTES, a)}
    decode_s = sum(breakdown.values())
    layer_cycles = attn.cycles + mlp.cycles + 2 * reduce + 2 * chip.notify_cycles
    stage_s = [(n * layer_cycles + (head.cycles if i == stages - 1 else 0)) / hz
               for i, n in enumerate(p.stage_layers)]

    ttft, ttft_parts, prefill_blocks = _prefill(p, prompt_tokens, chip, chip_name) if prefill else (None, {}, [])
    return Prediction(
        p, numerics, prompt_tokens, decode_s, breakdown, ttft, ttft_parts, max(stage_s),
        list(dict.fromkeys([attn, mlp, head, *prefill_blocks])), _roofline(p, chip, breakdown),
        _gpus(model, batch, context, prompt_tokens, numerics),
        _derivation(p, reduce, hand), because)


def _smallest_because(p: Plan) -> str:
    smaller = [n for n in system_sizes(tp=p.a.tp) if n < p.system_chips]
    if not smaller:
        return f"the smallest system: one node of {p.a.tp} chips holds it"
    q = plan(p.model, smaller[-1], p.shape.numerics, p.context, p.batch, p.sram_bytes, p.a, p.shape.expert_parallel)
    return (f"the smallest system that fits: on {q.system_chips} chips a chip would need "
            f"{q.bytes_per_chip / 1e6:,.1f} MB of SRAM, over its {q.sram_bytes / 1e6:,.1f} MB")


def decode_keys(p: Plan, chip_name: str = "tsp-v1") -> list[BlockKey]:
    """A decode step's blocks: attention over the caches at the context, the MLP, the LM head."""
    s, b = p.shape, p.batch
    return [(s, "attention", b, 1, p.context, chip_name), (s, "mlp", b, 1, 1, chip_name),
            (s, "lm_head", b, 1, 1, chip_name)]


def _prefill_keys(p: Plan, prompt: int, chip_name: str) -> list[BlockKey]:
    """The first and last chunks' attention, a chunk's MLP, the LM head of the prompt's last token."""
    s, chunk = p.shape, min(prompt, p.a.prefill_chunk)
    n = -(-prompt // chunk)
    return [(s, "attention", 1, chunk, chunk, chip_name), (s, "attention", 1, chunk, n * chunk, chip_name),
            (s, "mlp", 1, chunk, 1, chip_name), (s, "lm_head", 1, 1, 1, chip_name)]


def _prefill(p: Plan, prompt: int, chip: ChipSpec, chip_name: str):
    """TTFT: the prompt in chunks of `prefill_chunk` tokens, pipelined through the stages. Chunk k attends to
    the k * chunk tokens before it and its own; its attention block is interpolated linearly in that length
    between the first chunk's and the last one's, both compiled. A chunk's trip through the pipeline is the
    sum of its stages; the chunks before the last each hold the slowest stage once (the pipeline's fill)."""
    s, a, hz = p.shape, p.a, chip.clock_hz
    chunk = min(prompt, a.prefill_chunk)
    n = -(-prompt // chunk)
    first, last, mlp, head = compile_blocks(_prefill_keys(p, prompt, chip_name))
    reduce = allreduce_cycles(chunk * s.d_model * ACTIVATION_BYTES, a.tp)
    hand = handoff_cycles(p, chunk)

    def attn_cycles(k: int) -> float:
        return first.cycles + (last.cycles - first.cycles) * (k / (n - 1) if n > 1 else 0)

    def stage_cycles(k: int, layers: int) -> float:
        return layers * (attn_cycles(k) + mlp.cycles + 2 * reduce + 2 * chip.notify_cycles)

    trip = sum(stage_cycles(n - 1, m) for m in p.stage_layers) + sum(hand)
    fill = sum(max(stage_cycles(k, m) for m in p.stage_layers) + max(hand, default=0) for k in range(n - 1))
    compute = trip + fill + head.cycles + chip.notify_cycles
    host = host_s(prompt * s.d_model * 2, a) + host_s(s.vocab * ACTIVATION_BYTES, a)
    parts = {"pipeline_trip_of_last_chunk": trip / hz, "pipeline_fill": fill / hz,
             "lm_head": (head.cycles + chip.notify_cycles) / hz, "host": host}
    return compute / hz + host, parts, [first, *([last] if n > 1 else []), mlp, head]


def _roofline(p: Plan, chip: ChipSpec, breakdown: dict[str, float]) -> dict[str, float]:
    """What the chip's peaks alone would allow per decode token, with the same scheduled network and host
    terms: each stage reads its weights and caches once at the SRAM bandwidth, installs every weight in the
    MXM at ISCA20's rate (all planes in 40 cycles), and does its MACs at peak; the three overlap."""
    s = p.shape
    step = s.step_weights_per_layer(p.batch)
    weights = p.model.n_layers * s.weight_width * step + s.weight_width * s.d_model * s.vocab
    kv = p.model.n_layers * p.batch * p.context * s.kv_bytes_per_token()
    macs = p.model.n_layers * p.batch * (step + 2 * s.heads * s.head_dim * p.context) + p.batch * s.d_model * s.vocab
    macs_per_s = chip.peak_int8_ops / 2 / (1 if s.numerics == "int8" else 4)
    install_per_s = chip.mxm_planes * chip.mxm_size ** 2 / p.a.weight_install_cycles * chip.clock_hz
    terms = {"sram_s": (weights + kv) / chip.sram_bandwidth, "mxm_install_s": (weights + kv) / install_per_s,
             "mxm_s": macs / macs_per_s}
    fixed = breakdown["network"] + breakdown["host"]
    time_s = max(terms.values()) + fixed
    return terms | {"network_and_host_s": fixed, "time_s": time_s, "tokens_per_s_per_user": 1 / time_s,
                    "compiled_over_bound": sum(breakdown.values()) / time_s}


def _gpus(model, batch, context, prompt, numerics) -> list[dict]:
    rows = []
    for name, gpu in GPUS.items():
        try:
            rows.append(gpu_baseline(model, gpu, gpu.server_gpus, batch, context, prompt, numerics).as_dict())
        except UserError as err:
            rows.append({"gpu": name, "error": str(err)})
    return rows


def _derivation(p: Plan, reduce: int, hand: list[int]) -> dict[str, str]:
    s = p.shape
    experts = (f" (the MLP runs {s.slots(p.batch)} of the chip's {s.experts} expert(s), {s.ffn} columns each, "
               f"{s.expert_parallel}-way expert parallel)") if s.router else ""
    return {
        "matrix": "cycles in which an MXM queue is busy (weight install, multiply) in the compiled attention and "
                  f"MLP blocks x {p.model.n_layers} layers, plus the compiled LM head" + experts,
        "vector": "cycles in which only VXM/SXM queues are busy (norms, rotary, softmax, SiLU, casts), same blocks",
        "memory": "the rest of those blocks' scheduled cycles: MEM queues alone (SRAM reads, writes, copies) or "
                  "data in flight on the streams",
        "network": f"2 all-reduces a layer of {p.batch * s.d_model * ACTIVATION_BYTES:,} B over a node "
                   f"({reduce} cycles each, compiled collective) + {len(hand)} stage hand-offs "
                   f"({min(hand, default=0)}-{max(hand, default=0)} cycles, 8 transfers scheduled together)",
        "synchronisation": "a chip-wide Sync/Notify per compiled program launch (2 a layer + the LM head) "
                           "and the runtime deskews the step's length needs",
        "host": "PCIe: the token's embedding in (fp16) and the LM head's logits out (fp32), each 10 us + "
                "bytes / 24 GB/s (GROQFLOW)",
    }
