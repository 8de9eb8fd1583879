"""`openlpu predict`: partitioning, capacity and the composition of compiled blocks into a decode time."""

from __future__ import annotations

import dataclasses

import pytest

from openlpu.chip.spec import get_chip
from openlpu.cli import main
from openlpu.errors import UserError
from openlpu.models.zoo import ZOO, DecoderConfig
from openlpu.perf.predict import PARTS, compile_block, plan, predict, smallest_fit, split_layers, system_sizes
from openlpu.perf.shard import ShardShape, default_expert_parallel

# 8-way tensor parallel leaves one head of 40 columns, 80 FFN columns and 80 vocabulary columns a chip.
TINY = DecoderConfig("tiny", 2, 320, 8, 8, 640, 640, 1e4, 64, "a test config")
# 8 experts of 2,560 columns: 320 a chip tensor parallel, one whole expert a chip expert parallel.
TINY_MOE = dataclasses.replace(TINY, name="tiny-moe", d_ffn=2560, n_experts=8, experts_per_token=2)
SRAM = get_chip("tsp-v1").sram_bytes
HZ = get_chip("tsp-v1").clock_hz


@pytest.fixture(scope="module")
def two_and_four():
    kw = dict(chips=8, context=64, prompt_tokens=8)
    return predict(TINY, **kw), predict(dataclasses.replace(TINY, n_layers=4), **kw)


def test_decode_time_is_the_sum_of_its_breakdown(two_and_four):
    for r in two_and_four:
        assert set(r.breakdown) == set(PARTS)
        assert r.decode_s == pytest.approx(sum(r.breakdown.values()), rel=1e-12)
        assert r.tokens_per_s_per_user == pytest.approx(1 / r.decode_s)
        assert r.ttft_s == pytest.approx(sum(r.ttft_breakdown.values()), rel=1e-12)


def test_each_extra_layer_adds_its_compiled_blocks_and_two_allreduces(two_and_four):
    two, four = two_and_four
    s = ShardShape.of(TINY, 8, "int8")
    attn, mlp = compile_block(s, "attention", cache=64), compile_block(s, "mlp")
    for part in ("matrix", "vector", "memory"):
        per_layer = (getattr(attn, part) + getattr(mlp, part)) / HZ
        assert four.breakdown[part] - two.breakdown[part] == pytest.approx(2 * per_layer, rel=1e-9)
    head = compile_block(s, "lm_head").cycles / HZ
    two_layers, four_layers = (r.decode_s - r.breakdown["host"] - head for r in two_and_four)
    assert 1.95 < four_layers / two_layers < 2.05  # twice the layers, twice the time


def test_one_stage_has_no_handoffs_and_its_network_is_the_allreduces(two_and_four):
    two, _ = two_and_four
    assert two.plan.stages == 1 and two.plan.chips == 8
    d = two.as_dict()
    reduce = int(d["derivation"]["network"].split("(")[1].split(" ")[0])
    assert two.breakdown["network"] == pytest.approx(2 * TINY.n_layers * reduce / HZ)


def test_shard_weights_are_an_eighth_of_the_layer():
    m = ZOO["llama2-70b-4096"]
    s = ShardShape.of(m, 8, "int8")
    assert 8 * s.matmul_weights_per_layer == m.attention_params + m.expert_params
    assert (s.heads, s.kv_heads, s.ffn, s.vocab) == (8, 1, 3584, 4000)
    assert ShardShape.of(ZOO["llama2-7b-2048"], 8, "fp16").kv_heads == 4


def test_layers_split_into_contiguous_even_stages():
    assert split_layers(80, 72) == (2,) * 8 + (1,) * 64
    assert split_layers(32, 5) == (7, 7, 6, 6, 6)
    assert split_layers(3, 4) == (1, 1, 1, 0)  # the LM head on a node of its own


def test_fp16_llama2_70b_needs_a_node_for_its_lm_head():
    m = ZOO["llama2-70b-4096"]
    best = smallest_fit(m, "fp16", m.context, 1, SRAM)  # 214 MB of fp16 weights a layer and chip
    assert best.stage_layers == (1,) * 80 + (0,) and best.system_chips == 11 * 64
    with pytest.raises(UserError, match="--chips 704"):
        predict(m, chips=576, numerics="fp16")


