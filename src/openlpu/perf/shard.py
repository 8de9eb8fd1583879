"""The graphs of one chip's shard of a decoder layer, for timing: what `predict` compiles and composes.

A layer of tensor parallelism over `tp` chips splits into two programs, cut where the all-reduces are:
- `attention_block`: the residual add of the previous all-reduce, RMSNorm, the q, k, v projections of
  the chip's heads, rotary positions, attention of every head over its KV cache of `cache` tokens, and
  the chip's share of the output projection (a partial sum, all-reduced over the group);
- `mlp_block`: the residual add, RMSNorm, the chip's columns of gate and up, SiLU, and its rows of down
  (a partial sum, all-reduced); for a mixture of experts, the router and the expert slots the step runs;
and `lm_head_block`: the final RMSNorm and the chip's columns of the output projection.

A step's rows are one token of each user (decode) or a chunk of one user's prompt (prefill). Weights are
random but fixed (seed 0): their values do not change the schedule as long as no two weight tiles are
equal, as in a real model (the compiler stores equal tiles once, so zeros would all share one slice's
rows and serialise their reads). Attention runs in fp16 (the cache's format) whatever
the weight numerics. The graph has no reshape, so heads are moved with 0/1 matmuls:
- each query head's columns are picked with a selector matmul [q_cols, head_dim], and the heads that
  share a KV head are stacked as rows (concat), so their scores are one `matmul_nt` against the cached
  keys (GQA: the keys are installed on the MXM once per KV head);
- the values are cached transposed (V^T [head_dim, cache]), so `matmul_nt(probs, V^T)` installs them;
- each head's output rows are spread back to its columns by the selector's transpose and summed.

Mixture of experts (expert parallelism): the node's `tp` chips form `expert_parallel` groups, each holding
E / expert_parallel experts split tensor-parallel over its tp / expert_parallel chips. Routing is data,
the schedule is not: a static program runs, on every chip, as many expert slots as the step's tokens could
send to its group in the worst case, min(experts held, rows x top-k). A slot is one expert's gate, up and
down at the chip's width, weighted by its column of the router's softmax; which expert fills a slot is an
address (the weights of the chosen expert), which does not change the schedule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from openlpu.chip.numerics import DTYPES
from openlpu.compiler.graph import Graph, Node, rope_tables
from openlpu.errors import UserError
from openlpu.models.zoo import DecoderConfig

MASKED = -30000.0  # added to the scores of later positions in a prefill: exp() of it is 0 in fp32


@dataclass(frozen=True)
class ShardShape:
    """The sizes of one chip's shard: everything a compiled block's timing depends on."""

    d_model: int
    heads: int  # query heads on the chip
    kv_heads: int  # KV heads on the chip (replicated when the model has fewer KV heads than chips)
    head_dim: int
    ffn: int  # FFN columns of each expert on the chip (a dense model is one expert)
    vocab: int  # LM-head columns on the chip
    numerics: str  # weights: int8 or fp16
    experts: int = 1  # experts whose columns the chip holds
    top_k: int = 1  # experts each token uses
    router: int = 0  # router columns: the model's experts (0: a dense MLP)
    expert_parallel: int = 1  # groups of the node's chips holding different experts

    @classmethod
    def of(cls, model: DecoderConfig, tp: int, numerics: str, expert_parallel: int = 1) -> ShardShape:
        ep = expert_parallel
        if tp % ep or model.n_experts % ep:
            raise UserError(f"expert parallelism {ep} for {model.name} on {tp} chips a node: use one of "
                            f"{', '.join(map(str, expert_parallel_choices(model, tp)))}.")
        if model.n_heads % tp or model.d_ffn % (tp // ep):
            raise UserError(f"{model.name} has {model.n_heads} heads and FFN {model.d_ffn}: they do not split "
                            f"{tp} ways; use a model whose heads and FFN are multiples of {tp}.")
        return cls(model.d_model, model.n_heads // tp, max(1, model.n_kv_heads // tp), model.head_dim,
                   model.d_ffn // (tp // ep), -(-model.vocab // tp), numerics, model.n_experts // ep,
                   model.experts_per_token, model.n_experts if model.is_moe else 0, ep)

    def slots(self, rows: int) -> int:
        """Experts a step of `rows` tokens runs on the chip: as many as the tokens could pick from its group."""
        return min(self.experts, rows * self.top_k)

    @property
    def q_cols(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_cols(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def weight_width(self) -> int:
        return 1 if self.numerics == "int8" else 2

    @property
    def matmul_weights_per_layer(self) -> int:
        """Every matmul weight the chip holds for a layer."""
        return self.step_weights_per_layer(rows=self.experts)

    def step_weights_per_layer(self, rows: int) -> int:
        """The matmul weights a step of `rows` tokens uses: attention, router and the experts it runs."""
        d = self.d_model
        attention = d * (self.q_cols + 2 * self.kv_cols) + self.q_cols * d
        return attention + d * self.router + 3 * d * self.ffn * self.slots(rows)

    def weight_bytes_per_layer(self) -> int:
        """Matmul weights at the numerics, and the two RMSNorm weights in fp32."""
        return self.weight_width * self.matmul_weights_per_layer + 2 * 4 * self.d_model

    def lm_head_bytes(self) -> int:
        return self.weight_width * self.d_model * self.vocab + 4 * self.d_model

    def kv_bytes_per_token(self) -> int:
        """K and V of one token in one layer, fp16."""
        return 2 * self.kv_cols * 2


class _Blocks:
    def __init__(self, s: ShardShape, rows: int):
        self.s, self.rows, self.g = s, rows, Graph()
        self.wdtype = s.numerics
        self.rng = np.random.default_rng(0)

    def proj(self, h: Node, k: int, n: int, name: str) -> Node:
        w = self.g.constant(name, self.rng.integers(-127, 128, (k, n), dtype=np.int8).astype(DTYPES[self.wdtype]))
        return self.g.cast(self.g.matmul(h, w), "fp32")

    def norm(self, x: Node, name: str) -> Node:
        g = self.g
        return g.cast(g.rmsnorm(x, g.constant(name, np.ones((1, self.s.d_model), np.float32)), 1e-5), self.wdtype)

    def residual(self, name: str) -> Node:
        """x plus the all-reduced partial sum that the previous block produced."""
        g, shape = self.g, (self.rows, self.s.d_model)
        return g.add(g.input("x", shape, "fp32"), g.input(name, shape, "fp32"))

    def rope(self, x: Node, heads: int, name: str) -> Node:
        cos, sin = rope_tables(np.arange(self.rows), self.s.head_dim, heads, 1e4)
        g = self.g
        return g.rope(x, g.constant(f"{name}_cos", cos), g.constant(f"{name}_sin", sin))


def attention_block(s: ShardShape, users: int, tokens: int, cache: int) -> Graph:
    """Residual add, RMSNorm, q/k/v, rotary, attention over `cache` cached tokens, partial output projection.
    Decode: `users` rows of one token, each against its own cache. Prefill: one user's `tokens` rows (the
    last of `cache` positions), each masked from the positions after its own."""
    if (users > 1 and tokens > 1) or not 1 <= tokens <= cache:
        raise UserError(f"{users} users of {tokens} tokens against {cache} cached: a step is one user's "
                        "prompt chunk (tokens <= cache) or one token of each user.")
    b = _Blocks(s, users * tokens)
    g, hd, group = b.g, s.head_dim, s.heads // s.kv_heads
    x = b.residual("mlp_sum")
    h = b.norm(x, "norm1")
    q = g.cast(b.rope(b.proj(h, s.d_model, s.q_cols, "wq"), s.heads, "q"), "fp16")
    g.output("k_new", b.rope(b.proj(h, s.d_model, s.kv_cols, "wk"), s.kv_heads, "k"))
    g.output("v_new", b.proj(h, s.d_model, s.kv_cols, "wv"))
    later = np.arange(cache)[None, :] > (cache - tokens + np.arange(tokens))[:, None]
    causal = np.where(later, MASKED, 0.0).astype(np.float32) if later.any() else None
    per_user = []
    for u in range(users):
        qu = q if users == 1 else g.slice(q, rows=(u, u + 1))
        merged = None
        for kv in range(s.kv_heads):
            heads = range(kv * group, (kv + 1) * group)
            picked = [g.matmul(qu, g.constant(f"pick{u}_{i}", _selector(s.q_cols, hd, i))) for i in heads]
            qg = g.cast(picked[0] if group == 1 else g.concat(picked, axis=0), "fp16")  # [group * tokens, hd]
            keys = g.input(f"k_cache{u}_{kv}", (cache, hd), "fp16")
            values_t = g.input(f"vt_cache{u}_{kv}", (hd, cache), "fp16")
            scores = g.mul(g.cast(g.matmul_nt(qg, keys), "fp32"), float(1 / np.sqrt(hd)))
            if causal is not None:
                scores = g.add(scores, g.constant(f"causal{u}_{kv}", np.tile(causal, (group, 1))))
            out = g.cast(g.matmul_nt(g.cast(g.softmax(scores), "fp16"), values_t), "fp16")  # [group * tokens, hd]
            for j, i in enumerate(heads):
                head = out if group == 1 else g.slice(out, rows=(j * tokens, (j + 1) * tokens))
                spread = g.matmul(head, g.constant(f"spread{u}_{i}", _selector(s.q_cols, hd, i).T.copy()))
                merged = spread if merged is None else g.add(merged, spread)
        per_user.append(merged)
    attn = g.cast(per_user[0] if users == 1 else g.concat(per_user, axis=0), b.wdtype)
    g.output("attn_partial", b.proj(attn, s.q_cols, s.d_model, "wo"))
    g.output("x_out", x)
    return g


def mlp_block(s: ShardShape, rows: int) -> Graph:
    """Residual add, RMSNorm, the chip's gate and up columns, SiLU, and its partial down projection; for a
    mixture of experts, the router's softmax and each expert slot's output weighted by its column of it."""
    b = _Blocks(s, rows)
    g = b.g
    x = b.residual("attn_sum")
    h = b.norm(x, "norm2")
    probs = g.cast(g.softmax(b.proj(h, s.d_model, s.router, "wrouter")), "fp16") if s.router else None
    total = None
    for j in range(s.slots(rows)):
        act = g.mul(g.silu(b.proj(h, s.d_model, s.ffn, f"wgate{j}")), b.proj(h, s.d_model, s.ffn, f"wup{j}"))
        out = b.proj(g.cast(act, b.wdtype), s.ffn, s.d_model, f"wdown{j}")
        if probs is not None:
            pick = np.zeros((s.router, 1), np.float16)
            pick[j % s.router] = 1
            out = g.mul(out, g.cast(g.matmul(probs, g.constant(f"route{j}", pick)), "fp32"))
        total = out if total is None else g.add(total, out)
    g.output("mlp_partial", total)
    g.output("x_out", x)
    return g


def expert_parallel_choices(model: DecoderConfig, tp: int) -> list[int]:
    """Expert-parallel degrees that split the experts and the node's chips evenly (1 for a dense model)."""
    return [ep for ep in range(1, tp + 1) if tp % ep == 0 and model.n_experts % ep == 0]


