"""GPU descriptions (H100 SXM, A100 80GB SXM) and a roofline baseline for LLM inference on them.

The baseline runs a decoder with tensor parallelism over `gpus` GPUs of one NVLink server (Megatron
style: attention heads and MLP columns split, two all-reduces per layer). A decode step takes
max(HBM traffic / bandwidth, FLOPs / peak) plus the all-reduces. It is a bound that real GPU serving
stacks do not reach (kernel launches, imperfect overlap and batching schedules are not in it), so a
GPU's real time is longer: comparisons against it favour the GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

from openlpu.errors import UserError
from openlpu.models.zoo import DecoderConfig, bytes_per_value
from openlpu.perf.roofline import Roofline, StepWork, decode_work, prefill_work
from openlpu.sources import assumed, cited

# Activations cross the all-reduces in fp16 whatever the weight numerics, as GPU serving stacks do.
ACTIVATION_BYTES = bytes_per_value("fp16")
ALLREDUCES_PER_LAYER = 2  # after attention's output projection and after the MLP's down projection

_ALLREDUCE_LATENCY = (
    "one small-message all-reduce inside an NVSwitch server costs a few microseconds in NCCL (launch, "
    "synchronisation, NVLink hops); 5 us is a middle value, not a measurement"
)


@dataclass(frozen=True)
class GpuSpec:
    """One GPU and the 8-GPU server it comes in. FLOPs are dense (datasheets also quote 2x for sparsity)."""

    name: str
    hbm_bytes_per_s: float
    fp16_flops: float
    int8_ops: float
    memory_bytes: float
    nvlink_bytes_per_s: float  # per GPU, both directions together, as datasheets quote it
    tdp_w: float
    server_gpus: int
    server_price_usd: float
    server_kw: float
    allreduce_latency_s: float

    def peak_ops(self, numerics: str) -> float:
        """Dense tensor-core peak for weights and activations at `numerics`."""
        peaks = {"int8": self.int8_ops, "fp16": self.fp16_flops}
        if numerics not in peaks:
            raise UserError(f"unknown numerics '{numerics}': use one of {', '.join(peaks)}")
        return peaks[numerics]

    @property
    def nvlink_one_way_bytes_per_s(self) -> float:
        return self.nvlink_bytes_per_s / 2


@dataclass(frozen=True)
class H100Sxm(GpuSpec):
    name: str = "H100 SXM"
    hbm_bytes_per_s: float = cited(3.35e12, "NVIDIA H100 datasheet: HBM3 3.35 TB/s (SXM5)")
    fp16_flops: float = cited(989.4e12, "NVIDIA H100 datasheet: FP16 tensor 1,979 TFLOPS sparse, half dense")
    int8_ops: float = cited(1979e12, "NVIDIA H100 datasheet: INT8 tensor 3,958 TOPS sparse, half dense")
    memory_bytes: float = cited(80e9, "NVIDIA H100 datasheet: 80 GB HBM3")
    nvlink_bytes_per_s: float = cited(900e9, "NVIDIA H100 datasheet: NVLink 900 GB/s")
    tdp_w: float = cited(700.0, "NVIDIA H100 datasheet: max TDP up to 700 W")
    server_gpus: int = cited(8, "NVIDIA DGX H100 datasheet: 8x H100 SXM; FACTS 4 (seed): an 8xH100 server")
    server_price_usd: float = cited(300_000.0, "FACTS 4 (seed): an 8xH100 server at $0.3M")
    server_kw: float = cited(10.0, "FACTS 4 (seed): 10 kW per H100 server (DGX H100 datasheet: ~10.2 kW max)")
    allreduce_latency_s: float = assumed(5e-6, _ALLREDUCE_LATENCY)


@dataclass(frozen=True)
class A100Sxm(GpuSpec):
    name: str = "A100 80GB SXM"
    hbm_bytes_per_s: float = cited(2.039e12, "NVIDIA A100 datasheet: HBM2e 2,039 GB/s (80GB SXM)")
    fp16_flops: float = cited(312e12, "NVIDIA A100 datasheet: FP16/BF16 tensor 312 TFLOPS dense")
    int8_ops: float = cited(624e12, "NVIDIA A100 datasheet: INT8 tensor 624 TOPS dense")
    memory_bytes: float = cited(80e9, "NVIDIA A100 datasheet: 80 GB HBM2e")
    nvlink_bytes_per_s: float = cited(600e9, "NVIDIA A100 datasheet: NVLink 600 GB/s")
    tdp_w: float = cited(400.0, "NVIDIA A100 datasheet: max TDP 400 W (SXM)")
    server_gpus: int = cited(8, "NVIDIA DGX A100 datasheet: 8x A100 SXM")
    server_price_usd: float = cited(199_000.0, "NVIDIA DGX A100 launch announcement (May 2020): $199,000")
    server_kw: float = cited(6.5, "NVIDIA DGX A100 datasheet: 6.5 kW max system power")
    allreduce_latency_s: float = assumed(5e-6, _ALLREDUCE_LATENCY)


GPUS: dict[str, GpuSpec] = {"h100": H100Sxm(), "a100": A100Sxm()}


def get_gpu(name: str) -> GpuSpec:
    if name not in GPUS:
        raise UserError(f"unknown GPU '{name}': use one of {', '.join(GPUS)}")
    return GPUS[name]


def _check_gpus(gpu: GpuSpec, gpus: int) -> None:
    if gpus < 1 or gpu.server_gpus % gpus:
        divisors = [n for n in range(1, gpu.server_gpus + 1) if gpu.server_gpus % n == 0]
        raise UserError(
            f"{gpus} GPUs of tensor parallelism: use one of {', '.join(map(str, divisors))} "
            f"(the baseline stays inside one {gpu.server_gpus}-GPU NVLink server)"
        )


def _kv_bytes_per_user_per_gpu(model: DecoderConfig, gpus: int, context: int, numerics: str) -> float:
    """One user's KV cache is split over the KV heads; with fewer KV heads than GPUs, heads are replicated."""
    return context * model.kv_bytes_per_token(numerics) / min(gpus, model.n_kv_heads)


