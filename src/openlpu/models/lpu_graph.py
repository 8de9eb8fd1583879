"""The llama architecture as an openlpu tensor `Graph`: one step of P new tokens against a KV cache of L slots.

The same builder makes the decode step (P = 1) and prefill steps (P prompt tokens); `graph.evaluate` is the
step's numpy reference at the chip's numerics, and `openlpu.compile` turns it into a program for the simulated
LPU. How the step is shaped around what the graph offers:

- the token embedding is looked up on the host: the step takes the embeddings x [P, d_model] (fp32), and
  returns the logits [P, vocab] (fp32) and `next`, each row's token chosen on the chip: greedy, or sampled
  with the host's Gumbel noise at a temperature, within the top-p nucleus (models/sampling_graph.py);
- the KV cache lives in SRAM as state tensors (`Graph.state`), per layer K and V as rows [L, kv] in fp16
  (kv = n_kv_heads * head_dim), with `mask` [H * P, L] adding MASKED to the slots not filled yet. The P new
  tokens are attended to separately (their keys and values never enter cache-sized tensors inside the step)
  and are written into rows `pos`.. of the cache by `write_rows` (MEM SCATTER at addresses computed on the
  chip), after the step's reads of it, for the next steps. Attention needs V^T (p . V^T on the MXM installs
  V^T's rows); writing a column of V^T at a run-time position would need per-lane addresses and a lane shift
  by the position, so V is kept as rows, written like K, and transposed on the MXM (exact), which depends on
  the cache alone and so runs off the layer's chain;
- heads without slicing columns: every head's query gets its own row, zero outside its kv head's columns
  ([H * P, kv], a 0/1 head mask and a 0/1 fold matmul, exact in fp16), so one matmul_nt against the cache
  gives every head's scores [H * P, L]. Their outputs [H * P, kv] are unfolded to [H * P, H * hd], each row
  keeps its own head's columns, and the row blocks of the H heads are added (row slices, exact);
- the softmax subtracts each row's maximum (SmolLM2's scores reach 54, past what `Graph.softmax` sums): a
  butterfly on the MXM, max(y, y rolled by 1, 2, 4, .. columns), each roll a 0/1 matmul;
- sums that broadcast over a row (norms, softmax denominators) are [rows, 1] columns that the MXM leaves in
  every lane (`row_sum`); squares are summed as a Gram matrix of fp16 parts (x . x^T on the MXM: exact
  products, one fp32 rounding), whose diagonal is picked by adding 1e30 off it before the rsqrt.

Numerics modes (`NUMERICS`): `fp16` casts every matmul input and weight to fp16 (fp32 accumulate, fp32 vector
math); `int8` stores weights as int8 with one fp32 scale per output channel, quantises each activation row to
int8 with its own scale s = ||x||_4 / 127 (the 4-norm is at least the largest magnitude, so nothing clips;
there is no cross-lane max for the exact one), multiplies int8 x int8 -> int32 and dequantises with both
scales in fp32; an RMSNorm'd input is quantised before the norm, whose factor joins the row scale. Attention
runs on the fp16 cache in both modes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from openlpu.chip.spec import ChipSpec, get_chip
from openlpu.compiler.graph import Graph, Node, rope_tables
from openlpu.errors import UserError
from openlpu.models.llama import LayerWeights, LlamaWeights
from openlpu.models.numerics import quantize_int8_per_channel
from openlpu.models.sampling_graph import choose_next
from openlpu.models.zoo import DecoderConfig

NUMERICS = ("fp16", "int8")
MASKED = -30000.0  # added to the scores of slots a query may not see: exp() of it is 0 in fp32
_OFF_DIAGONAL = 1e30  # rsqrt of it vanishes in fp16, so a row sum picks the diagonal


def check_numerics(numerics: str) -> str:
    if numerics not in NUMERICS:
        raise UserError(f"unknown numerics {numerics!r}: use one of {', '.join(NUMERICS)}.")
    return numerics


class StepBuilder:
    """Adds one llama step to a Graph: the model's shape, the numerics mode and the constants layers share."""

    def __init__(self, g: Graph, config: DecoderConfig, numerics: str, tokens: int, chip: ChipSpec):
        self.g, self.c, self.numerics, self.p = g, config, numerics, tokens
        self.lanes = chip.lanes
        self._shared: dict[str, Node] = {}

    def shared(self, name: str, value: np.ndarray, dtype: str) -> Node:
        """A constant made once however many layers use it (one copy in SRAM)."""
        if name not in self._shared:
            self._shared[name] = self.g.constant(name, value, dtype)
        return self._shared[name]

    # ---- matmuls with weights ----
    def prepare_input(self, x: Node) -> tuple[Node, Node | None]:
        """What every weight matmul of x needs: x in fp16, or x in int8 with its row scales."""
        if self.numerics == "fp16":
            return self.g.cast(x, "fp16"), None
        return self.quantize(x)

    def normed_input(self, x: Node, weight: np.ndarray, name: str) -> tuple[Node, Node | None]:
        """prepare_input(rms_norm(x) * weight). In int8 the norm's factor r goes into the row scale instead
        (the codes of r v are those of v): its reduction then runs beside the quantiser's, not before it."""
        if self.numerics == "fp16":
            return self.prepare_input(self.rms_norm(x, weight, name))
        codes, scale = self.quantize(self.g.mul(x, self.g.constant(f"{name}.norm", weight[None, :], "fp32")))
        return codes, self.g.mul(scale, self.rms_factor(x))

    def project(self, xin: tuple[Node, Node | None], weights: list[np.ndarray], name: str) -> list[Node]:
        """x . w^T (fp32) for each GGUF weight w (out_features, in_features). Several weights share one matmul
        whose output columns give each w whole tiles, so each output is a column slice on a tile edge."""
        g = self.g
        x, x_scale = xin
        widths = [-(-w.shape[0] // self.lanes) * self.lanes for w in weights]
        starts = [int(s) for s in np.cumsum([0] + widths[:-1])]
        w_all = weights[0]
        if len(weights) > 1:
            w_all = np.zeros((sum(widths), w_all.shape[1]), np.float32)
            for w, start in zip(weights, starts, strict=True):
                w_all[start:start + w.shape[0]] = w
        if self.numerics == "fp16":
            y = g.matmul(x, g.constant(f"{name}.w", w_all.T, "fp16"))
        else:
            q = quantize_int8_per_channel(w_all)
            acc = g.matmul(x, g.constant(f"{name}.w", q.q.T, "int8"))
            y = g.mul(g.mul(g.cast(acc, "fp32"), x_scale), g.constant(f"{name}.scale", q.scale[None, :], "fp32"))
        if len(weights) == 1:
            return [y]
        return [g.slice(y, cols=(start, start + w.shape[0])) for w, start in zip(weights, starts, strict=True)]

    def quantize(self, x: Node) -> tuple[Node, Node]:
        """x -> (int8 codes, row scale s): s = ||x||_4 / 127, as ||x||_2 * ||x / ||x||_2||_4 (both sums stay
        in range whatever the activations' size)."""
        g = self.g
        inv_norm = self.rsqrt_diagonal(self.gram(g.cast(x, "fp16")), 1.0, 1e-8)  # 1 / ||x||_2, below 1e4
        u = g.mul(x, inv_norm)
        u2 = g.cast(g.mul(u, u), "fp16")
        c = self.rsqrt_diagonal(self.gram(u2), 1.0, 1e-6)  # ||u||_4^-2, at most 1000
        inv_scale = g.mul(g.mul(inv_norm, g.mul(c, g.rsqrt(c))), 127.0)  # 127 / ||x||_4
        return g.cast(g.mul(x, inv_scale), "int8"), g.reciprocal(inv_scale)

    # ---- row reductions on the MXM ----
    def gram(self, a: Node, b: Node | None = None) -> Node:
        """a . b^T [P, P] of fp16 rows (b = a by default): exact products, one fp32 rounding per K tile."""
        return self.g.matmul_nt(a, a if b is None else b)

    def row_sum_small(self, x: Node) -> Node:
        """Row sums [rows, 1] of an fp32 tensor whose elements stay below 65504: an fp16 part and an fp16
        remainder (about 22 bits), cheaper than Graph.row_sum's three limbs, which cover any fp32."""
        g = self.g
        hi = g.cast(x, "fp16")
        return g.add(g.row_sum(hi), g.row_sum(g.cast(g.sub(x, g.cast(hi, "fp32")), "fp16")))

    def rsqrt_diagonal(self, gram: Node, scale: float, eps: float) -> Node:
        """rsqrt(diag(gram) * scale + eps) as a column [P, 1] that broadcasts over rows' columns (with P > 1,
        1e30 is added off the diagonal, whose rsqrt then vanishes in the row sum's fp16 parts)."""
        g, p = self.g, self.p
        t = gram if scale == 1 else g.mul(gram, scale)
        if p > 1:
            eye = np.eye(p)
            off = self.shared("offdiag", (1 - eye) * _OFF_DIAGONAL, "fp32")
            t = g.add(g.mul(t, self.shared("diag", eye, "fp32")), off)
        return self.row_sum_small(g.rsqrt(g.add(t, eps)))

    def rms_factor(self, x: Node) -> Node:
        """1 / sqrt(mean(x^2) + eps) as a column [P, 1]. The squares come from fp16 parts x = hi + lo as
        hi.hi + (2 lo).hi (lo.lo is below 2^-22 of the sum)."""
        g = self.g
        hi = g.cast(x, "fp16")
        lo2 = g.cast(g.mul(g.sub(x, g.cast(hi, "fp32")), 2.0), "fp16")
        return self.rsqrt_diagonal(g.add(self.gram(hi), self.gram(lo2, hi)), 1.0 / self.c.d_model, self.c.norm_eps)

    def rms_norm(self, x: Node, weight: np.ndarray, name: str) -> Node:
        """x / sqrt(mean(x^2) + eps) * weight."""
        g = self.g
        return g.mul(g.mul(x, self.rms_factor(x)), g.constant(f"{name}.norm", weight[None, :], "fp32"))

    def row_max(self, x: Node) -> Node:
        """Each row's maximum in every column, in fp16: max(y, y rolled by 1, 2, 4, ..), each roll a 0/1 matmul
        (exact in fp16); after rolls up to half the width every column has seen every other."""
        g = self.g
        cols = x.cols
        y = g.cast(x, "fp16")
        shift = 1
        while shift < cols:
            roll = np.roll(np.eye(cols), shift, axis=1)  # column j of y . roll is column j - shift of y
            y = g.maximum(y, g.cast(g.matmul(y, self.shared(f"roll{cols}_{shift}", roll, "fp16")), "fp16"))
            shift *= 2
        return y

    def first_column_to(self, y: Node, cols: int) -> Node:
        """[rows, n] fp16 -> [rows, cols] fp16 with every column equal to y's first (a 0/1 matmul)."""
        first = np.zeros((y.cols, cols))
        first[0] = 1
        return self.g.cast(self.g.matmul(y, self.shared(f"first{y.cols}_{cols}", first, "fp16")), "fp16")


class Heads:
    """The 0/1 constants that route heads through attention (see the module doc). Row h * P + p of the
    per-head tensors holds head h of token p."""

    def __init__(self, b: StepBuilder, kv_of_head: np.ndarray | None = None):
        """`kv_of_head[h]`: the kv head (a column block of the cache) that query head h reads; by default the
        model's grouping. A tensor-parallel shard passes its own heads' map, numbered from 0."""
        c, p = b.c, b.p
        if kv_of_head is None:
            kv_of_head = np.arange(c.n_heads) // (c.n_heads // c.n_kv_heads)
        h, hd = len(kv_of_head), c.head_dim
        self.n = h
        head_of_col = np.arange(h * hd) // hd  # query column -> its head
        row_head = np.repeat(np.arange(h), p)
        row_token = np.tile(np.arange(p), h)
        fold = np.zeros((h * hd, (int(kv_of_head.max()) + 1) * hd))  # query column (head, j) -> kv column (kv, j)
        fold[np.arange(h * hd), kv_of_head[head_of_col] * hd + np.arange(h * hd) % hd] = 1
        self.mask = b.g.constant("heads.mask", row_head[:, None] == head_of_col[None, :], "fp32")  # [H P, H hd]
        self.fold = b.g.constant("heads.fold", fold, "fp16")
        self.unfold = b.g.constant("heads.unfold", fold.T, "fp16")
        # prefill copies query row p to rows h * P + p: [H P, P] times q^T
        repeat = row_token[:, None] == np.arange(p)[None, :]
        self.repeat = b.g.constant("heads.repeat", repeat, "fp16") if p > 1 else None


def attention(b: StepBuilder, heads: Heads, q: Node, k_new: Node, v_new: Node, k_cache: Node, vt_cache: Node,
               mask: Node, mask_new: Node | None) -> Node:
    """softmax(q k^T + mask) v over the cached slots and the P new tokens; q [P, H hd] fp32 (scaled),
    k_new and v_new [P, kv] fp16 -> [P, H hd] fp32."""
    g, p, n_heads = b.g, b.p, heads.n
    if p == 1:
        q_rows = g.mul(heads.mask, q)  # [H, H hd]: row h keeps head h's columns
    else:
        q_rows = g.mul(g.matmul_nt(heads.repeat, g.transpose(g.cast(q, "fp16"))), heads.mask)
    q_kv = g.cast(g.matmul(g.cast(q_rows, "fp16"), heads.fold), "fp16")  # [H P, kv]
    s_cache = g.add(g.matmul_nt(q_kv, k_cache), mask)  # [H P, L]
    s_new = g.matmul_nt(q_kv, k_new)  # [H P, P]
    if mask_new is not None:
        s_new = g.add(s_new, mask_new)
    m_cache = g.maximum(b.row_max(s_cache), b.first_column_to(b.row_max(s_new), s_cache.cols))
    m_new = b.first_column_to(m_cache, p)
    e_cache = g.exp(g.sub(s_cache, g.cast(m_cache, "fp32")))
    e_new = g.exp(g.sub(s_new, g.cast(m_new, "fp32")))
    sum_new = b.row_sum_small(e_new)
    r = g.reciprocal(g.add(b.row_sum_small(e_cache), sum_new))  # [H P, 1]
    out = g.matmul_nt(g.cast(g.mul(e_cache, r), "fp16"), vt_cache)  # [H P, kv]
    if p == 1:  # e_new is one column: its row sum is e_new in every lane
        out = g.add(out, g.mul(g.mul(sum_new, r), g.cast(v_new, "fp32")))
    else:
        out = g.add(out, g.matmul_nt(g.cast(g.mul(e_new, r), "fp16"), g.transpose(v_new)))
    spread = g.mul(g.matmul(g.cast(out, "fp16"), heads.unfold), heads.mask)  # [H P, H hd], own head's columns
    blocks = [g.slice(spread, rows=(h * p, (h + 1) * p)) for h in range(n_heads)]
    while len(blocks) > 1:  # each column is nonzero in one block only: the sum is exact
        blocks = [g.add(blocks[i], blocks[i + 1]) if i + 1 < len(blocks) else blocks[i]
                  for i in range(0, len(blocks), 2)]
    return blocks[0]


def build_step_graph(config: DecoderConfig, weights: LlamaWeights, numerics: str = "int8", tokens: int = 1,
                     cache_len: int = 64, chip: str | ChipSpec = "tsp-v1",
                     layers: tuple[int, int] | None = None, sampling: str = "greedy") -> Graph:
    """The graph of one step of `tokens` new tokens against `cache_len` cache slots. Inputs (see `step_inputs`):
    `x`, `pos` (the first new token's position), `cos_q`, `sin_q`, `cos_k`, `sin_k`, `mask`, `mask_new`
    (prefill only). State (in SRAM across steps): per layer the cache `k{i}` and `v{i}` [L, kv] fp16, whose rows
    pos..pos + P - 1 the step writes (padding rows included, so pos + P <= L). Outputs: `logits` [P, vocab]
    and `next` [P, 1] int32, each row's token chosen on the chip by `sampling` (models/sampling_graph.py:
    `greedy`, the argmax, first on ties; `sample` and `nucleus` add the inputs `gumbel`, `inv_temp`, `top_p`).
    Fused weights start on the chip's tile edges, and `evaluate` needs its lanes.

    `layers` (lo, hi) builds one pipeline stage: layers lo..hi-1 of the model, with the output head only in
    the last stage; a stage before it returns the residual stream `x_out` [P, d] (fp32) that the next stage
    takes as its `x`. The stages' ops are the whole graph's, so together they give its bits."""
    check_numerics(numerics)
    c = config
    lo, hi = layers or (0, c.n_layers)
    if not 0 <= lo < hi <= c.n_layers:
        raise UserError(f"layers {lo}..{hi} are not a range of {c.name}'s {c.n_layers} layers.")
    if c.is_moe:
        raise UserError(f"{c.name} is a mixture of experts, which the LPU graph does not build yet; use a dense "
                        "llama such as smollm2-135m.")
    g = Graph()
    b = StepBuilder(g, c, numerics, tokens, get_chip(chip))
    x = g.input("x", (tokens, c.d_model), "fp32")
    nodes = LayerInputs.add(g, c, tokens, cache_len, c.n_heads, c.n_kv_heads)
    heads = Heads(b)
    d_kv = c.n_kv_heads * c.head_dim
    caches = {i: (g.state(f"k{i}", (cache_len, d_kv), "fp16"), g.state(f"v{i}", (cache_len, d_kv), "fp16"))
              for i in range(lo, hi)}
    # V^T depends on the cache alone: every layer's is made first (graph order is the order in which the
    # scheduler claims the MXM planes), so the transposes run ahead of the layers' chains, not on them
    vts = {i: g.transpose(v_cache) for i, (_, v_cache) in caches.items()}
    for i, lw in enumerate(weights.layers[lo:hi], start=lo):
        x = g.add(x, attention_sublayer(b, heads, nodes, x, i, lw, caches[i], vts[i]))
        x = g.add(x, ffn_sublayer(b, x, i, lw))
    if hi < c.n_layers:
        g.output("x_out", x)
    else:
        add_head(b, x, weights, sampling)
    return g


@dataclass(frozen=True)
class LayerInputs:
    """The step's input nodes that a layer reads besides the residual stream (see `step_inputs`)."""

    cos_q: Node
    sin_q: Node
    cos_k: Node
    sin_k: Node
    mask: Node
    mask_new: Node | None
    pos: Node

    @staticmethod
    def add(g: Graph, c: DecoderConfig, p: int, cache_len: int, n_heads: int, n_kv_heads: int) -> LayerInputs:
        d_q, d_kv = n_heads * c.head_dim, n_kv_heads * c.head_dim
        return LayerInputs(g.input("cos_q", (p, d_q), "fp32"), g.input("sin_q", (p, d_q), "fp32"),
                           g.input("cos_k", (p, d_kv), "fp32"), g.input("sin_k", (p, d_kv), "fp32"),
                           g.input("mask", (n_heads * p, cache_len), "fp32"),
                           g.input("mask_new", (n_heads * p, p), "fp32") if p > 1 else None,
                           g.input("pos", (1, 1), "int32"))


def attention_sublayer(b: StepBuilder, heads: Heads, nodes: LayerInputs, x: Node, i: int, lw: LayerWeights,
                       cache: tuple[Node, Node], vt_cache: Node) -> Node:
    """Layer i's attention output before the residual add, [P, d] fp32; writes the new keys and values into
    the layer's cache (K, V) rows pos.. after reading it."""
    g, c = b.g, b.c
    q, k, v = b.project(b.normed_input(x, lw.attn_norm, f"l{i}.attn"), [lw.wq, lw.wk, lw.wv], f"l{i}.qkv")
    q = g.mul(g.rope(q, nodes.cos_q, nodes.sin_q), float(1 / np.sqrt(c.head_dim)))
    k = g.cast(g.rope(k, nodes.cos_k, nodes.sin_k), "fp16", name=f"k_new{i}")
    v = g.cast(v, "fp16", name=f"v_new{i}")
    k_cache, v_cache = cache
    attn = attention(b, heads, q, k, v, k_cache, vt_cache, nodes.mask, nodes.mask_new)
    g.write_rows(k_cache, k, nodes.pos)
    g.write_rows(v_cache, v, nodes.pos)
    return b.project(b.prepare_input(attn), [lw.wo], f"l{i}.o")[0]


def ffn_sublayer(b: StepBuilder, x: Node, i: int, lw: LayerWeights) -> Node:
    """Layer i's SwiGLU feed-forward output before the residual add, [P, d] fp32."""
    g = b.g
    gate, up = b.project(b.normed_input(x, lw.ffn_norm, f"l{i}.ffn"), [lw.w_gate, lw.w_up], f"l{i}.gate_up")
    return b.project(b.prepare_input(g.mul(g.silu(gate), up)), [lw.w_down], f"l{i}.down")[0]


def add_head(b: StepBuilder, x: Node, weights: LlamaWeights, sampling: str = "greedy") -> None:
    """The final norm and output head on the residual stream x: outputs `logits` and `next`."""
    g = b.g
    logits = b.project(b.normed_input(x, weights.output_norm, "out"), [weights.output], "out")[0]
    g.output("logits", logits)
    g.output("next", choose_next(b, logits, sampling))  # the next token, chosen on the chip


def split_stages(config: DecoderConfig, stages: int) -> list[tuple[int, int]]:
    """Contiguous layer ranges for a pipeline of `stages` chips, balanced by weights: the last stage also holds
    the output head (tied to the embedding, as large as several layers), so it takes fewer layers."""
    c = config
    if not 1 <= stages <= c.n_layers:
        raise UserError(f"{c.name} has {c.n_layers} layers: it splits into 1 to {c.n_layers} pipeline stages, "
                        f"not {stages}.")
    layer, head = c.layer_params, c.vocab * c.d_model
    total = c.n_layers * layer + head
    cuts, lo = [], 0
    for s in range(stages - 1):
        # end this stage where its weights come nearest to an even share of what is left
        share = (total - lo * layer) / (stages - s)
        hi = min(max(lo + 1, round(lo + share / layer)), c.n_layers - (stages - 1 - s))
        cuts.append((lo, hi))
        lo = hi
    return [*cuts, (lo, c.n_layers)]


def step_inputs(config: DecoderConfig, embeddings: np.ndarray, start: int, cache_len: int,
                n_heads: int | None = None, n_kv_heads: int | None = None) -> dict[str, np.ndarray]:
    """The step's inputs for `embeddings` [P, d] of the tokens at positions start.. (a prefill bucket may end in
    padding rows: they come last, so no real token attends to them). Every query sees the cache slots
    0 .. start - 1 and the new tokens up to itself; the step writes its P rows into slots start..
    `n_heads`, `n_kv_heads`: the heads of a tensor-parallel shard (the model's by default)."""
    c = config
    n_heads, n_kv_heads = n_heads or c.n_heads, n_kv_heads or c.n_kv_heads
    p = len(embeddings)
    if start + p > cache_len:
        raise UserError(f"{start} cached tokens and {p} new ones do not fit a cache of {cache_len} slots; compile "
                        "the step for a longer cache.")
    positions = start + np.arange(p)
    cos_q, sin_q = rope_tables(positions, c.head_dim, n_heads, c.rope_theta)
    cos_k, sin_k = rope_tables(positions, c.head_dim, n_kv_heads, c.rope_theta)
    mask = np.where(np.arange(cache_len) < start, 0.0, MASKED).astype(np.float32)
    inputs = {"x": embeddings.astype(np.float32), "pos": np.array([[start]], np.int32), "cos_q": cos_q,
              "sin_q": sin_q, "cos_k": cos_k, "sin_k": sin_k, "mask": np.tile(mask, (n_heads * p, 1))}
    if p > 1:
        causal = np.where(np.arange(p)[None, :] <= np.arange(p)[:, None], 0.0, MASKED).astype(np.float32)
        inputs["mask_new"] = np.tile(causal, (n_heads, 1))
    return inputs
