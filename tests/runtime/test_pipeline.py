"""A model over several chips of a node: a pipeline of layer ranges, each stage's residual stream handed to the
next over their scheduled link, its bytes moved by the network executor. The stages together give the
single-chip graph's bits, so the tokens are the reference's at the same numerics."""

import json

import numpy as np
import pytest

from openlpu.errors import UserError
from openlpu.models.lpu_graph import build_step_graph, split_stages, step_inputs
from openlpu.models.registry import load_model
from openlpu.runtime.lpu_engine import LpuEngine

LANES = 320


def test_stages_cover_the_layers_in_order_and_balance_the_head():
    config = load_model("smollm2-135m").config
    for chips in (1, 2, 4, 8):
        stages = split_stages(config, chips)
        assert len(stages) == chips and stages[0][0] == 0 and stages[-1][1] == config.n_layers
        assert all(a[1] == b[0] and a[0] < a[1] for a, b in zip(stages, stages[1:], strict=False))
    # the head is tied to a 49,152 x 576 embedding, about 8 layers' weights: the last stage takes fewer layers
    (a0, a1), (b0, b1) = split_stages(config, 2)
    assert a1 - a0 > b1 - b0


def test_stage_graphs_chained_give_the_whole_graph_s_bits(tiny):
    c = tiny.config
    rng = np.random.default_rng(0)
    cache = 16
    inputs = step_inputs(c, rng.standard_normal((1, c.d_model)).astype(np.float32), 3, cache)
    kv = c.n_kv_heads * c.head_dim
    state = {f"{kind}{i}": rng.standard_normal((cache, kv)).astype(np.float16)
             for i in range(c.n_layers) for kind in "kv"}
    staged = dict(state)
    whole = build_step_graph(c, tiny.weights, "fp16", 1, cache).evaluate(inputs, lanes=LANES, state=state)
    first = build_step_graph(c, tiny.weights, "fp16", 1, cache, layers=(0, 1)).evaluate(inputs, lanes=LANES,
                                                                                       state=staged)
    second = build_step_graph(c, tiny.weights, "fp16", 1, cache, layers=(1, 2)).evaluate(
        {**inputs, "x": first["x_out"]}, lanes=LANES, state=staged)
    assert "logits" not in first and "x_out" not in second
    assert second["logits"].tobytes() == whole["logits"].tobytes()
    assert all(staged[k].tobytes() == state[k].tobytes() for k in state)  # each stage wrote its layers' cache


@pytest.fixture(scope="module")
def two_chips(tiny):
    prompt = tiny.tokenizer.encode("Once upon a time")
    engine = LpuEngine(tiny, "fp16", executor="fast", cache_bucket=32, prefill_tokens=8, chips=2)
    return engine, prompt, engine.generate(prompt, 8)


def test_two_chips_give_the_single_chip_reference_s_tokens(tiny, two_chips):
    engine, prompt, gen = two_chips
    reference = LpuEngine(tiny, "fp16", executor="reference", cache_bucket=32, prefill_tokens=8)
    assert gen.token_ids == reference.generate(prompt, 8).token_ids
    assert gen.chips == engine.chips == 2 and gen.summary()["chips"] == 2


def test_a_step_costs_its_stages_and_its_link(two_chips):
    engine, _, gen = two_chips
    for run in gen.prefill + gen.decode:
        step = engine.step(8 if run in gen.prefill else 1, run.cache_len)
        (handoff,) = step.handoffs
        assert run.link_cycles == handoff.makespan > 209  # at least the fastest measured link (ISCA22 Table 2)
        transfer = handoff.transfers[0]
        assert (transfer.src, transfer.dst, transfer.nbytes) == (0, 1, step.tokens * 64 * 4)
        stage_cycles = run.cycles - run.link_cycles
        assert sum(s.compiled.cycles_scheduled for s in step.stages) < stage_cycles
        assert stage_cycles < sum(s.compiled.cycles_scheduled for s in step.stages) + 200


def test_chip_counts_outside_a_node_or_the_layers_are_one_sentence(tiny):
    with pytest.raises(UserError, match="9 chips: a model runs on the 8 chips of one node; use 1 to 8"):
        LpuEngine(tiny, chips=9)
    with pytest.raises(UserError, match="2 layers: it splits into 1 to 2 pipeline stages, not 4"):
        LpuEngine(tiny, chips=4)


def test_the_trace_shows_each_chip_s_programs_and_each_link_s_hand_offs(cli, tiny, tmp_path):
    trace = tmp_path / "gen.json"
    d = json.loads(cli("generate", "--model", str(tiny.path), "--prompt", "Hi", "--numerics", "fp16", "--chips", "2",
                       "--max-tokens", "3", "--prefill-tokens", "16", "--json", "--trace", str(trace)))
    events = json.loads(trace.read_text())["traceEvents"]
    names = {e["tid"]: e["args"]["name"] for e in events if e.get("name") == "thread_name"}
    assert sorted(names.values()) == ["chip 0", "chip 1", "link 0->1"]
    spans = [e for e in events if e["ph"] == "X"]
    assert len(spans) == 3 * (d["completion_tokens"] - 1 + -(-d["prompt_tokens"] // 16))
    total = d["prefill_cycles"] + d["cycles_per_token"] * (d["completion_tokens"] - 1)
    assert sum(e["args"]["cycles"] for e in spans) == pytest.approx(total)
    links = [e for e in spans if names[e["tid"]] == "link 0->1"]
    assert all(e["args"]["cycles"] > 209 for e in links)


def test_a_failed_link_is_detected_re_planned_around_and_the_answer_kept(tiny, two_chips):
    _, prompt, healthy = two_chips
    engine = LpuEngine(tiny, "fp16", executor="fast", cache_bucket=32, prefill_tokens=8, chips=2,
                       failed_links=["0-1"])
    gen = engine.generate(prompt, 8)
    assert gen.token_ids == healthy.token_ids
    assert len(gen.replans) == 1 and gen.replans[0].startswith("link 0: chip 1 missed a flit")
    assert engine.known_failed == (0,)
    detour = engine.step(1, gen.decode[-1].cache_len).handoffs[0]
    (path, _), = detour.routes(0)
    assert len(path.links) == 2 and 0 not in path.links  # through a third chip of the node
    # the step that found the failure paid for the lost attempt; later ones only for the detour
    first, later = gen.prefill[0], gen.decode[-1]
    assert first.link_cycles > later.link_cycles == detour.makespan > healthy.decode[-1].link_cycles
