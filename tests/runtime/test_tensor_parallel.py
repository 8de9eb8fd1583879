"""Tensor parallelism over the chips of a node: every layer's heads and FFN columns split over the chips,
partial sums all-reduced over the node's links (models/tp_graph.py, runtime/tensor_parallel.py). The tiny
model here has SmolLM2-135M's grouping of heads (9 query heads over 3 kv heads), so 8 chips split them as
SmolLM2's would: chip 0 takes two heads."""

import json

import numpy as np
import pytest

from openlpu.errors import UserError
from openlpu.models.registry import load_model, resolve_model
from openlpu.models.tiny_gguf import write_tiny_gguf
from openlpu.models.tp_graph import shard_layer, shard_plan
from openlpu.models.zoo import load_config
from openlpu.runtime.lpu_engine import LpuEngine
from openlpu.system.collectives import lower_bound

WAYS = 8


@pytest.fixture(scope="module")
def tiny93(tmp_path_factory):
    return load_model(str(write_tiny_gguf(tmp_path_factory.mktemp("tiny93") / "tiny93.gguf", heads=(9, 3))))


@pytest.fixture(scope="module")
def eight_chips(tiny93):
    """One fp16 generation on 8 chips by tensor parallelism (fast executor), and the engine. One-token steps
    only (the prompt too), so one step shape is compiled: 8 programs for each of the 5 segments."""
    prompt = tiny93.tokenizer.encode("Once upon a time")
    engine = LpuEngine(tiny93, "fp16", executor="fast", cache_bucket=32, prefill_tokens=1, chips=WAYS,
                       parallel="tensor")
    return engine, prompt, engine.generate(prompt, 6)


