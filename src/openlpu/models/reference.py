"""A numpy reference of the llama architecture with a KV cache: the oracle the LPU path must match.

One `forward` serves prefill (many tokens) and decode (one token). Each layer:
    h = x + Wo . attention(rope(Wq . rms(x)), rope(Wk . rms(x)), Wv . rms(x))   (GQA, causal, KV cached)
    x = h + Wdown . (silu(Wgate . rms(h)) * Wup . rms(h))
and logits = Wout . rms(x). RoPE rotates adjacent pairs (2i, 2i+1) of each head by position * theta_i,
theta_i = rope_theta ** (-2i / head_dim): the layout llama.cpp's converter gives the Q/K rows.

Every matmul goes through `numerics.matmul`, so a lower-precision mode reuses this code unchanged.
Q/K/V and gate/up are fused into one matrix each (per-row schemes are unaffected by stacking rows).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from openlpu.errors import UserError
from openlpu.models.llama import LlamaWeights
from openlpu.models.numerics import FP32, Numerics
from openlpu.models.zoo import DecoderConfig

_INITIAL_CACHE_TOKENS = 256


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    return x * (1.0 / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)) * weight


def silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def rope_tables(config: DecoderConfig, n_positions: int) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of position * theta_i, each (n_positions, head_dim // 2), fp32."""
    i = np.arange(config.head_dim // 2, dtype=np.float64)
    theta = config.rope_theta ** (-2.0 * i / config.head_dim)
    angle = np.arange(n_positions, dtype=np.float64)[:, None] * theta[None, :]
    return np.cos(angle).astype(np.float32), np.sin(angle).astype(np.float32)


def apply_rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Rotate adjacent pairs of x (n, heads, head_dim) by the angles of its n positions (n, head_dim // 2)."""
    even, odd = x[..., 0::2], x[..., 1::2]
    c, s = cos[:, None, :], sin[:, None, :]
    out = np.empty_like(x)
    out[..., 0::2] = even * c - odd * s
    out[..., 1::2] = even * s + odd * c
    return out


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@dataclass(frozen=True, eq=False)
class _Layer:
    attn_norm: np.ndarray
    wqkv: Any  # prepared by the numerics: rows Q, then K, then V
    wo: Any
    ffn_norm: np.ndarray
    w_gate_up: Any  # rows gate, then up
    w_down: Any


class LlamaReference:
    """The model plus one sequence's KV cache. `forward` appends tokens at `position` and returns logits."""

    def __init__(self, config: DecoderConfig, weights: LlamaWeights, numerics: Numerics = FP32) -> None:
        self.config, self.numerics = config, numerics
        prepare = numerics.prepare
        self._layers = [
            _Layer(
                attn_norm=lw.attn_norm,
                wqkv=prepare(np.concatenate([lw.wq, lw.wk, lw.wv])),
                wo=prepare(lw.wo),
                ffn_norm=lw.ffn_norm,
                w_gate_up=prepare(np.concatenate([lw.w_gate, lw.w_up])),
                w_down=prepare(lw.w_down),
            )
            for lw in weights.layers
        ]
        self._embedding = weights.token_embd
        self._output_norm = weights.output_norm
        self._output = prepare(weights.output)
        self._cos, self._sin = rope_tables(config, config.context)
        self._k: list[np.ndarray] = []  # per layer (n_kv_heads, capacity, head_dim)
        self._v: list[np.ndarray] = []
        self.position = 0
        self._reserve(_INITIAL_CACHE_TOKENS)

    def reset(self) -> None:
        """Forget the sequence (the cache memory is kept)."""
        self.position = 0

    @property
    def capacity(self) -> int:
        return self._k[0].shape[1] if self._k else 0

    def _reserve(self, n_tokens: int) -> None:
        """Grow the cache (doubling, capped at the context) so that it holds n_tokens positions."""
        if n_tokens <= self.capacity:
            return
        c = self.config
        new = min(c.context, max(n_tokens, 2 * self.capacity))
        shape = (c.n_kv_heads, new, c.head_dim)
        k = [np.zeros(shape, np.float32) for _ in range(c.n_layers)]
        v = [np.zeros(shape, np.float32) for _ in range(c.n_layers)]
        for old, fresh in zip(self._k + self._v, k + v, strict=False):  # nothing to copy on the first call
            fresh[:, : self.position] = old[:, : self.position]
        self._k, self._v = k, v

    def forward(self, tokens: Sequence[int], all_logits: bool = False) -> np.ndarray:
        """Run `tokens` at positions position.. and cache them; logits of the last token (vocab,),
        or of every token (n, vocab) with all_logits."""
        c = self.config
        n, start = len(tokens), self.position
        if n == 0:
            raise UserError("no tokens to run; give a prompt of at least one token")
        if start + n > c.context:
            raise UserError(f"{start} cached plus {n} new tokens exceed the context length of "
                            f"{c.context}; shorten the prompt or ask for fewer new tokens")
        ids = np.asarray(tokens)
        bad = ids[(ids < 0) | (ids >= c.vocab)]
        if bad.size:
            raise UserError(f"token ids must lie in [0, {c.vocab}); got {bad[:5].tolist()}; encode text with the "
                            "model's own tokenizer")
        self._reserve(start + n)
        end = start + n
        cos, sin = self._cos[start:end], self._sin[start:end]
        # Causal mask of the new queries against all cached keys: query i sits at position start + i.
        mask = np.arange(end)[None, :] > (start + np.arange(n))[:, None] if n > 1 else None
        mm = self.numerics.matmul
        x = self._embedding[ids]
        for layer, k_cache, v_cache in zip(self._layers, self._k, self._v, strict=True):
            qkv = mm(rms_norm(x, layer.attn_norm, c.norm_eps), layer.wqkv)
            q = apply_rope(qkv[:, : c.d_attn].reshape(n, c.n_heads, c.head_dim), cos, sin)
            k = apply_rope(qkv[:, c.d_attn : c.d_attn + c.d_kv].reshape(n, c.n_kv_heads, c.head_dim), cos, sin)
            k_cache[:, start:end] = k.transpose(1, 0, 2)
            v_cache[:, start:end] = qkv[:, c.d_attn + c.d_kv :].reshape(n, c.n_kv_heads, c.head_dim).transpose(1, 0, 2)
            x = x + mm(self._attention(q, k_cache[:, :end], v_cache[:, :end], mask), layer.wo)
            gate_up = mm(rms_norm(x, layer.ffn_norm, c.norm_eps), layer.w_gate_up)
            x = x + mm(silu(gate_up[:, : c.d_ffn]) * gate_up[:, c.d_ffn :], layer.w_down)
        self.position = end
        rows = x if all_logits else x[-1:]
        logits = mm(rms_norm(rows, self._output_norm, c.norm_eps), self._output)
        return logits if all_logits else logits[0]

    def _attention(self, q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        """q (n, n_heads, hd); k, v (n_kv_heads, T, hd) -> (n, n_heads * hd). Head h reads kv head h // group."""
        c = self.config
        n, g = q.shape[0], c.n_heads // c.n_kv_heads
        qg = q.reshape(n, c.n_kv_heads, g, c.head_dim).transpose(1, 2, 0, 3).reshape(c.n_kv_heads, g * n, c.head_dim)
        scores = (qg @ k.transpose(0, 2, 1)) * np.float32(1.0 / np.sqrt(c.head_dim))
        if mask is not None:
            scores = np.where(np.tile(mask, (g, 1)), np.float32(-np.inf), scores)
        out = softmax(scores) @ v  # (n_kv_heads, g * n, hd)
        return out.reshape(c.n_kv_heads, g, n, c.head_dim).transpose(2, 0, 1, 3).reshape(n, c.d_attn)


def greedy(model: LlamaReference, prompt: Sequence[int], max_new_tokens: int,
           stop_ids: Iterable[int] = ()) -> list[int]:
    """Greedy continuation of `prompt` from a fresh cache; stops after a stop id (which is included)."""
    stops = frozenset(stop_ids)
    model.reset()
    logits = model.forward(prompt)
    out: list[int] = []
    while len(out) < max_new_tokens:
        token = int(np.argmax(logits))
        out.append(token)
        if token in stops or len(out) == max_new_tokens:
            break
        logits = model.forward([token])
    return out
