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


def _inputs(model, ids, start, cache_len, rng):
    """Step inputs for `ids` at `start`, with a random cache of `start` filled slots (zeros after)."""
    c = model.config
    kv = c.n_kv_heads * c.head_dim
    inputs = step_inputs(c, model.weights.token_embd[ids], start, cache_len)
    filled = (np.arange(cache_len) < start)
    for i in range(c.n_layers):
        inputs[f"k{i}"] = (rng.standard_normal((cache_len, kv)) * filled[:, None]).astype(np.float16)
        inputs[f"vt{i}"] = (rng.standard_normal((kv, cache_len)) * filled).astype(np.float16)
    return inputs


@pytest.mark.parametrize("numerics, tokens", [("fp16", 1), ("int8", 8)])  # decode and prefill
def test_compiled_step_gives_the_bits_of_its_reference(tiny, numerics, tokens):
    rng = np.random.default_rng(tokens)
    g = build_step_graph(tiny.config, tiny.weights, numerics, tokens, cache_len=32)
    inputs = _inputs(tiny, rng.integers(0, tiny.config.vocab, tokens), 5, 32, rng)
    result = compile(g, "tsp-v1", check=False).run(inputs, executor="fast")
    reference = g.evaluate(inputs, lanes=LANES)
    assert set(result.outputs) == set(reference) == {"logits"} | {f"{kv}_new{i}" for kv in "kv" for i in range(2)}
    for name, value in reference.items():
        assert _same_bits(result.outputs[name], value), name


def test_cycle_accurate_executor_agrees_on_a_verified_decode_step(tiny):
    rng = np.random.default_rng(0)
    g = build_step_graph(tiny.config, tiny.weights, "int8", 1, cache_len=16)
    compiled = compile(g, "tsp-v1", check=True)
    inputs = _inputs(tiny, [42], 3, 16, rng)
    exact, fast = compiled.run(inputs, executor="exact"), compiled.run(inputs, executor="fast")
    assert exact.cycles == fast.cycles
    assert compiled.cycles_scheduled < exact.cycles < compiled.cycles_scheduled + 100  # the pipeline drains
    assert all(_same_bits(exact.outputs[k], fast.outputs[k]) for k in fast.outputs)
    assert _same_bits(exact.outputs["logits"], g.evaluate(inputs, lanes=LANES)["logits"])


def _graph_forward(model, numerics, ids, cache_len, chunk):
    """Logits of every position of `ids`, run through steps of `chunk` tokens with the graph's reference."""
    c = model.config
    kv = c.n_kv_heads * c.head_dim
    cache_k = np.zeros((c.n_layers, cache_len, kv), np.float16)
    cache_vt = np.zeros((c.n_layers, kv, cache_len), np.float16)
    graph = build_step_graph(c, model.weights, numerics, chunk, cache_len)
    logits = []
    for start in range(0, len(ids), chunk):
        part = ids[start:start + chunk]
        embeddings = np.zeros((chunk, c.d_model), np.float32)
        embeddings[:len(part)] = model.weights.token_embd[part]
        inputs = step_inputs(c, embeddings, start, cache_len)
        for i in range(c.n_layers):
            inputs[f"k{i}"], inputs[f"vt{i}"] = cache_k[i], cache_vt[i]
        out = graph.evaluate(inputs, lanes=LANES)
        for i in range(c.n_layers):
            cache_k[i, start:start + len(part)] = out[f"k_new{i}"][:len(part)]
            cache_vt[i, :, start:start + len(part)] = out[f"v_new{i}"][:len(part)].T
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
    rng = np.random.default_rng(1)
    g = build_step_graph(c, weights, "int8", 1, cache_len=16)
    model = replace(smollm2, config=c, weights=weights)
    inputs = _inputs(model, [504], 0, 16, rng)  # nothing cached: the new token attends to itself only
    result = compile(g, "tsp-v1", check=False).run(inputs, executor="fast")
    reference = g.evaluate(inputs, lanes=LANES)
    assert all(_same_bits(result.outputs[k], reference[k]) for k in reference)
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
        step_inputs(TINY_CONFIG, np.zeros((1, TINY_CONFIG.d_model)), start=6, cache_len=5)


def test_unknown_numerics_is_one_sentence(tiny):
    with pytest.raises(UserError, match="unknown numerics 'bf16'"):
        build_step_graph(tiny.config, tiny.weights, "bf16")