def test_smollm2_s_heads_and_ffn_columns_are_dealt_out_once_each():
    c = load_config(str(resolve_model("smollm2-135m")))
    shards = shard_plan(c, WAYS)
    assert [s.heads for s in shards] == [(0, 1), (2,), (3,), (4,), (5,), (6,), (7,), (8,)]
    # each query head reads its own kv head (3 query heads per kv head), kept on every chip that needs it
    for s in shards:
        assert [s.kv_heads[k] for k in s.kv_of_head] == [h // 3 for h in s.heads]
    assert [s.ffn for s in shards] == [(192 * r, 192 * (r + 1)) for r in range(WAYS)]
    with pytest.raises(UserError, match="splits it over 1 to 9 chips, not 10"):
        shard_plan(c, 10)


def test_the_shards_weights_put_together_give_the_layer_s(tiny93):
    c, lw = tiny93.config, tiny93.weights.layers[1]
    parts = [shard_layer(c, lw, s) for s in shard_plan(c, WAYS)]
    assert np.array_equal(np.concatenate([p.wq for p in parts]), lw.wq)
    assert np.array_equal(np.concatenate([p.wo for p in parts], axis=1), lw.wo)
    assert np.array_equal(np.concatenate([p.w_gate for p in parts]), lw.w_gate)
    assert np.array_equal(np.concatenate([p.w_down for p in parts], axis=1), lw.w_down)
    hd = c.head_dim
    for s, p in zip(shard_plan(c, WAYS), parts, strict=True):
        for k, kv in enumerate(s.kv_heads):
            assert np.array_equal(p.wk[k * hd:(k + 1) * hd], lw.wk[kv * hd:(kv + 1) * hd])


def test_eight_chips_equal_their_numpy_reference_bit_for_bit(tiny93, eight_chips):
    engine, prompt, gen = eight_chips
    reference = LpuEngine(tiny93, "fp16", executor="reference", cache_bucket=32, prefill_tokens=1, chips=WAYS,
                          parallel="tensor")
    assert reference.generate(prompt, 6).token_ids == gen.token_ids
    ids = prompt[:5]
    logits = engine.sequence(len(ids)).prefill(ids, [])
    expected = reference.sequence(len(ids)).prefill(ids, [])
    assert all(a.tobytes() == b.tobytes() for a, b in zip(logits, expected, strict=True))


def test_eight_chips_give_the_single_chip_reference_s_tokens(tiny93, eight_chips):
    _, prompt, gen = eight_chips
    one_chip = LpuEngine(tiny93, "fp16", executor="reference", cache_bucket=32, prefill_tokens=8)
    assert gen.token_ids == one_chip.generate(prompt, 6).token_ids
    assert gen.summary()["chips"] == WAYS and gen.summary()["parallel"] == "tensor"


def test_a_step_costs_its_slowest_chip_per_segment_plus_the_all_reduces(eight_chips):
    engine, _, gen = eight_chips
    run = gen.decode[0]
    step = engine.step(1, run.cache_len)
    layers = engine.model.config.n_layers
    allreduce = step.allreduce
    assert allreduce.latency >= lower_bound(allreduce)["cycles"] > 0
    assert run.link_cycles == 2 * layers * allreduce.latency
    chips = [e for e in run.events if e[0].startswith("chip")]
    starts = sorted({start for _, start, _ in chips})
    assert len(starts) == 2 * layers + 1  # attention and FFN of each layer, then the head on chip 0
    for start, following in zip(starts, starts[1:], strict=False):
        slowest = max(cycles for _, s, cycles in chips if s == start)
        assert following == start + slowest + allreduce.latency
    assert run.cycles == starts[-1] + max(cycles for _, s, cycles in chips if s == starts[-1])
    assert {n for n, s, _ in chips if s == starts[0]} == {f"chip {r}" for r in range(WAYS)}
    assert {n for n, s, _ in chips if s == starts[-1]} == {"chip 0"}


def test_a_failed_link_under_an_all_reduce_is_re_planned_around(tiny93, eight_chips):
    _, prompt, healthy = eight_chips
    engine = LpuEngine(tiny93, "fp16", executor="reference", cache_bucket=32, prefill_tokens=1, chips=WAYS,
                       parallel="tensor", failed_links=["0-1"])
    gen = engine.generate(prompt, 6)
    assert gen.token_ids == healthy.token_ids
    assert len(gen.replans) == 1 and gen.replans[0].startswith("link 0: ")
    assert engine.known_failed == (0,)
    assert all(0 not in s.allreduce.schedule.hop_link for s in engine._steps.values())


def test_int8_on_two_chips_equals_its_reference(tiny):
    prompt = tiny.tokenizer.encode("Hello")
    runs = [LpuEngine(tiny, "int8", executor=ex, cache_bucket=32, prefill_tokens=1, chips=2,
                      parallel="tensor").generate(prompt, 3).token_ids for ex in ("fast", "reference")]
    assert runs[0] == runs[1]


def test_the_trace_shows_every_chip_at_once_and_the_links_of_the_all_reduces(cli, tiny93, tmp_path):
    trace = tmp_path / "tp.json"
    d = json.loads(cli("generate", "--model", str(tiny93.path), "--prompt", "Hi", "--numerics", "fp16", "--chips",
                       "2", "--parallel", "tensor", "--max-tokens", "2", "--prefill-tokens", "1", "--json",
                       "--trace", str(trace)))
    assert d["parallel"] == "tensor" and d["chips"] == 2
    events = json.loads(trace.read_text())["traceEvents"]
    names = {e["tid"]: e["args"]["name"] for e in events if e.get("name") == "thread_name"}
    assert sorted(names.values()) == ["chip 0", "chip 1", "link 0-1"]
    spans = [e for e in events if e["ph"] == "X"]
    first = min(e["ts"] for e in spans)
    assert {names[e["tid"]] for e in spans if e["ts"] == first} == {"chip 0", "chip 1"}  # side by side


def test_bad_splits_are_one_sentence(tiny):
    with pytest.raises(UserError, match="unknown parallelism 'data': use one of pipeline, tensor"):
        LpuEngine(tiny, parallel="data")
    with pytest.raises(UserError, match="4 query heads: tensor parallelism splits it over 1 to 4 chips, not 8"):
        LpuEngine(tiny, chips=8, parallel="tensor")
    with pytest.raises(UserError, match=r"split 2 ways puts .* of weights, cache and instructions .* on chip 0, "
                                         r"more than its .* SRAM: use more chips"):
        LpuEngine(tiny, "fp16", chip="tsp-mini", executor="reference", chips=2, parallel="tensor").step(1, 512)
