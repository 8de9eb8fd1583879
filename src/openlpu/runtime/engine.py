"""The engine interface the service talks to: generate tokens for a prompt, with their timing.

An engine owns one model and `concurrency` sequence slots: how many sequences the simulated system
runs at once (its partitioning decides: replicas, pipeline stages, batch). `generate` is a Python
generator: each `next()` computes one token on the host and yields it with two times that must not be
confused:

- `lpu_s`: simulated LPU seconds of the step that made the token (the prefill for the first token, one
  decode step for each later one), from the engine's `LpuTiming` (compiled_timing.CompiledTiming);
- `host_s`: wall seconds this machine took to compute it.

Closing the generator frees its slot. The request scheduler (`openlpu.serve.scheduler`) places the steps
on one simulated timeline; the engine knows nothing of time beyond a single step.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from openlpu.runtime.sampling import SamplingParams

FINISH_STOP = "stop"  # a stop token of the model or a stop string
FINISH_LENGTH = "length"  # max_tokens, or the end of the context


class LpuTiming(Protocol):
    """Simulated seconds of the two kinds of step. `kind` names where the figures come from ("compiled",
    "predicted"), `source` says it in a sentence."""

    kind: str
    source: str

    def prefill_seconds(self, prompt_tokens: int, sampling: str = "greedy") -> float:
        """Run a prompt of this many tokens and produce the first completion token, chosen by `sampling` (the
        step program's mode: models/sampling_graph.sampling_mode)."""

    def decode_seconds(self, context: int, sampling: str = "greedy") -> float:
        """One decode step whose new token attends to `context` tokens (itself included)."""


@dataclass(frozen=True)
class TokenEvent:
    index: int  # 0 for the first completion token
    token_id: int
    text: str  # the text this token adds to the answer; "" inside a character or a possible stop string
    lpu_s: float  # simulated LPU seconds of the step that produced this token
    host_s: float  # host wall seconds of the same step
    finish_reason: str | None = None  # set on the last token: FINISH_STOP or FINISH_LENGTH


class Engine(ABC):
    """A model that generates on `concurrency` slots, with LPU timing per step."""

    model_id: str  # the served name, carrying the context length like Groq's (`smollm2-135m-8192`)
    aliases: frozenset[str]  # other names a request may use for the model
    context_length: int
    concurrency: int
    timing: LpuTiming
    tokens_source: str  # where the tokens come from, in a sentence

    @abstractmethod
    def prompt_ids(self, messages: Sequence[Mapping[str, str]]) -> list[int]:
        """The token ids of a chat in the model's own template, ready to generate the assistant's turn."""

    @abstractmethod
    def generate(self, slot: int, prompt: Sequence[int], params: SamplingParams) -> Iterator[TokenEvent]:
        """Tokens of the completion of `prompt` on slot `slot` (0 <= slot < concurrency), one per `next()`."""
