"""A tiny random-weight llama GGUF, written by the project itself, so tests need no downloaded model.

Same layout and metadata as SmolLM2's GGUF, scaled down: 2 layers, d_model 64, 4 query heads sharing
2 key/value heads, a 384-token byte-level BPE vocabulary (3 ChatML control tokens, the 256 byte
symbols and 125 merges learnt from the evaluation text) and a ChatML chat template. Everything is
deterministic in the seed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter, TokenType
from gguf.quants import quantize
from tokenizers import pre_tokenizers

from openlpu.models.chat_template import IM_END, IM_START
from openlpu.models.evaluation import eval_text
from openlpu.models.tokenizer import pre_tokenizer
from openlpu.models.zoo import DecoderConfig

SPECIAL_TOKENS = ("<|endoftext|>", IM_START, IM_END)  # ids 0, 1, 2 as in SmolLM2
N_MERGES = 125
TINY_SYSTEM_MESSAGE = "You are a tiny test model."
# The same Jinja ChatML template as SmolLM2-135M-Instruct's GGUF, with its own default system message.
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\n" + TINY_SYSTEM_MESSAGE + "<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
TINY_CONFIG = DecoderConfig(
    name="openlpu-tiny-llama",
    n_layers=2,
    d_model=64,
    n_heads=4,
    n_kv_heads=2,
    head_dim=16,
    d_ffn=128,
    vocab=len(SPECIAL_TOKENS) + 256 + N_MERGES,
    context=256,
    rope_theta=10000.0,
    norm_eps=float(np.float32(1e-5)),  # GGUF stores it as float32
    tie_embeddings=True,
    source="openlpu.models.tiny_gguf: random weights for tests",
)


def train_merges(words: Counter[str], n_merges: int) -> list[tuple[str, str]]:
    """Byte-pair merges learnt greedily: the most frequent adjacent pair first, ties by the pair's text."""
    pieces = {w: list(w) for w in words}
    merges: list[tuple[str, str]] = []
    for _ in range(n_merges):
        pairs: Counter[tuple[str, str]] = Counter()
        for w, count in words.items():
            for pair in zip(pieces[w], pieces[w][1:], strict=False):
                pairs[pair] += count
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        for w, seq in pieces.items():
            merged, i = [], 0
            while i < len(seq):
                if i + 1 < len(seq) and (seq[i], seq[i + 1]) == best:
                    merged.append(seq[i] + seq[i + 1])
                    i += 2
                else:
                    merged.append(seq[i])
                    i += 1
            pieces[w] = merged
    return merges


def tiny_vocabulary() -> tuple[list[str], list[int], list[str]]:
    """Tokens, token types and merges ("left right") of the tiny model's tokenizer."""
    words = Counter(w for w, _ in pre_tokenizer("smollm").pre_tokenize_str(eval_text()))
    merges = train_merges(words, N_MERGES)
    tokens = [*SPECIAL_TOKENS, *sorted(pre_tokenizers.ByteLevel.alphabet()), *(a + b for a, b in merges)]
    types = [TokenType.CONTROL] * len(SPECIAL_TOKENS) + [TokenType.NORMAL] * (len(tokens) - len(SPECIAL_TOKENS))
    return tokens, [int(t) for t in types], [f"{a} {b}" for a, b in merges]


