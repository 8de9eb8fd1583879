"""Helpers for the service tests: a Service around an engine, and the tiny model's engine."""

from __future__ import annotations

from dataclasses import dataclass

from openlpu.models.registry import LoadedModel
from openlpu.runtime.compiled_timing import CompiledTiming
from openlpu.runtime.reference_engine import ReferenceEngine
from openlpu.serve.app import MAX_BODY_BYTES, PREFILL_TOKENS, Service
from openlpu.serve.ratelimit import RateLimiter
from openlpu.serve.scheduler import Scheduler


def make_service(engine, *, pace="host", api_key=None, rpm=10_000, tpm=10_000_000,
                 max_body=MAX_BODY_BYTES) -> Service:
    return Service(engine, Scheduler(engine, pace), RateLimiter(rpm, tpm), api_key=api_key, max_body_bytes=max_body)


def tiny_engine(model: LoadedModel, cache_dir, chips: int = 2, timing=None) -> ReferenceEngine:
    """The tiny model as the service runs a model (prompts in 16-row steps), with its compiled step programs'
    timing, their cycles kept in `cache_dir`."""
    timing = timing or CompiledTiming(model, cache_dir=cache_dir, prefill_tokens=PREFILL_TOKENS)
    return ReferenceEngine(model, timing, concurrency=chips, prefill_tokens=PREFILL_TOKENS)


@dataclass(frozen=True)
class SlowTiming:
    """A chip far slower than the host: every step takes `step_s` simulated seconds."""

    step_s: float
    kind: str = "test"
    source: str = "a fixed step time"

    def prefill_seconds(self, prompt_tokens, sampling="greedy"):
        return self.step_s

    def decode_seconds(self, context, sampling="greedy"):
        return self.step_s
