"""The weights of a llama-architecture model, independent of the file they came from.

The shape lives in `openlpu.models.zoo.DecoderConfig` (one definition for the zoo and for GGUF files).
Weight matrices keep the GGUF orientation: shape (out_features, in_features), so a layer is
`y = x @ w.T`. The Q and K rows are in the order llama.cpp's converter writes them: within each head,
rotary pairs are adjacent rows (2i, 2i+1), which is why the reference applies RoPE to adjacent pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class LayerWeights:
    """One transformer block, fp32; matrices are (out_features, in_features)."""

    attn_norm: np.ndarray  # (d_model,)
    wq: np.ndarray  # (d_attn, d_model)
    wk: np.ndarray  # (d_kv, d_model)
    wv: np.ndarray  # (d_kv, d_model)
    wo: np.ndarray  # (d_model, d_attn)
    ffn_norm: np.ndarray  # (d_model,)
    w_gate: np.ndarray  # (d_ffn, d_model)
    w_up: np.ndarray  # (d_ffn, d_model)
    w_down: np.ndarray  # (d_model, d_ffn)


@dataclass(frozen=True, eq=False)
class LlamaWeights:
    """All weights, dequantised to fp32. With tied embeddings `output` is the same array as `token_embd`.

    `tensor_types` maps each GGUF tensor name to the type it was stored in (e.g. "Q4_1"), so a later
    numerics mode can say what precision the weights really had.
    """

    token_embd: np.ndarray  # (vocab, d_model)
    layers: tuple[LayerWeights, ...]
    output_norm: np.ndarray  # (d_model,)
    output: np.ndarray  # (vocab, d_model)
    tensor_types: dict[str, str]