def test_system_sizes_are_nodes_of_a_rack_then_racks_of_64_active_chips():
    sizes = system_sizes()
    assert sizes[:8] == [8, 16, 24, 32, 40, 48, 56, 64] and sizes[8:10] == [128, 192]


def test_a_model_that_does_not_fit_gets_one_sentence_with_the_chips_it_needs():
    m = ZOO["llama2-70b-4096"]
    best = smallest_fit(m, "int8", m.context, 1, SRAM)
    smaller = [n for n in system_sizes() if n < best.system_chips][-1]
    assert best.fits and not plan(m, smaller, "int8", m.context, 1, SRAM).fits
    # 80 int8 layers of 107 MB a chip: two layers and their caches fit a chip, three do not.
    assert max(best.stage_layers) == 2
    with pytest.raises(UserError) as err:
        predict(m, chips=8)
    message = str(err.value)
    assert f"--chips {best.system_chips}" in message and "80 layers a node" in message
    assert message.count(". ") == 0 and message.endswith(".")


def test_without_chips_the_smallest_system_that_fits_is_chosen_and_says_why(moe_by_ep):
    assert predict(TINY, context=64, prompt_tokens=8).plan.chips == 8
    assert predict(TINY, context=64, prefill=False).chips_because.startswith("the smallest system: one node")
    assert moe_by_ep[1].chips_because == "given: --chips 8"
    deep = dataclasses.replace(TINY, n_layers=300)  # each layer's 1 MiB margin: 300 of them fill two nodes
    assert smallest_fit(deep, "int8", 64, 1, SRAM).system_chips == 16
    smaller = plan(deep, 8, "int8", 64, 1, SRAM)
    assert predict(deep, context=64, prefill=False).chips_because == (
        f"the smallest system that fits: on {smaller.system_chips} chips a chip would need "
        f"{smaller.bytes_per_chip / 1e6:,.1f} MB of SRAM, over its 230.7 MB")


def test_users_in_flight_are_limited_by_the_sram_left_for_their_caches():
    m = ZOO["llama2-70b-4096"]
    p = plan(m, 576, "int8", m.context, 1, SRAM)
    slots = p.users_in_flight
    assert 1 <= slots < p.stages
    assert max(p.stage_bytes(i, slots) for i in range(p.stages)) <= SRAM
    assert max(p.stage_bytes(i, slots + 1) for i in range(p.stages)) > SRAM


def test_the_command_prints_json_and_refuses_what_does_not_fit(capsys):
    assert main(["predict", "llama2-70b-4096", "--chips", "8"]) == 2
    assert "SRAM per chip" in capsys.readouterr().err
    assert main(["predict", "llama2-7b-2048", "--chips", "12"]) == 2
    assert "multiple of 8" in capsys.readouterr().err
    assert main(["predict", "mixtral-8x7b-32768", "--expert-parallel", "3"]) == 2
    assert "expert parallelism 3 for mixtral-8x7b-32768" in capsys.readouterr().err


def test_two_stages_add_one_scheduled_handoff(two_and_four):
    one, two = two_and_four[0], predict(TINY, chips=16, context=64, prompt_tokens=8)
    assert two.plan.stage_layers == (1, 1) and two.plan.chips == 16
    handoff = two.breakdown["network"] - one.breakdown["network"]
    assert 0 < handoff * HZ < 5000  # one 1.3 kB transfer per chip of the node, over the rack's links
    assert two.slowest_stage_s < one.slowest_stage_s


def test_fp16_weights_take_longer_to_install_than_int8(two_and_four):
    fp16 = predict(TINY, chips=8, context=64, prompt_tokens=8, numerics="fp16")
    assert fp16.plan.shape.weight_width == 2
    assert fp16.breakdown["matrix"] > two_and_four[0].breakdown["matrix"]


