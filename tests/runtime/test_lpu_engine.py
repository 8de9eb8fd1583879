"""Greedy generation on the simulated LPU: the same tokens as the step graph's numpy reference at the same
numerics, close to the fp32 model, and timing that is a property of the compiled programs."""

import numpy as np
import pytest

from openlpu.errors import UserError
from openlpu.models.reference import LlamaReference, greedy
from openlpu.runtime.lpu_engine import LpuEngine

NEW_TOKENS = 16
BUCKET = 16  # the prompt plus 16 tokens cross from a 16-slot cache to a 32-slot one


@pytest.fixture(scope="module")
def prompt(tiny):
    return tiny.tokenizer.encode("Once upon a time")


@pytest.fixture(scope="module", params=["fp16", "int8"])
def runs(request, tiny, prompt):
    """(LPU generation on the fast executor, the same with the graph's numpy reference) for one numerics mode."""
    lpu = LpuEngine(tiny, request.param, executor="fast", cache_bucket=BUCKET, prefill_tokens=8)
    reference = LpuEngine(tiny, request.param, executor="reference", cache_bucket=BUCKET, prefill_tokens=8)
    return lpu.generate(prompt, NEW_TOKENS), reference.generate(prompt, NEW_TOKENS), lpu


def test_lpu_tokens_equal_the_reference_at_the_same_numerics(runs, prompt):
    lpu, reference, _ = runs
    assert len(lpu.token_ids) == NEW_TOKENS
    assert lpu.token_ids == reference.token_ids
    assert lpu.prompt_tokens == len(prompt) < BUCKET
    assert [s.cache_len for s in lpu.decode] == [BUCKET * (1 + (len(prompt) + k + 1 > BUCKET))
                                                 for k in range(NEW_TOKENS - 1)]


def test_close_to_the_fp32_model(runs, tiny, prompt):
    """fp16 keeps greedy decoding of the tiny model unchanged. int8's first token is a near-tie of fp32's
    (its fp32 logit within 0.5 of the best, a quarter of the logits' std; a free-running sequence diverges
    for good after one different token, so later tokens are compared teacher-forced in tests/models)."""
    lpu, _, _ = runs
    fp32 = LlamaReference(tiny.config, tiny.weights)
    if lpu.numerics == "fp16":
        assert lpu.token_ids == greedy(fp32, prompt, NEW_TOKENS)
    else:
        logits = fp32.forward(prompt)
        assert logits.max() - logits[lpu.token_ids[0]] < 0.5


def test_timing_is_a_property_of_the_programs(runs):
    lpu, reference, engine = runs
    by_bucket = {}
    for step in lpu.decode:
        by_bucket.setdefault(step.cache_len, set()).add(step.cycles)
    for cache_len, cycles in by_bucket.items():
        (stage,) = engine.step(1, cache_len).stages
        compiled = stage.compiled
        assert len(cycles) == 1  # every token of one program takes the same cycles, whatever the data
        assert compiled.cycles_scheduled < cycles.pop() < compiled.cycles_scheduled + 100
    assert lpu.cycles_per_token == np.mean([s.cycles for s in lpu.decode])
    assert lpu.tokens_per_s == pytest.approx(900e6 / lpu.cycles_per_token)
    assert lpu.ttft_s == pytest.approx(sum(s.cycles for s in lpu.prefill) / 900e6)
    assert reference.cycles_per_token == 0  # the numpy reference has no simulated time
    summary = lpu.summary()
    assert summary["completion_tokens"] == NEW_TOKENS and summary["chips"] == 1
    assert summary["host_s"] >= summary["compile_s"] > 0


def test_the_cache_stays_at_its_addresses_from_program_to_program(runs, tiny, prompt):
    """The prefill program and the decode programs of both buckets pin every layer's K and V to one region
    of the sequence's 32 slots: the cache image goes from one program to the next as it is (the tokens above
    equal the reference's across the change of bucket)."""
    _, _, engine = runs
    programs = [step.stages[0].compiled.program for step in engine._steps.values()]
    assert {(s.tokens, s.cache_len) for s in engine._steps.values()} == {(8, BUCKET), (1, BUCKET), (1, 2 * BUCKET)}
    assert engine.cache_slots == 2 * BUCKET
    states = [n.name for n in engine._steps[(1, BUCKET, "greedy")].stages[0].graph.nodes if n.op == "state"]
    assert len(states) == 2 * tiny.config.n_layers
    for name in states:
        assert len({(p.tensors[name].slices, p.tensors[name].addr, p.tensors[name].rows) for p in programs}) == 1
    seq = engine.sequence(len(prompt) + 2)
    seq.prefill(prompt, [])
    seq.run([1], 1, [])
    assert {v.shape[0] for v in seq.cache.values()} == {2 * BUCKET}  # never padded from bucket to bucket


def test_a_stop_token_ends_the_generation(tiny, prompt):
    engine = LpuEngine(tiny, "int8", executor="reference", cache_bucket=BUCKET)
    free = engine.generate(prompt, 5).token_ids
    stopped = engine.generate(prompt, 5, stop_ids={free[2]}).token_ids
    assert stopped == free[:free.index(free[2]) + 1]


