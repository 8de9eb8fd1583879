"""Helpers for the service tests: a Service around an engine, and the tiny model's engine."""

from __future__ import annotations

from openlpu.models.registry import LoadedModel
from openlpu.runtime.interim_timing import InterimTiming
from openlpu.runtime.reference_engine import ReferenceEngine
from openlpu.serve.app import MAX_BODY_BYTES, Service
from openlpu.serve.ratelimit import RateLimiter
from openlpu.serve.scheduler import Scheduler


def make_service(engine, *, pace="host", api_key=None, rpm=10_000, tpm=10_000_000,
                 max_body=MAX_BODY_BYTES) -> Service:
    return Service(engine, Scheduler(engine, pace), RateLimiter(rpm, tpm), api_key=api_key, max_body_bytes=max_body)


def tiny_engine(model: LoadedModel, chips: int = 2, **timing) -> ReferenceEngine:
    return ReferenceEngine(model, InterimTiming(model.config, **timing), concurrency=chips)
