"""An engine whose tokens are the LPU program's, computed by the step graph's numpy reference.

The LPU runs a sequence as lpu_engine.LpuEngine does: the prompt in steps of `prefill_tokens` rows (a
one-token prompt takes the decode step), then one decode step per new token, each the llama step graph
(models/lpu_graph.py) against a KV cache padded to a bucket of `cache_bucket` slots. This engine
evaluates the same graphs in numpy with the chip's numerics
(`Graph.evaluate`), which the compiled program equals bit for bit (tests/models/test_lpu_graph.py), so the
tokens are the simulated chip's without running the simulator; the LPU seconds come from the `LpuTiming`
it is given (compiled_timing.CompiledTiming: the compiled programs' cycles), the host seconds from the
wall clock. Sequences share the graphs (the weights) and each has its own cache, dropped when its
generation ends or is closed.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from openlpu.chip.spec import ChipSpec, get_chip
from openlpu.compiler.graph import Graph
from openlpu.errors import UserError
from openlpu.models.lpu_graph import build_step_graph, check_numerics, step_inputs
from openlpu.models.registry import LoadedModel
from openlpu.runtime.compiled_timing import bucket_of
from openlpu.runtime.detokenize import IncrementalDetokenizer
from openlpu.runtime.engine import FINISH_LENGTH, FINISH_STOP, Engine, LpuTiming, TokenEvent
from openlpu.runtime.sampling import Sampler, SamplingParams, StopMatcher

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
        if cache_bucket < 1 or prefill_tokens < 1:
            raise UserError(f"cache bucket {cache_bucket} and prefill tokens {prefill_tokens} must be at least 1")
        self.model = model
        self.model_id = served_model_id(model)
        self.aliases = frozenset({model.name, Path(model.path).stem}) - {self.model_id}
        self.context_length = model.config.context
        self.concurrency = concurrency
        self.timing = timing
        self.numerics, self.cache_bucket, self.chip = check_numerics(numerics), cache_bucket, get_chip(chip)
        self.prefill_tokens = prefill_tokens
        self.tokens_source = (f"the {self.numerics} step graph's numpy reference (Graph.evaluate), which the "
                              "compiled program equals bit for bit")
        self._graphs: OrderedDict[tuple[int, int], Graph] = OrderedDict()

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
        sequence = _Sequence(self)
        sampler, detokenizer, stops = Sampler(params), IncrementalDetokenizer(tokenizer), StopMatcher(params.stop)
        start = time.perf_counter()
        logits = sequence.prefill(prompt)
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
            logits = sequence.step([token], 1)
            lpu_s = self.timing.decode_seconds(len(prompt) + index + 1)

    def step_graph(self, tokens: int, cache_len: int) -> Graph:
        """The step of `tokens` rows against `cache_len` slots; the least recently used beyond GRAPHS_KEPT goes."""
        shape = (tokens, cache_len)
        if shape in self._graphs:
            self._graphs.move_to_end(shape)
        else:
            c = self.model.config
            self._graphs[shape] = build_step_graph(c, self.model.weights, self.numerics, tokens, cache_len, self.chip)
            while len(self._graphs) > GRAPHS_KEPT:
                self._graphs.popitem(last=False)
        return self._graphs[shape]


class _Sequence:
    """One sequence's KV cache (fp16, grown a bucket at a time) and the steps that extend it."""

    def __init__(self, engine: ReferenceEngine) -> None:
        c = engine.model.config
        kv = c.n_kv_heads * c.head_dim
        self.engine, self.position = engine, 0
        self.k = np.zeros((c.n_layers, 0, kv), np.float16)
        self.vt = np.zeros((c.n_layers, kv, 0), np.float16)

    def prefill(self, ids: Sequence[int]) -> np.ndarray:
        """The prompt in steps of `prefill_tokens` rows (one token: the decode step); the last token's logits."""
        rows = 1 if len(ids) == 1 else self.engine.prefill_tokens
        for start in range(0, len(ids), rows):
            logits = self.step(ids[start:start + rows], rows)
        return logits

    def step(self, ids: Sequence[int], rows: int) -> np.ndarray:
        """`ids` at the current position in a step of `rows` tokens (the rest padding, last, so no real token
        sees it); stores their keys and values; returns the last one's logits."""
        engine, c, n = self.engine, self.engine.model.config, len(ids)
        cache_len = bucket_of(self.position, engine.cache_bucket)
        graph = engine.step_graph(rows, cache_len)
        room = bucket_of(self.position + rows, engine.cache_bucket)  # the cache as read, and the new slots
        if self.k.shape[1] < room:
            grow = room - self.k.shape[1]
            self.k = np.pad(self.k, ((0, 0), (0, grow), (0, 0)))
            self.vt = np.pad(self.vt, ((0, 0), (0, 0), (0, grow)))
        embeddings = np.zeros((rows, c.d_model), np.float32)
        embeddings[:n] = engine.model.weights.token_embd[list(ids)]
        inputs = step_inputs(c, embeddings, self.position, cache_len)
        for i in range(c.n_layers):
            inputs[f"k{i}"] = self.k[i, :cache_len]
            inputs[f"vt{i}"] = self.vt[i, :, :cache_len]
        outputs = graph.evaluate(inputs, lanes=engine.chip.lanes)
        end = self.position + n
        for i in range(c.n_layers):
            self.k[i, self.position:end] = outputs[f"k_new{i}"][:n]
            self.vt[i, :, self.position:end] = outputs[f"v_new{i}"][:n].T
        self.position = end
        return outputs["logits"][n - 1]