def bytes_per_gpu(model: DecoderConfig, gpus: int, batch: int, context: int, numerics: str) -> float:
    """Weights split over the GPUs plus the KV caches of `batch` users at `context` tokens."""
    kv = batch * _kv_bytes_per_user_per_gpu(model, gpus, context, numerics)
    return model.weight_bytes(numerics) / gpus + kv


def max_batch(model: DecoderConfig, gpu: GpuSpec, gpus: int, context: int, numerics: str) -> int:
    """The largest batch whose weights and KV caches fit the GPUs' memory (0 if the weights do not)."""
    free = gpu.memory_bytes - model.weight_bytes(numerics) / gpus
    return max(0, int(free // _kv_bytes_per_user_per_gpu(model, gpus, context, numerics)))


def _check_fits(model: DecoderConfig, gpu: GpuSpec, gpus: int, batch: int, context: int, numerics: str):
    need = bytes_per_gpu(model, gpus, batch, context, numerics)
    if need > gpu.memory_bytes:
        raise UserError(
            f"{model.name} at {numerics} with batch {batch} and context {context} needs {need / 1e9:.1f} GB "
            f"per GPU on {gpus} GPUs, over the {gpu.memory_bytes / 1e9:.0f} GB of an {gpu.name}: "
            "use more GPUs, a smaller batch or context, or int8"
        )


def _roofline(model: DecoderConfig, gpu: GpuSpec, gpus: int, work: StepWork, numerics: str) -> Roofline:
    kv_shards = min(gpus, model.n_kv_heads)
    memory = (work.weight_bytes / gpus + work.kv_bytes / kv_shards) / gpu.hbm_bytes_per_s
    compute = work.flops / gpus / gpu.peak_ops(numerics)
    return Roofline(memory, compute, allreduce_s(model, gpu, gpus, work.tokens))


def allreduce_s(model: DecoderConfig, gpu: GpuSpec, gpus: int, tokens: int) -> float:
    """The all-reduces of one step: per layer, two ring all-reduces of the tokens' activations, each
    a fixed latency plus 2 (n-1)/n of the tensor over one direction of NVLink."""
    if gpus == 1:
        return 0.0
    tensor = tokens * model.d_model * ACTIVATION_BYTES
    one = gpu.allreduce_latency_s + 2 * (gpus - 1) / gpus * tensor / gpu.nvlink_one_way_bytes_per_s
    return ALLREDUCES_PER_LAYER * model.n_layers * one


@dataclass(frozen=True)
class GpuBaseline:
    """Roofline timing of serving `model` on `gpus` tensor-parallel GPUs: `batch` users decoding at
    `context` tokens, and one prompt of `prompt_tokens` prefilled."""

    model: DecoderConfig
    gpu: GpuSpec
    gpus: int
    numerics: str
    batch: int
    context: int
    prompt_tokens: int
    decode: Roofline
    prefill: Roofline

    @property
    def ttft_s(self) -> float:
        return self.prefill.time_s

    @property
    def tokens_per_s_per_user(self) -> float:
        return 1 / self.decode.time_s

    @property
    def tokens_per_s(self) -> float:
        """All users of one tensor-parallel group together."""
        return self.batch / self.decode.time_s

    @property
    def replicas_per_server(self) -> int:
        return self.gpu.server_gpus // self.gpus

    @property
    def tokens_per_s_per_server(self) -> float:
        return self.replicas_per_server * self.tokens_per_s

    def as_dict(self) -> dict:
        return {
            "gpu": self.gpu.name, "gpus": self.gpus, "model": self.model.name, "numerics": self.numerics,
            "batch": self.batch, "context": self.context, "prompt_tokens": self.prompt_tokens,
            "ttft_s": self.ttft_s, "decode_s_per_token": self.decode.time_s,
            "tokens_per_s_per_user": self.tokens_per_s_per_user, "tokens_per_s_system": self.tokens_per_s,
            "tokens_per_s_per_server": self.tokens_per_s_per_server,
            "decode": self.decode.as_dict(), "prefill": self.prefill.as_dict(),
        }


def gpu_baseline(model: DecoderConfig, gpu: GpuSpec, gpus: int, batch: int = 1, context: int | None = None,
                 prompt_tokens: int = 128, numerics: str = "fp16") -> GpuBaseline:
    """The GPU roofline for `model`; `context` defaults to the model's full context."""
    context = model.context if context is None else context
    if batch < 1 or context < 1 or prompt_tokens < 1:
        raise UserError(
            f"batch {batch}, context {context} and prompt tokens {prompt_tokens}: each must be at least 1"
        )
    _check_gpus(gpu, gpus)
    _check_fits(model, gpu, gpus, batch, context, numerics)
    _check_fits(model, gpu, gpus, 1, prompt_tokens, numerics)
    return GpuBaseline(
        model, gpu, gpus, numerics, batch, context, prompt_tokens,
        decode=_roofline(model, gpu, gpus, decode_work(model, numerics, batch, context), numerics),
        prefill=_roofline(model, gpu, gpus, prefill_work(model, numerics, prompt_tokens), numerics),
    )
