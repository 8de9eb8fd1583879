"""The model zoo: architecture-only configs, named as Groq named them, and Hugging Face config loading.

Decoder LLMs (the Llama family, and Mixtral as a mixture of experts) are one frozen `DecoderConfig`
whose sizes (parameters, FLOPs, weight and KV-cache bytes) are derived from the hyperparameters.
BERT and ResNet-50 are graphs of `Layer`s with their shapes. No weights: timing and cost need only
the architecture. `load_config` takes a zoo name, the path of a Hugging Face `config.json` or of a GGUF
file of the llama family (its header only).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from openlpu.chip.numerics import DTYPES
from openlpu.errors import UserError

# Weight (and KV-cache) formats a served model can use.
NUMERICS = ("int8", "fp16")

# Hugging Face `model_type`s whose config.json maps onto DecoderConfig.
HF_FAMILIES = ("llama", "mistral", "mixtral")


def bytes_per_value(numerics: str) -> int:
    """Bytes of one weight (or KV-cache value) stored at `numerics`."""
    if numerics not in NUMERICS:
        raise UserError(f"unknown numerics '{numerics}': use one of {', '.join(NUMERICS)}")
    return DTYPES[numerics].itemsize


@dataclass(frozen=True)
class DecoderConfig:
    """A Llama-family decoder (RMSNorm, rotary positions, SwiGLU MLP, grouped-query attention).

    With `n_experts > 1` each MLP is a mixture of experts: a router picks `experts_per_token` of them.
    `context` is the context length the model is served with (the number in Groq's model name).
    """

    name: str
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    d_ffn: int
    vocab: int
    rope_theta: float
    context: int
    source: str = field(compare=False)  # where the numbers come from, not part of the architecture
    norm_eps: float = 1e-5
    n_experts: int = 1
    experts_per_token: int = 1
    tie_embeddings: bool = False
    head_dim: int = 0  # 0: d_model // n_heads, as in every Llama; Hugging Face configs may set it

    def __post_init__(self) -> None:
        if self.head_dim == 0:
            object.__setattr__(self, "head_dim", self.d_model // self.n_heads)
        if self.n_heads % self.n_kv_heads:
            raise UserError(
                f"{self.name}: {self.n_heads} attention heads are not a multiple of {self.n_kv_heads} "
                "KV heads; fix num_key_value_heads"
            )
        if not 1 <= self.experts_per_token <= self.n_experts:
            raise UserError(
                f"{self.name}: {self.experts_per_token} experts per token with {self.n_experts} experts; "
                "fix num_experts_per_tok"
            )

    @property
    def is_moe(self) -> bool:
        return self.n_experts > 1

    @property
    def d_attn(self) -> int:
        """Width of all query heads together."""
        return self.n_heads * self.head_dim

    @property
    def d_kv(self) -> int:
        """Width of all key (or value) heads together."""
        return self.n_kv_heads * self.head_dim

    @property
    def attention_params(self) -> int:
        """q, k, v and output projections of one layer."""
        return 2 * self.d_model * self.d_attn + 2 * self.d_model * self.d_kv

    @property
    def expert_params(self) -> int:
        """One SwiGLU MLP: gate, up and down projections."""
        return 3 * self.d_model * self.d_ffn

    @property
    def router_params(self) -> int:
        return self.d_model * self.n_experts if self.is_moe else 0

    @property
    def layer_params(self) -> int:
        norms = 2 * self.d_model
        return self.attention_params + self.n_experts * self.expert_params + self.router_params + norms

    @property
    def param_count(self) -> int:
        embeddings = self.vocab * self.d_model
        lm_head = 0 if self.tie_embeddings else self.vocab * self.d_model
        return self.n_layers * self.layer_params + embeddings + lm_head + self.d_model

    @property
    def active_param_count(self) -> int:
        """Parameters one token uses: all but the experts its router did not pick."""
        unused = self.n_layers * (self.n_experts - self.experts_per_token) * self.expert_params
        return self.param_count - unused

    def expected_experts(self, batch: int) -> float:
        """Experts per layer that `batch` tokens touch, if routing is uniform and independent.

        Real routers are not uniform; this is the assumption a roofline needs for MoE decode traffic.
        """
        if not self.is_moe:
            return 1.0
        return self.n_experts * (1 - (1 - self.experts_per_token / self.n_experts) ** batch)

    def matmul_params(self, batch: int = 1) -> float:
        """Weights that the matmuls of one forward step of `batch` tokens read (the embedding table is
        looked up, not read whole; the output projection is read even when tied to it)."""
        return self._matmul_params(self.expected_experts(batch))

    def flops_per_token(self, attended: int = 0) -> float:
        """Forward FLOPs of one token attending to `attended` tokens (its KV-cache length, itself
        included): 2 per matmul weight it uses plus 4 * d_attn per layer and attended token for q.k and
        a.v (the forward part of PaLM, Chowdhery et al. 2022, appendix B)."""
        return 2 * self._matmul_params(self.experts_per_token) + 4 * self.n_layers * self.d_attn * attended

    def _matmul_params(self, experts: float) -> float:
        per_layer = self.attention_params + self.router_params + experts * self.expert_params
        return self.n_layers * per_layer + self.vocab * self.d_model

    def weight_bytes(self, numerics: str) -> int:
        """All parameters stored at `numerics`."""
        return self.param_count * bytes_per_value(numerics)

    def kv_bytes_per_token(self, numerics: str) -> int:
        """Key and value of one token in every layer."""
        return 2 * self.n_layers * self.d_kv * bytes_per_value(numerics)

    def to_hf_config(self) -> dict:
        """The Hugging Face config.json that `from_hf_config` reads back into this config."""
        config = {
            "model_type": "mixtral" if self.is_moe else "llama",
            "num_hidden_layers": self.n_layers,
            "hidden_size": self.d_model,
            "num_attention_heads": self.n_heads,
            "num_key_value_heads": self.n_kv_heads,
            "head_dim": self.head_dim,
            "intermediate_size": self.d_ffn,
            "vocab_size": self.vocab,
            "rope_theta": self.rope_theta,
            "max_position_embeddings": self.context,
            "rms_norm_eps": self.norm_eps,
            "tie_word_embeddings": self.tie_embeddings,
        }
        if self.is_moe:
            config |= {"num_local_experts": self.n_experts, "num_experts_per_tok": self.experts_per_token}
        return config


def from_hf_config(path: Path, name: str | None = None) -> DecoderConfig:
    """A llama, mistral or mixtral `config.json` (or the folder holding it) as a DecoderConfig.

    The name defaults to the folder's name, as in a Hugging Face download (`Llama-2-70b-hf/config.json`).
    """
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"cannot read {path}: {err}; give a Hugging Face config.json") from None
    family = config.get("model_type")
    if family not in HF_FAMILIES:
        raise UserError(
            f"{path} has model_type {family!r}; openlpu reads the {', '.join(HF_FAMILIES)} families"
        )
    missing = [k for k in ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size",
                           "vocab_size", "max_position_embeddings") if k not in config]
    if missing:
        raise UserError(f"{path} lacks {', '.join(missing)}; give a complete Hugging Face config.json")
    heads = config["num_attention_heads"]
    return DecoderConfig(
        name=name or path.parent.name,
        n_layers=config["num_hidden_layers"],
        d_model=config["hidden_size"],
        n_heads=heads,
        n_kv_heads=config.get("num_key_value_heads") or heads,
        d_ffn=config["intermediate_size"],
        vocab=config["vocab_size"],
        # Hugging Face's LlamaConfig default, which Llama 2 configs rely on by omitting the key.
        rope_theta=float(config.get("rope_theta", 10000.0)),
        context=config["max_position_embeddings"],
        source=f"Hugging Face config.json: {path}",
        norm_eps=config.get("rms_norm_eps", 1e-5),
        n_experts=config.get("num_local_experts", 1),
        experts_per_token=config.get("num_experts_per_tok", 1),
        tie_embeddings=config.get("tie_word_embeddings", False),
        head_dim=config.get("head_dim") or 0,
    )


# --- graphs of layers: BERT and ResNet-50 -------------------------------------------------------------


@dataclass(frozen=True)
class Layer:
    """One operation of a layer graph. Shapes exclude the batch; images are (height, width, channels).

    `weight_shape` is (kh, kw, c_in, c_out) for a convolution, (k, n) for a dense layer, (rows, width)
    for an embedding table, (statistics, channels) for a norm. A weightless matmul (attention) gives
    its `contraction` length instead. `inputs` name the producing layers; () is the model's input.
    """

    name: str
    op: str  # conv, dense, matmul, embedding, batchnorm, layernorm, maxpool, avgpool, add, softmax
    out_shape: tuple[int, ...]
    inputs: tuple[str, ...] = ()
    weight_shape: tuple[int, ...] = ()
    bias: bool = False
    stride: int = 1
    padding: int = 0
    contraction: int = 0
    activation: str = ""  # applied to the output: relu, gelu, tanh

    @property
    def params(self) -> int:
        weights = math.prod(self.weight_shape) if self.weight_shape else 0
        return weights + (self.weight_shape[-1] if self.bias else 0)

    @property
    def macs(self) -> int:
        """Multiply-accumulates: every output of a conv/dense layer is a dot product with its weights."""
        if self.op in ("conv", "dense"):
            return math.prod(self.out_shape[:-1]) * math.prod(self.weight_shape)
        if self.op == "matmul":
            return math.prod(self.out_shape) * self.contraction
        return 0


@dataclass(frozen=True)
class LayerGraph:
    name: str
    layers: tuple[Layer, ...]
    source: str

    @property
    def param_count(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    def layer(self, name: str) -> Layer:
        return next(layer for layer in self.layers if layer.name == name)


@dataclass(frozen=True)
class EncoderConfig:
    """A BERT encoder (post-norm, GELU MLP, learned positions) with its pooler."""

    name: str
    n_layers: int
    d_model: int
    n_heads: int
    d_ffn: int
    vocab: int
    source: str
    max_positions: int = 512
    type_vocab: int = 2

    @property
    def param_count(self) -> int:
        d = self.d_model
        embeddings = (self.vocab + self.max_positions + self.type_vocab) * d + 2 * d
        layer = 4 * (d * d + d) + 2 * d * self.d_ffn + self.d_ffn + d + 2 * (2 * d)
        return embeddings + self.n_layers * layer + d * d + d

    def graph(self, seq_len: int = 128) -> LayerGraph:
        """The layers for one sequence of `seq_len` tokens."""
        if not 1 <= seq_len <= self.max_positions:
            raise UserError(f"sequence length {seq_len} for {self.name}: use 1 to {self.max_positions}")
        s, d, h = seq_len, self.d_model, self.n_heads
        layers = [
            Layer("embed.word", "embedding", (s, d), weight_shape=(self.vocab, d)),
            Layer("embed.position", "embedding", (s, d), weight_shape=(self.max_positions, d)),
            Layer("embed.type", "embedding", (s, d), weight_shape=(self.type_vocab, d)),
            Layer("embed.sum", "add", (s, d), inputs=("embed.word", "embed.position", "embed.type")),
            Layer("embed.norm", "layernorm", (s, d), inputs=("embed.sum",), weight_shape=(2, d)),
        ]
        x = "embed.norm"
        for i in range(self.n_layers):
            p = f"layer{i}."
            layers += [
                *(Layer(p + w, "dense", (s, d), (x,), (d, d), bias=True) for w in ("q", "k", "v")),
                Layer(p + "scores", "matmul", (h, s, s), (p + "q", p + "k"), contraction=d // h),
                Layer(p + "probs", "softmax", (h, s, s), (p + "scores",)),
                Layer(p + "context", "matmul", (h, s, d // h), (p + "probs", p + "v"), contraction=s),
                Layer(p + "attn_out", "dense", (s, d), (p + "context",), (d, d), bias=True),
                Layer(p + "attn_res", "add", (s, d), (x, p + "attn_out")),
                Layer(p + "attn_norm", "layernorm", (s, d), (p + "attn_res",), (2, d)),
                Layer(p + "ffn_in", "dense", (s, self.d_ffn), (p + "attn_norm",), (d, self.d_ffn), bias=True,
                      activation="gelu"),
                Layer(p + "ffn_out", "dense", (s, d), (p + "ffn_in",), (self.d_ffn, d), bias=True),
                Layer(p + "ffn_res", "add", (s, d), (p + "attn_norm", p + "ffn_out")),
                Layer(p + "ffn_norm", "layernorm", (s, d), (p + "ffn_res",), (2, d)),
            ]
            x = p + "ffn_norm"
        layers.append(Layer("pooler", "dense", (d,), (x,), (d, d), bias=True, activation="tanh"))
        return LayerGraph(self.name, tuple(layers), self.source)


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def resnet50_v2(image_size: int = 224, classes: int = 1000) -> LayerGraph:
    """ResNet-50 v2 (pre-activation, He et al. 2016 "Identity Mappings") as laid out by TF-slim and
    Keras `ResNet50V2`: stages of 3, 4, 6, 3 bottleneck units; a stage's stride is taken by the 3x3
    conv of its last unit, with a 1x1 max-pool on that unit's identity shortcut."""
    layers: list[Layer] = []
    hw = _conv_out(image_size, 7, 2, 3)
    layers.append(Layer("conv1", "conv", (hw, hw, 64), (), (7, 7, 3, 64), bias=True, stride=2, padding=3))
    hw = _conv_out(hw, 3, 2, 1)
    layers.append(Layer("pool1", "maxpool", (hw, hw, 64), ("conv1",), stride=2, padding=1))
    x, channels = "pool1", 64
    for stage, (width, units, stride) in enumerate(((64, 3, 2), (128, 4, 2), (256, 6, 2), (512, 3, 1)), 2):
        for unit in range(1, units + 1):
            p = f"conv{stage}_block{unit}."
            s = stride if unit == units else 1
            out_hw = _conv_out(hw, 3, s, 1)
            layers.append(Layer(p + "preact_bn", "batchnorm", (hw, hw, channels), (x,), (4, channels),
                                activation="relu"))
            if unit == 1:
                shortcut = Layer(p + "shortcut", "conv", (out_hw, out_hw, 4 * width), (p + "preact_bn",),
                                 (1, 1, channels, 4 * width), bias=True, stride=s)
            elif s > 1:
                shortcut = Layer(p + "shortcut", "maxpool", (out_hw, out_hw, channels), (x,), stride=s)
            else:
                shortcut = None
            layers += [shortcut] if shortcut else []
            layers += [
                Layer(p + "conv1", "conv", (hw, hw, width), (p + "preact_bn",), (1, 1, channels, width)),
                Layer(p + "bn1", "batchnorm", (hw, hw, width), (p + "conv1",), (4, width), activation="relu"),
                Layer(p + "conv2", "conv", (out_hw, out_hw, width), (p + "bn1",), (3, 3, width, width),
                      stride=s, padding=1),
                Layer(p + "bn2", "batchnorm", (out_hw, out_hw, width), (p + "conv2",), (4, width),
                      activation="relu"),
                Layer(p + "conv3", "conv", (out_hw, out_hw, 4 * width), (p + "bn2",),
                      (1, 1, width, 4 * width), bias=True),
                Layer(p + "out", "add", (out_hw, out_hw, 4 * width),
                      (shortcut.name if shortcut else x, p + "conv3")),
            ]
            x, hw, channels = p + "out", out_hw, 4 * width
    layers += [
        Layer("post_bn", "batchnorm", (hw, hw, channels), (x,), (4, channels), activation="relu"),
        Layer("avg_pool", "avgpool", (channels,), ("post_bn",)),
        Layer("fc", "dense", (classes,), ("avg_pool",), (channels, classes), bias=True),
        Layer("probs", "softmax", (classes,), ("fc",)),
    ]
    return LayerGraph(
        "resnet50",
        tuple(layers),
        f"He et al. 2016 (arXiv 1603.05027); Keras ResNet50V2 layout, {image_size}x{image_size}x3 input",
    )


# --- the zoo --------------------------------------------------------------------------------------------

_LLAMA2 = "Touvron et al. 2023, Llama 2, Table 1; Hugging Face meta-llama/Llama-2-{}-hf config.json"
_LLAMA3 = "Meta Llama 3 model card (2024); Hugging Face meta-llama/Meta-Llama-3-{}B config.json"
_MIXTRAL = "Jiang et al. 2024, Mixtral of Experts, Table 1; Hugging Face Mixtral-8x7B-v0.1 config.json"
_BERT = "Devlin et al. 2019, BERT, section 3 ({})"

ZOO: dict[str, DecoderConfig | EncoderConfig | LayerGraph] = {
    c.name: c
    for c in (
        # name, layers, d_model, heads, KV heads, d_ffn, vocab, rope theta, context, source
        DecoderConfig("llama2-7b-2048", 32, 4096, 32, 32, 11008, 32000, 1e4, 2048, _LLAMA2.format("7b")),
        DecoderConfig("llama2-13b-4096", 40, 5120, 40, 40, 13824, 32000, 1e4, 4096, _LLAMA2.format("13b")),
        DecoderConfig("llama2-70b-4096", 80, 8192, 64, 8, 28672, 32000, 1e4, 4096, _LLAMA2.format("70b")),
        DecoderConfig("mixtral-8x7b-32768", 32, 4096, 32, 8, 14336, 32000, 1e6, 32768, _MIXTRAL,
                      n_experts=8, experts_per_token=2),
        DecoderConfig("llama3-8b-8192", 32, 4096, 32, 8, 14336, 128256, 5e5, 8192, _LLAMA3.format(8)),
        DecoderConfig("llama3-70b-8192", 80, 8192, 64, 8, 28672, 128256, 5e5, 8192, _LLAMA3.format(70)),
        # name, layers, d_model, heads, d_ffn, vocab, source
        EncoderConfig("bert-base", 12, 768, 12, 3072, 30522, _BERT.format("BERT-BASE")),
        EncoderConfig("bert-large", 24, 1024, 16, 4096, 30522, _BERT.format("BERT-LARGE")),
        resnet50_v2(),
    )
}


def load_config(ref: str) -> DecoderConfig | EncoderConfig | LayerGraph:
    """A zoo name, the path of a Hugging Face config.json (or of the folder holding one), or of a GGUF file
    of the llama family (llama.cpp writes Mistral and Mixtral as llama, experts in the header)."""
    if ref in ZOO:
        return ZOO[ref]
    path = Path(ref)
    if (path / "config.json").is_file() or (path.is_file() and path.suffix == ".json"):
        return from_hf_config(path)
    if path.suffix == ".gguf":
        from openlpu.models.gguf_file import open_gguf, read_config  # it imports DecoderConfig from here

        return read_config(open_gguf(path), runnable=False)
    raise UserError(
        f"unknown model '{ref}': use one of {', '.join(ZOO)}, or the path of a Hugging Face config.json "
        "or a .gguf file"
    )


def load_decoder_config(ref: str) -> DecoderConfig:
    """Like `load_config`, for commands that need a decoder LLM (tokens per second, cost per token)."""
    model = load_config(ref)
    if not isinstance(model, DecoderConfig):
        decoders = ", ".join(name for name, m in ZOO.items() if isinstance(m, DecoderConfig))
        raise UserError(f"'{ref}' is not a decoder LLM: use one of {decoders}, a config.json or a .gguf path")
    return model
