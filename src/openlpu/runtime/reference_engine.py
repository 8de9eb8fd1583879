"""An engine backed by the numpy reference model, with LPU timing supplied from outside.

The tokens are the reference's (`openlpu.models.reference`), so they are exactly what the LPU must
produce; the LPU seconds come from the `LpuTiming` it is given (for now `InterimTiming`), the host
seconds from the wall clock. Every sequence gets its own KV cache, sharing one copy of the weights;
the cache is dropped when the generation ends or is closed.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from openlpu.errors import UserError
from openlpu.models.reference import LlamaReference
from openlpu.models.registry import LoadedModel
from openlpu.runtime.detokenize import IncrementalDetokenizer
from openlpu.runtime.engine import FINISH_LENGTH, FINISH_STOP, Engine, LpuTiming, TokenEvent
from openlpu.runtime.sampling import Sampler, SamplingParams, StopMatcher


def served_model_id(model: LoadedModel) -> str:
    """Groq's naming: the model's name, then its context length (`smollm2-135m-8192`)."""
    name = Path(model.name).stem if model.name.endswith(".gguf") else model.name
    return f"{name}-{model.config.context}"


class ReferenceEngine(Engine):
    def __init__(self, model: LoadedModel, timing: LpuTiming, concurrency: int = 1) -> None:
        if concurrency < 1:
            raise UserError(f"engine concurrency {concurrency} must be at least 1 sequence")
        self.model = model
        self.model_id = served_model_id(model)
        self.aliases = frozenset({model.name, Path(model.path).stem}) - {self.model_id}
        self.context_length = model.config.context
        self.concurrency = concurrency
        self.timing = timing
        self._weights = LlamaReference(model.config, model.weights)

    def prompt_ids(self, messages: Sequence[Mapping[str, str]]) -> list[int]:
        return self.model.tokenizer.encode_chat(messages)

    def generate(self, slot: int, prompt: Sequence[int], params: SamplingParams) -> Iterator[TokenEvent]:
        if not 0 <= slot < self.concurrency:
            raise UserError(f"slot {slot} does not exist; this engine has slots 0 to {self.concurrency - 1}")
        room = self.context_length - len(prompt)
        if room < 1 or (params.max_tokens or 1) > room:
            raise UserError(f"{len(prompt)} prompt tokens plus {params.max_tokens or 1} new tokens exceed the "
                            f"context length of {self.context_length}; shorten the prompt or ask for fewer tokens")
        return self._generate(prompt, params, min(params.max_tokens or room, room))

    def _generate(self, prompt: Sequence[int], params: SamplingParams, budget: int) -> Iterator[TokenEvent]:
        tokenizer = self.model.tokenizer
        sequence = _new_sequence(self._weights)
        sampler, detokenizer, stops = Sampler(params), IncrementalDetokenizer(tokenizer), StopMatcher(params.stop)
        start = time.perf_counter()
        logits = sequence.forward(prompt)
        lpu_s = self.timing.prefill_seconds(len(prompt))
        for index in range(budget):
            token = sampler.choose(logits)
            host_s = time.perf_counter() - start
            text, stopped = stops.feed(detokenizer.feed(token))
            if stopped or token in tokenizer.stop_ids:
                finish = FINISH_STOP
            else:
                finish = FINISH_LENGTH if index + 1 == budget else None
            if finish and not stopped:  # the end of the answer: let out what was held back
                tail, stopped = stops.feed(detokenizer.flush())
                text += tail if stopped else tail + stops.flush()
            yield TokenEvent(index, token, text, lpu_s, host_s, finish)
            if finish:
                return
            start = time.perf_counter()
            logits = sequence.forward([token])
            lpu_s = self.timing.decode_seconds(len(prompt) + index + 1)


def _new_sequence(weights: LlamaReference) -> LlamaReference:
    """A reference sharing `weights`' prepared matrices, with an empty KV cache of its own.

    LlamaReference holds the weights and one sequence's cache together and has no public way to share
    the weights between sequences; a shallow copy with fresh cache lists does it (a copy of the fp32
    weights per sequence would take 0.5 GB for SmolLM2).
    """
    sequence = copy.copy(weights)
    sequence._k, sequence._v = [], []
    sequence.position = 0
    sequence._reserve(weights.capacity)
    return sequence
