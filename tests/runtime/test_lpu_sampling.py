"""Sampling on the simulated LPU (the tiny GGUF): the chip draws the tokens, the same on the fast, exact and
reference executors for a seed, and the same seed repeats them."""

import pytest

from openlpu.runtime.lpu_engine import LpuEngine
from openlpu.runtime.sampling import SamplingParams

NEW_TOKENS = 16
BUCKET = 16  # the prompt plus 16 tokens cross from a 16-slot cache to a 32-slot one


@pytest.fixture(scope="module")
def prompt(tiny):
    return tiny.tokenizer.encode("Once upon a time")


def engine(tiny, executor):
    return LpuEngine(tiny, "int8", executor=executor, cache_bucket=BUCKET, prefill_tokens=8)


@pytest.mark.parametrize("top_p", [1.0, 0.9])
def test_seeded_sampling_on_the_chip_equals_the_reference(tiny, prompt, top_p):
    params = SamplingParams(temperature=0.9, top_p=top_p, seed=3)
    fast = engine(tiny, "fast")
    ours = fast.generate(prompt, NEW_TOKENS, sampling=params)
    assert len(ours.token_ids) == NEW_TOKENS
    mode = "sample" if top_p == 1 else "nucleus"  # the prompt's first step of 8 is greedy's: its choices go unused
    assert sorted(fast._steps) == [(1, BUCKET, mode), (1, 2 * BUCKET, mode), (8, BUCKET, "greedy"), (8, BUCKET, mode)]
    reference = engine(tiny, "reference")
    assert ours.token_ids == reference.generate(prompt, NEW_TOKENS, sampling=params).token_ids
    assert ours.token_ids == reference.generate(prompt, NEW_TOKENS, sampling=params).token_ids  # the seed repeats
    other = reference.generate(prompt, NEW_TOKENS, sampling=SamplingParams(temperature=0.9, top_p=top_p, seed=4))
    assert other.token_ids != ours.token_ids
    assert reference.generate(prompt, NEW_TOKENS).token_ids != ours.token_ids  # not greedy


def test_the_cycle_accurate_executor_draws_the_same_tokens(tiny, prompt):
    """One prefill step and one decode step, vector by vector."""
    params = SamplingParams(temperature=1.2, top_p=0.8, seed=9)
    exact = LpuEngine(tiny, "int8", executor="exact", cache_bucket=BUCKET, prefill_tokens=BUCKET)
    reference = LpuEngine(tiny, "int8", executor="reference", cache_bucket=BUCKET, prefill_tokens=BUCKET)
    assert exact.generate(prompt, 2, sampling=params).token_ids == reference.generate(prompt, 2,
                                                                                      sampling=params).token_ids


def test_sampling_adds_cycles_to_a_step_only_when_asked(tiny, prompt):
    """Greedy keeps its program; a temperature adds the noise and an argmax's few passes; top-p its
    rounds of bisection."""
    e = engine(tiny, "fast")
    cycles = {mode: e.step(1, BUCKET, mode).stages[-1].compiled.cycles_scheduled
              for mode in ("greedy", "sample", "nucleus")}
    assert cycles["greedy"] < cycles["sample"] < cycles["nucleus"]