@pytest.mark.parametrize("call, words", [
    (lambda e: e.generate([], 4), "the prompt has no tokens"),
    (lambda e: e.generate([1, 2], 0), "ask for at least 1 new token"),
    (lambda e: e.generate([1] * 250, 10), "exceed the context length of 256"),
    (lambda e: e.generate([1, 9999], 4), r"token ids must lie in \[0, 384\); got \[9999\]"),
])
def test_bad_requests_get_one_sentence(tiny, call, words):
    with pytest.raises(UserError, match=words):
        call(LpuEngine(tiny, "int8", executor="reference"))


def test_bad_settings_get_one_sentence(tiny):
    with pytest.raises(UserError, match="unknown executor 'gpu'"):
        LpuEngine(tiny, executor="gpu")
    with pytest.raises(UserError, match="unknown numerics 'fp8'"):
        LpuEngine(tiny, "fp8")


def test_smollm2_answers_paris_at_the_lpu_numerics():
    """The whole SmolLM2-135M at int8, through the step graph's numpy reference (the LPU's bits: the compiled
    program takes ~30 s to compile and ~4 s a token on the fast executor, so benchmarks/lpu_decode.py runs it)."""
    from openlpu.models.registry import load_model

    model = load_model("smollm2-135m")
    tok = model.tokenizer
    prompt = tok.encode_chat([{"role": "user", "content": "What is the capital of France?"}])
    engine = LpuEngine(model, "int8", executor="reference", cache_bucket=64, prefill_tokens=16)
    gen = engine.generate(prompt, 6, tok.stop_ids)
    assert tok.decode(gen.token_ids) == "The capital of France is Paris"
    assert gen.token_ids == greedy(LlamaReference(model.config, model.weights), prompt, 6, tok.stop_ids)


def test_real_weights_generate_64_tokens_on_the_lpu_like_the_reference():
    """SmolLM2-135M's real weights, tokenizer and head with its first two layers (the whole model takes minutes
    a prompt on this host: benchmarks/lpu_decode.py runs it): 64 greedy tokens on the fast executor, for three
    chat prompts, equal the step graph's reference token for token; a few also on the cycle-accurate one."""
    from dataclasses import replace

    from openlpu.models.registry import load_model

    model = load_model("smollm2-135m")
    model = replace(model, config=replace(model.config, n_layers=2),
                    weights=replace(model.weights, layers=model.weights.layers[:2]))
    tok = model.tokenizer
    lpu = LpuEngine(model, "int8", executor="fast", cache_bucket=64)
    reference = LpuEngine(model, "int8", executor="reference", cache_bucket=64)
    for question in ("What is the capital of France?", "Name three colours.", "Why do cats purr?"):
        prompt = tok.encode_chat([{"role": "user", "content": question}])
        ours = lpu.generate(prompt, 64)
        assert len(ours.token_ids) == 64
        assert ours.token_ids == reference.generate(prompt, 64).token_ids
    # the same programs: the cache's pinned regions sized for the fast engine's 64-token answers too
    exact = LpuEngine(model, "int8", executor="exact", cache_bucket=64, cache_slots=lpu.cache_slots).generate(prompt, 3)
    assert exact.token_ids == ours.token_ids[:3]
    assert [s.cycles for s in exact.decode] == [s.cycles for s in ours.decode[:2]]


def test_a_prefill_step_too_big_for_the_chip_is_halved_until_it_fits(tiny, prompt):
    """On a chip with 704 of tsp-mini's 1,024 addresses a slice, the tiny model's 8-token fp16 step does not fit
    and a smaller one does: the engine halves the prompt's steps for good, and the tokens are the reference's
    in steps of that size."""
    from dataclasses import replace

    from openlpu.chip.spec import get_chip
    from openlpu.compiler.alloc import SramFull

    small = replace(get_chip("tsp-mini"), name="tsp-small", mem_addresses=704)
    engine = LpuEngine(tiny, "fp16", chip=small, executor="fast", cache_bucket=32, prefill_tokens=8)
    with pytest.raises(SramFull):
        LpuEngine(tiny, "fp16", chip=small, executor="fast", cache_bucket=32).step(8, 32)
    gen = engine.generate(prompt, 3)
    assert gen.prefill_tokens == engine.prefill_tokens < 8
    reference = LpuEngine(tiny, "fp16", chip=small, executor="reference", cache_bucket=32,
                          prefill_tokens=gen.prefill_tokens)
    assert gen.token_ids == reference.generate(prompt, 3).token_ids


def test_greedy_tokens_are_the_chip_s_argmax_of_its_logits(tiny, prompt):
    """The step's `next` output (argmax on the chip, the first on ties) is numpy's argmax of its logits, row by
    row, for prefill and decode steps; greedy generation takes it."""
    engine = LpuEngine(tiny, "int8", executor="fast", cache_bucket=32, prefill_tokens=8)
    seq = engine.sequence(len(prompt) + 4)
    for i in range(0, len(prompt), 8):
        logits = seq.run(prompt[i:i + 8], 8, [])
        assert len(seq.chosen) == len(logits) and np.array_equal(seq.chosen, logits.argmax(1))
    for _ in range(3):
        logits = seq.run([int(seq.chosen[-1])], 1, [])
        assert np.array_equal(seq.chosen, logits.argmax(1))