def default_expert_parallel(model: DecoderConfig, tp: int, rows: int) -> int:
    """The degree whose chips run the fewest expert columns in a step of `rows` tokens (the worst case of
    routing); on a tie, the most expert-parallel one (fewer, wider matmuls)."""
    splits = [ep for ep in expert_parallel_choices(model, tp) if model.d_ffn % (tp // ep) == 0]
    shapes = [ShardShape.of(model, tp, "int8", ep) for ep in splits or [1]]  # none: `of` says why
    best = min(shapes, key=lambda s: (s.slots(rows) * s.ffn, -s.expert_parallel))
    return best.expert_parallel


def lm_head_block(s: ShardShape, rows: int) -> Graph:
    """The residual add, final RMSNorm and the chip's columns of the logits, for one token of `rows` users."""
    b = _Blocks(s, rows)
    g = b.g
    g.output("logits", b.proj(b.norm(b.residual("mlp_sum"), "norm_out"), s.d_model, s.vocab, "lm_head"))
    return g


def _selector(q_cols: int, head_dim: int, head: int) -> np.ndarray:
    """0/1 [q_cols, head_dim]: q @ it is head `head`'s columns."""
    sel = np.zeros((q_cols, head_dim), np.float16)
    sel[head * head_dim:(head + 1) * head_dim] = np.eye(head_dim, dtype=np.float16)
    return sel