def tiny_weights(config: DecoderConfig = TINY_CONFIG, seed: int = 0) -> dict[str, np.ndarray]:
    """GGUF tensor name -> fp32 array (out_features, in_features).

    Scales chosen so that greedy continuations vary (about 50 distinct tokens in 64) instead of repeating
    one token, which would make token-for-token comparisons weak: the blocks (std 2/sqrt(fan_in))
    outweigh the tied embedding (std 0.25) in the residual stream, and logits have a std of about 2.
    """
    rng = np.random.default_rng(seed)
    c = config

    def matrix(rows: int, cols: int, std: float) -> np.ndarray:
        return (std * rng.standard_normal((rows, cols))).astype(np.float32)

    def block(rows: int, cols: int) -> np.ndarray:
        return matrix(rows, cols, 2.0 / np.sqrt(cols))

    def norm() -> np.ndarray:
        return (1.0 + 0.1 * rng.standard_normal(c.d_model)).astype(np.float32)

    w = {"token_embd.weight": matrix(c.vocab, c.d_model, 0.25)}
    for i in range(c.n_layers):
        w[f"blk.{i}.attn_norm.weight"] = norm()
        w[f"blk.{i}.attn_q.weight"] = block(c.d_attn, c.d_model)
        w[f"blk.{i}.attn_k.weight"] = block(c.d_kv, c.d_model)
        w[f"blk.{i}.attn_v.weight"] = block(c.d_kv, c.d_model)
        w[f"blk.{i}.attn_output.weight"] = block(c.d_model, c.d_attn)
        w[f"blk.{i}.ffn_norm.weight"] = norm()
        w[f"blk.{i}.ffn_gate.weight"] = block(c.d_ffn, c.d_model)
        w[f"blk.{i}.ffn_up.weight"] = block(c.d_ffn, c.d_model)
        w[f"blk.{i}.ffn_down.weight"] = block(c.d_model, c.d_ffn)
    w["output_norm.weight"] = norm()
    if not c.tie_embeddings:
        w["output.weight"] = matrix(c.vocab, c.d_model, 0.25)
    return w


def llama_header(path, config: DecoderConfig) -> GGUFWriter:
    """A GGUF writer for a llama-architecture file with `config`'s hyperparameters, as llama.cpp names them."""
    writer = GGUFWriter(path, "llama")
    writer.add_name(config.name)
    writer.add_block_count(config.n_layers)
    writer.add_context_length(config.context)
    writer.add_embedding_length(config.d_model)
    writer.add_feed_forward_length(config.d_ffn)
    writer.add_head_count(config.n_heads)
    writer.add_head_count_kv(config.n_kv_heads)
    writer.add_rope_freq_base(config.rope_theta)
    writer.add_layer_norm_rms_eps(config.norm_eps)
    if config.is_moe:
        writer.add_expert_count(config.n_experts)
        writer.add_expert_used_count(config.experts_per_token)
    return writer


def write_tiny_gguf(path: str | Path, *, seed: int = 0, tensor_type: str = "F32", tied: bool = True,
                    heads: tuple[int, int] = (TINY_CONFIG.n_heads, TINY_CONFIG.n_kv_heads)) -> Path:
    """Write the tiny model; matrices stored as `tensor_type` (F32, F16, Q8_0, Q4_1, ...), norms as F32.
    `heads`: query and kv heads (of 16 columns each), e.g. (9, 3) for SmolLM2-135M's grouping."""
    n_heads, n_kv_heads = heads
    config = replace(TINY_CONFIG, tie_embeddings=tied, n_heads=n_heads, n_kv_heads=n_kv_heads,
                     d_model=n_heads * TINY_CONFIG.head_dim)
    qtype = GGMLQuantizationType[tensor_type]
    tokens, types, merges = tiny_vocabulary()
    path = Path(path)
    writer = llama_header(path, config)
    writer.add_rope_dimension_count(config.head_dim)
    writer.add_vocab_size(config.vocab)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tokens.index(IM_START))
    writer.add_eos_token_id(tokens.index(IM_END))
    writer.add_pad_token_id(tokens.index(IM_END))
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)
    for name, array in tiny_weights(config, seed).items():
        if array.ndim == 1 or qtype == GGMLQuantizationType.F32:
            writer.add_tensor(name, array)
        elif qtype == GGMLQuantizationType.F16:
            writer.add_tensor(name, array.astype(np.float16))
        else:
            writer.add_tensor(name, quantize(array, qtype), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
