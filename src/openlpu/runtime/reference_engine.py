"""An engine whose tokens are the LPU program's, computed by the step graph's numpy reference.

The LPU runs a sequence as lpu_engine.LpuEngine does: the prompt in steps of `prefill_tokens` rows (a
one-token prompt takes the decode step), then one decode step per new token, each the llama step graph
(models/lpu_graph.py) against a KV cache padded to a bucket of `cache_bucket` slots. This engine
evaluates the same graphs in numpy with the chip's numerics
(`Graph.evaluate`), which the compiled program equals bit for bit (tests/models/test_lpu_graph.py), so the
tokens are the simulated chip's (chosen by the graph itself: greedy, or sampled with the request's seeded
Gumbel noise; models/sampling_graph.py) without running the simulator; the LPU seconds come from the `LpuTiming`
it is given (compiled_timing.CompiledTiming: the compiled programs' cycles), the host seconds from the
wall clock. Sequences share the graphs (the weights) and each has its own cache, dropped when its
generation ends or is closed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from openlpu.chip.spec import ChipSpec
from openlpu.errors import UserError
from openlpu.models.registry import LoadedModel
from openlpu.models.sampling_graph import sampling_mode
from openlpu.runtime.detokenize import IncrementalDetokenizer
from openlpu.runtime.engine import FINISH_LENGTH, FINISH_STOP, Engine, LpuTiming, TokenEvent
from openlpu.runtime.lpu_engine import LpuEngine
from openlpu.runtime.sampling import SamplingParams, StopMatcher

GRAPHS_KEPT = 2  # step graphs held at once: SmolLM2's take ~0.9 GB each with their prepared weight tiles


def served_model_id(model: LoadedModel) -> str:
    """Groq's naming: the model's name, then its context length (`smollm2-135m-8192`)."""
    name = Path(model.name).stem if model.name.endswith(".gguf") else model.name
    return f"{name}-{model.config.context}"


class ReferenceEngine(Engine):
    def __init__(self, model: LoadedModel, timing: LpuTiming, concurrency: int = 1, numerics: str = "int8",
                 cache_bucket: int = 64, chip: str | ChipSpec = "tsp-v1", prefill_tokens: int = 1) -> None:
        if concurrency < 1:
            raise UserError(f"engine concurrency {concurrency} must be at least 1 sequence")
        self.model = model
        self.model_id = served_model_id(model)
        self.aliases = frozenset({model.name, Path(model.path).stem}) - {self.model_id}
        self.context_length = model.config.context
        self.concurrency = concurrency
        self.timing = timing
        # the LPU engine's own sequences, with the reference executor: the step graphs evaluated, not compiled
        self.lpu = LpuEngine(model, numerics, chip, "reference", cache_bucket, prefill_tokens, steps_kept=GRAPHS_KEPT)
        self.numerics = self.lpu.numerics
        self.tokens_source = (f"the {self.numerics} step graph's numpy reference (Graph.evaluate), which the "
                              "compiled program equals bit for bit")

    @property
    def cache_bucket(self) -> int:
        return self.lpu.cache_bucket

    @property
    def prefill_tokens(self) -> int:
        return self.lpu.prefill_tokens

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
        sequence = self.lpu.sequence(len(prompt) + budget, params)
        detokenizer, stops = IncrementalDetokenizer(tokenizer), StopMatcher(params.stop)
        start = time.perf_counter()
        sequence.prefill(list(prompt), [])
        mode = sampling_mode(params.temperature, params.top_p)  # the sampling ops cost cycles too
        lpu_s = self.timing.prefill_seconds(len(prompt), mode)
        for index in range(budget):
            token = int(sequence.chosen[-1])
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
            sequence.run([token], 1, [])
            lpu_s = self.timing.decode_seconds(len(prompt) + index + 1, mode)
