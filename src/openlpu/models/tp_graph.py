"""Tensor parallelism of the llama step over the chips of a node (Megatron's split of a layer).

Each chip holds a shard of every layer: some query heads with the kv heads they read (their rows of Wq, Wk,
Wv, their columns of Wo and their part of the KV cache), and a block of the FFN's hidden columns (rows of
W_gate and W_up, columns of W_down). A layer is then two segments, each a program per chip that ends in a
partial sum [P, d] of the layer's output:

- `attn` i: x += reduced (the previous FFN's all-reduced output; none before layer 0), RMSNorm, the shard's
  q, k, v, RoPE, attention over its heads, their cache rows written, and x_attn . Wo[:, its heads]^T;
- `ffn` i: x += reduced (the attention's), RMSNorm, SwiGLU over its hidden columns, . W_down[:, them]^T;

and `head` on chip 0: x += reduced (the last FFN's), the final norm, the tied head, `logits` and `next`.
Between segments the chips all-reduce their partials over the node's links (system/collectives.py, fp32
adds in the order of its reduce-scatter); every chip gets the same sum, adds it to its own copy of the
residual stream and carries that into its next segment as `x_out`.

Heads are dealt out contiguously (numpy's array_split: SmolLM2's 9 heads on 8 chips give chip 0 two), so a
chip's heads read one or two kv heads, each kept on every chip that needs it (SmolLM2: 3 kv heads, 8 chips).
The numbers are those of this partition: the partial sums are rounded in fp32 before they are added, so
the tokens can differ from the single-chip graph's; `Graph.evaluate` of the same segments with the same
all-reduce is the tensor-parallel reference that the compiled chips must equal bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from openlpu.chip.spec import ChipSpec, get_chip
from openlpu.compiler.graph import Graph
from openlpu.errors import UserError
from openlpu.models.llama import LayerWeights, LlamaWeights
from openlpu.models.lpu_graph import (
    Heads,
    LayerInputs,
    StepBuilder,
    add_head,
    attention_sublayer,
    check_numerics,
    ffn_sublayer,
)
from openlpu.models.zoo import DecoderConfig

KINDS = ("attn", "ffn", "head")


@dataclass(frozen=True)
class Shard:
    """What chip `rank` of a tensor-parallel group holds of every layer."""

    rank: int
    heads: tuple[int, ...]  # the model's query heads
    kv_heads: tuple[int, ...]  # the model's kv heads they read
    ffn: tuple[int, int]  # hidden columns lo..hi-1 of the FFN
    kv_of_head: tuple[int, ...]  # for each of `heads`, its kv head's index in `kv_heads`


def shard_plan(config: DecoderConfig, ways: int) -> list[Shard]:
    """Heads and FFN columns dealt out contiguously over `ways` chips (the first chips take one more where
    they do not divide)."""
    c = config
    if not 1 <= ways <= min(c.n_heads, c.d_ffn):
        raise UserError(f"{c.name} has {c.n_heads} query heads: tensor parallelism splits it over 1 to "
                        f"{min(c.n_heads, c.d_ffn)} chips, not {ways}.")
    if c.is_moe:
        raise UserError(f"{c.name} is a mixture of experts, which the LPU graph does not build yet; use a dense "
                        "llama such as smollm2-135m.")
    kv_of_model_head = np.arange(c.n_heads) // (c.n_heads // c.n_kv_heads)
    cuts = np.array_split(np.arange(c.d_ffn), ways)
    shards = []
    for rank, heads in enumerate(np.array_split(np.arange(c.n_heads), ways)):
        kv = np.unique(kv_of_model_head[heads])
        ffn = int(cuts[rank][0]), int(cuts[rank][-1]) + 1
        shards.append(Shard(rank, tuple(heads.tolist()), tuple(kv.tolist()), ffn,
                            tuple(np.searchsorted(kv, kv_of_model_head[heads]).tolist())))
    return shards


def shard_layer(config: DecoderConfig, lw: LayerWeights, shard: Shard) -> LayerWeights:
    """The rows and columns of one layer's weights that `shard` holds."""
    hd = config.head_dim
    q = np.concatenate([np.arange(h * hd, (h + 1) * hd) for h in shard.heads])
    kv = np.concatenate([np.arange(h * hd, (h + 1) * hd) for h in shard.kv_heads])
    lo, hi = shard.ffn
    return replace(lw, wq=lw.wq[q], wk=lw.wk[kv], wv=lw.wv[kv], wo=lw.wo[:, q], w_gate=lw.w_gate[lo:hi],
                   w_up=lw.w_up[lo:hi], w_down=lw.w_down[:, lo:hi])


def build_segment_graph(config: DecoderConfig, weights: LlamaWeights, shard: Shard, kind: str, layer: int,
                        numerics: str = "int8", tokens: int = 1, cache_len: int = 64,
                        chip: str | ChipSpec = "tsp-v1", sampling: str = "greedy") -> Graph:
    """Chip `shard.rank`'s program for one segment (see the module doc). Inputs: `x` [P, d] fp32 (the residual
    stream) and, unless this is layer 0's attention, `reduced` [P, d] fp32; attention also takes the step's
    inputs for the shard's heads (`step_inputs(..., n_heads=len(shard.heads), n_kv_heads=len(shard.kv_heads))`)
    and keeps its cache rows as state `k{layer}`, `v{layer}` [L, kv heads * head_dim]. Outputs: `partial`
    [P, d] fp32 and `x_out` (x after the add), or, for `head`, `logits` and `next` chosen by `sampling` (as in
    `build_step_graph`)."""
    check_numerics(numerics)
    c = config
    if kind not in KINDS:
        raise UserError(f"unknown segment {kind!r}: use one of {', '.join(KINDS)}.")
    if not 0 <= layer < c.n_layers:
        raise UserError(f"layer {layer} is not one of {c.name}'s {c.n_layers} layers.")
    g = Graph()
    b = StepBuilder(g, c, numerics, tokens, get_chip(chip))
    x = g.input("x", (tokens, c.d_model), "fp32")
    if kind != "attn" or layer > 0:
        x = g.add(x, g.input("reduced", (tokens, c.d_model), "fp32"))
        if kind != "head":
            g.output("x_out", x)
    if kind == "head":
        add_head(b, x, weights, sampling)
        return g
    lw = shard_layer(c, weights.layers[layer], shard)
    if kind == "ffn":
        g.output("partial", ffn_sublayer(b, x, layer, lw))
        return g
    nodes = LayerInputs.add(g, c, tokens, cache_len, len(shard.heads), len(shard.kv_heads))
    d_kv = len(shard.kv_heads) * c.head_dim
    cache = g.state(f"k{layer}", (cache_len, d_kv), "fp16"), g.state(f"v{layer}", (cache_len, d_kv), "fp16")
    heads = Heads(b, np.array(shard.kv_of_head))
    g.output("partial", attention_sublayer(b, heads, nodes, x, layer, lw, cache, g.transpose(cache[1])))
    return g


def segments(config: DecoderConfig) -> list[tuple[str, int]]:
    """The step's segments in the order they run: (kind, layer)."""
    return [(kind, i) for i in range(config.n_layers) for kind in ("attn", "ffn")] + [("head", config.n_layers - 1)]
