"""Rooflines: the time a step needs if it only waited for memory, arithmetic or the network.

A roofline is a bound, not a prediction: it assumes perfect overlap of memory traffic and arithmetic,
full peak rates, and nothing else (no kernel launches, no scheduling gaps). openlpu uses it as a
cross-check beside compiled schedules and as the GPU baseline (`openlpu.perf.gpu`).
"""

from __future__ import annotations

from dataclasses import dataclass

from openlpu.models.zoo import DecoderConfig, bytes_per_value


@dataclass(frozen=True)
class Roofline:
    """Time terms of one step. Memory and arithmetic overlap; communication between layers does not."""

    memory_s: float
    compute_s: float
    network_s: float = 0.0

    @property
    def time_s(self) -> float:
        return max(self.memory_s, self.compute_s) + self.network_s

    @property
    def bound(self) -> str:
        """The term that takes the most time."""
        terms = {"memory": self.memory_s, "compute": self.compute_s, "network": self.network_s}
        return max(terms, key=terms.get)

    def as_dict(self) -> dict[str, float | str]:
        return {"time_s": self.time_s, "memory_s": self.memory_s, "compute_s": self.compute_s,
                "network_s": self.network_s, "bound": self.bound}


@dataclass(frozen=True)
class StepWork:
    """What one forward step of a decoder moves and computes, for the whole model (before sharding)."""

    weight_bytes: float
    kv_bytes: float
    flops: float
    tokens: int  # tokens whose activations cross the tensor-parallel all-reduces


def decode_work(model: DecoderConfig, numerics: str, batch: int, context: int) -> StepWork:
    """One new token for each of `batch` users, each attending to `context` cached tokens (itself included):
    the weights are read once for the batch, each user's KV cache once."""
    return StepWork(
        weight_bytes=model.matmul_params(batch) * bytes_per_value(numerics),
        kv_bytes=batch * context * model.kv_bytes_per_token(numerics),
        flops=batch * model.flops_per_token(context),
        tokens=batch,
    )


def prefill_work(model: DecoderConfig, numerics: str, prompt_tokens: int) -> StepWork:
    """A prompt of `prompt_tokens` in one step: the weights are read once, every token's KV is written,
    token t (1-based) attends to t tokens."""
    p = prompt_tokens
    attention = 4 * model.n_layers * model.d_attn * p * (p + 1) / 2
    return StepWork(
        weight_bytes=model.matmul_params(p) * bytes_per_value(numerics),
        kv_bytes=p * model.kv_bytes_per_token(numerics),
        flops=p * model.flops_per_token(0) + attention,
        tokens=p,
    )