def test_a_batch_decodes_its_users_together():
    one, two = (predict(TINY, chips=8, context=64, prompt_tokens=8, batch=b) for b in (1, 2))
    assert one.decode_s < two.decode_s < 2 * one.decode_s  # the weights are installed once for both users
    assert two.tokens_per_s_system == pytest.approx(2 / two.decode_s)


@pytest.mark.parametrize("ep, experts, ffn, slots_1, slots_4", [(1, 8, 80, 2, 8), (2, 4, 160, 2, 4),
                                                              (8, 1, 640, 1, 1)])
def test_expert_parallel_shards_hold_every_expert_once_and_run_the_worst_case_of_routing(ep, experts, ffn,
                                                                                        slots_1, slots_4):
    m = ZOO["mixtral-8x7b-32768"]
    s = ShardShape.of(dataclasses.replace(m, d_ffn=640), 8, "int8", ep)
    assert (s.experts, s.ffn, s.slots(1), s.slots(4), s.router) == (experts, ffn, slots_1, slots_4, 8)
    real = ShardShape.of(m, 8, "int8", ep)
    # Eight chips hold the attention and all 8 experts once between them, and a router each.
    assert 8 * (real.matmul_weights_per_layer - m.d_model * 8) == m.attention_params + 8 * m.expert_params
    assert real.step_weights_per_layer(1) - real.step_weights_per_layer(0) == \
        min(real.experts, 2) * 3 * m.d_model * real.ffn


def test_the_default_expert_parallelism_runs_the_fewest_expert_columns():
    m = ZOO["mixtral-8x7b-32768"]
    assert default_expert_parallel(m, 8, 1) == 1  # 2 slots of 1,792 columns beat one expert of 14,336
    assert default_expert_parallel(m, 8, 4) == 8  # 8 tokens pick every expert: a tie, one expert a chip
    assert default_expert_parallel(ZOO["llama2-70b-4096"], 8, 1) == 1
    odd = dataclasses.replace(m, d_ffn=14338)  # splits 2 ways, not 4: only 4 or 8 expert groups can hold it
    with pytest.raises(UserError, match="do not split"):
        ShardShape.of(odd, 8, "int8", 1)
    assert default_expert_parallel(odd, 8, 1) == 8  # 2 slots of 7,169 columns tie 1 of 14,338
    with pytest.raises(UserError, match="use one of 1, 2, 4, 8"):
        ShardShape.of(m, 8, "int8", 3)


def test_mixtral_fits_a_layer_a_node_at_int8():
    m = ZOO["mixtral-8x7b-32768"]
    best = smallest_fit(m, "int8", m.context, 1, SRAM)
    assert best.system_chips == 256 and best.stage_layers == (1,) * 32
    with pytest.raises(UserError) as err:  # four users' 32k caches do not fit beside a layer's experts
        predict(m, batch=4)
    assert "(1 layer a node)" in str(err.value) and str(err.value).endswith("use a shorter context or a smaller batch.")


@pytest.fixture(scope="module")
def moe_by_ep():
    return {ep: predict(TINY_MOE, chips=8, context=64, prompt_tokens=8, expert_parallel=ep, prefill=False)
            for ep in (1, 8)}


def test_a_mixture_of_experts_predicts_from_its_compiled_expert_slots(moe_by_ep):
    tp, ep = moe_by_ep[1], moe_by_ep[8]
    for r in (tp, ep):
        assert r.decode_s == pytest.approx(sum(r.breakdown.values()), rel=1e-12) and r.ttft_s is None
    assert tp.as_dict()["partitioning"]["expert_slots_per_decode_step"] == 2
    assert ep.as_dict()["partitioning"]["experts_per_chip"] == 1
    # One expert of 2,560 columns installs 4x the weights of two slots of 320: the MXM is busier.
    assert ep.breakdown["matrix"] > tp.breakdown["matrix"]
    mlp = compile_block(tp.plan.shape, "mlp")
    dense = compile_block(ShardShape.of(TINY, 8, "int8"), "mlp")
    assert mlp.matrix > dense.matrix  # two expert slots and a router against one dense MLP
