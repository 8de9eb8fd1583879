"""The llama step graph: compiled for the chip it gives the bits of its own numpy reference, and at fp16 or
int8 its logits stay close to the fp32 reference model (tiny GGUF and SmolLM2-135M's real weights)."""

from dataclasses import replace

import numpy as np
import pytest

from openlpu.compiler.compile import compile
from openlpu.errors import UserError
from openlpu.models.lpu_graph import MASKED, build_step_graph, step_inputs
from openlpu.models.reference import LlamaReference

LANES = 320  # tsp-v1


def _same_bits(a, b):
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a.view(np.uint8), b.view(np.uint8))


def _cache(model, start, cache_len, rng):
    """A random KV cache (the step's state) of `start` filled slots, zeros after."""
    c = model.config
    kv = c.n_kv_heads * c.head_dim
    filled = (np.arange(cache_len) < start)[:, None]
    return {f"{kind}{i}": (rng.standard_normal((cache_len, kv)) * filled).astype(np.float16)
            for i in range(c.n_layers) for kind in "kv"}


def _same_state(a, b):
    return a.keys() == b.keys() and all(_same_bits(a[k], b[k]) for k in a)


@pytest.mark.parametrize("numerics, tokens", [("fp16", 1), ("int8", 8)])  # decode and prefill
def test_compiled_step_gives_the_bits_of_its_reference(tiny, numerics, tokens):
    """Two steps in a row: the second reads the cache rows that the first wrote into SRAM."""
    rng = np.random.default_rng(tokens)
    g = build_step_graph(tiny.config, tiny.weights, numerics, tokens, cache_len=32)
    compiled = compile(g, "tsp-v1", check=False)
    ours = _cache(tiny, 5, 32, rng)
    theirs = dict(ours)
    for start in (5, 5 + tokens):
        inputs = step_inputs(tiny.config, tiny.weights.token_embd[rng.integers(0, tiny.config.vocab, tokens)],
                             start, 32)
        result = compiled.run(inputs, executor="fast", state=ours)
        reference = g.evaluate(inputs, lanes=LANES, state=theirs)
        assert set(result.outputs) == set(reference) == {"logits", "next"}
        assert all(_same_bits(result.outputs[k], reference[k]) for k in reference)
        assert np.array_equal(reference["next"][:, 0], reference["logits"].argmax(1))
        assert _same_state(ours, theirs)
        assert np.any(ours["k1"][start:start + tokens]) and not np.any(ours["v0"][start + tokens:])


def test_cycle_accurate_executor_agrees_on_a_verified_decode_step(tiny):
    rng = np.random.default_rng(0)
    g = build_step_graph(tiny.config, tiny.weights, "int8", 1, cache_len=16)
    compiled = compile(g, "tsp-v1", check=True)
    inputs = step_inputs(tiny.config, tiny.weights.token_embd[[42]], 3, 16)
    cache = _cache(tiny, 3, 16, rng)
    states = [dict(cache), dict(cache), dict(cache)]
    exact = compiled.run(inputs, executor="exact", state=states[0])
    fast = compiled.run(inputs, executor="fast", state=states[1])
    assert exact.cycles == fast.cycles
    assert compiled.cycles_scheduled < exact.cycles < compiled.cycles_scheduled + 100  # the pipeline drains
    assert _same_bits(exact.outputs["logits"], fast.outputs["logits"])
    assert _same_bits(exact.outputs["logits"], g.evaluate(inputs, lanes=LANES, state=states[2])["logits"])
    assert _same_state(states[0], states[1]) and _same_state(states[0], states[2])


def _graph_forward(model, numerics, ids, cache_len, chunk):
    """Logits of every position of `ids`, run through steps of `chunk` tokens with the graph's reference."""
    c = model.config
    graph = build_step_graph(c, model.weights, numerics, chunk, cache_len)
    logits = []
    for start in range(0, len(ids), chunk):
        part = ids[start:start + chunk]
        embeddings = np.zeros((chunk, c.d_model), np.float32)
        embeddings[:len(part)] = model.weights.token_embd[part]
        out = graph.evaluate(step_inputs(c, embeddings, start, cache_len), lanes=LANES)  # the cache is its state
        logits.append(out["logits"][:len(part)])
    return np.concatenate(logits)


@pytest.mark.parametrize("numerics, max_error, min_agreement", [("fp16", 0.01, 1.0), ("int8", 0.15, 0.8)])
def test_logits_stay_close_to_the_fp32_reference(tiny, numerics, max_error, min_agreement):
    """Teacher-forced over 40 tokens in chunks of 16 (the cache carries across chunks, padding ends the last).
    Relative rms error: fp16 rounds to 11 bits; int8 steps of ||x||_4 / 127 (a few % per matmul on random
    weights, over 8 matmuls); measured 0.2% and 7%."""
    ids = tiny.tokenizer.encode("The quick brown fox jumps over the lazy dog, and then some more words.")[:40]
    ours = _graph_forward(tiny, numerics, ids, 64, 16)
    reference = LlamaReference(tiny.config, tiny.weights).forward(ids, all_logits=True)
    assert ours.shape == reference.shape == (len(ids), tiny.config.vocab)
    assert np.linalg.norm(ours - reference) / np.linalg.norm(reference) < max_error
    assert np.mean(ours.argmax(1) == reference.argmax(1)) >= min_agreement


def test_real_weights_on_the_lpu(smollm2):
    """SmolLM2-135M's first two layers (the whole model compiles in ~30 s: benchmarks/lpu_decode.py) with its
    real norms, GQA (9 query heads over 3) and 49,152-token head: the program gives the reference's bits, and
    the reference is close to fp32 numpy."""
    c = replace(smollm2.config, n_layers=2)
    weights = replace(smollm2.weights, layers=smollm2.weights.layers[:2])
    g = build_step_graph(c, weights, "int8", 1, cache_len=16)
    inputs = step_inputs(c, weights.token_embd[[504]], 0, 16)  # nothing cached: the new token attends to itself
    ours, theirs = {}, {}
    result = compile(g, "tsp-v1", check=False).run(inputs, executor="fast", state=ours)
    reference = g.evaluate(inputs, lanes=LANES, state=theirs)
    assert _same_bits(result.outputs["logits"], reference["logits"]) and _same_state(ours, theirs)
    fp32 = LlamaReference(c, weights).forward([504])
    assert np.corrcoef(reference["logits"][0], fp32)[0, 1] > 0.99


def test_step_inputs_mask_the_empty_slots_and_the_future():
    from openlpu.models.tiny_gguf import TINY_CONFIG

    inputs = step_inputs(TINY_CONFIG, np.zeros((3, TINY_CONFIG.d_model)), start=2, cache_len=5)
    heads = TINY_CONFIG.n_heads
    assert inputs["mask"].shape == (heads * 3, 5)
    assert np.array_equal(inputs["mask"][0], [0, 0, MASKED, MASKED, MASKED])
    assert np.array_equal(inputs["mask_new"][:3], [[0, MASKED, MASKED], [0, 0, MASKED], [0, 0, 0]])
    assert np.array_equal(inputs["mask_new"][3:6], inputs["mask_new"][:3])  # every head alike
    with pytest.raises(UserError, match="do not fit a cache of 5 slots"):
        step_inputs(TINY_CONFIG, np.zeros((1, TINY_CONFIG.d_model)), start=5, cache_len=5)


def test_unknown_numerics_is_one_sentence(tiny):
    with pytest.raises(UserError, match="unknown numerics 'bf16'"):
        build_step_graph(tiny.config, tiny.weights, "bf16")
