import dataclasses

import pytest

from openlpu.errors import UserError
from openlpu.models.zoo import ZOO, load_decoder_config
from openlpu.perf.cost import (
    SECONDS_PER_MONTH,
    CostAssumptions,
    System,
    gpu_curve,
    lpu_curve,
    lpu_point,
    seed_comparison,
    usd_per_mtoken,
)
from openlpu.perf.gpu import H100Sxm, max_batch
from openlpu.perf.predict import predict

SEED = CostAssumptions()
H100 = H100Sxm()


def test_seed_comparison_reproduces_the_published_figures():
    rows = {r.item: r for r in seed_comparison(SEED, H100)}
    # The seed's arithmetic, by hand: 572 x $20K; 572 x 0.185 kW x $200 x 36 months;
    # one $300K server; 10 kW x $200 x 36 months.
    assert rows["LPU hardware"].computed_usd == 11_440_000
    assert rows["LPU operations"].computed_usd == pytest.approx(761_904, abs=1e-6)
    assert rows["GPU hardware"].computed_usd == 300_000
    assert rows["GPU operations"].computed_usd == 72_000
    # Each computed figure equals the published one at the precision it was published with.
    assert round(rows["LPU hardware"].computed_usd / 1e6, 2) == rows["LPU hardware"].published_usd / 1e6
    assert round(rows["LPU operations"].computed_usd / 1e6, 3) == rows["LPU operations"].published_usd / 1e6
    assert rows["GPU hardware"].ratio == 1
    assert rows["GPU operations"].ratio == 1


def test_every_seed_assumption_moves_its_figure():
    a = dataclasses.replace(SEED, lpu_cards=576, lpu_card_w=215.0, usd_per_kw_month=100.0, months=12)
    gpu = dataclasses.replace(H100, server_price_usd=250_000.0, server_kw=12.0)
    rows = {r.item: r.computed_usd for r in seed_comparison(dataclasses.replace(a, gpu_servers=2), gpu)}
    assert rows == pytest.approx({
        "LPU hardware": 576 * 20_000,
        "LPU operations": 576 * 0.215 * 100 * 12,
        "GPU hardware": 2 * 250_000,
        "GPU operations": 2 * 12 * 100 * 12,
    })


def test_cost_per_million_tokens_by_hand():
    system = System("test", units=2, unit_price_usd=1000.0, unit_kw=0.5)
    a = dataclasses.replace(SEED, usd_per_kw_month=100.0, months=12, utilisation=0.5)
    # $2,000 of hardware + 2 x 0.5 kW x $100 x 12 months = $3,200 over 10 tokens/s x half of
    # 12 months of 2,629,800 s (365.25 / 12 days) = 157,788,000 tokens.
    assert SECONDS_PER_MONTH == 2_629_800
    assert usd_per_mtoken(system, 10.0, a) == pytest.approx(3200 / 157.788, rel=1e-12)
    with pytest.raises(UserError, match="positive throughput"):
        usd_per_mtoken(system, 0.0, a)
    with pytest.raises(UserError, match=r"utilisation 1.5: give a fraction of the time in \(0, 1\]"):
        dataclasses.replace(a, utilisation=1.5)
    with pytest.raises(UserError, match="months = 0: give at least 1"):
        dataclasses.replace(a, months=0)
    with pytest.raises(UserError, match="lpu_card_w = -1"):
        dataclasses.replace(a, lpu_card_w=-1)


def test_lpu_points_are_the_predicted_systems_at_their_predicted_throughput(tiny_config):
    tiny = load_decoder_config(tiny_config)
    curve = lpu_curve(SEED, tiny, 16, 64, "int8", max_batch=4)
    assert [p.batch for p in curve] == [1, 2, 4]
    for p in curve:
        prediction = predict(tiny, 16, context=64, batch=p.batch, prefill=False)
        assert p == lpu_point(SEED, prediction) and p.system == "16 LPU cards"
        assert p.tokens_per_s == prediction.tokens_per_s_system
        assert p.users == prediction.plan.users_in_flight * p.batch
        total = 16 * 20_000 + 16 * 0.185 * 200 * 36
        assert p.usd_per_mtoken == pytest.approx(total / (p.tokens_per_s * 36 * SECONDS_PER_MONTH) * 1e6, rel=1e-12)
    speeds = [p.tokens_per_s_per_user for p in curve]
    assert speeds == sorted(speeds, reverse=True)  # a bigger batch is a longer step for each of its users


def test_gpu_curve_trades_speed_per_user_for_cost():
    model = ZOO["llama2-70b-4096"]
    curve = gpu_curve(SEED, model, H100, 8, 4096, "int8")
    assert [p.batch for p in curve[:4]] == [1, 2, 4, 8]
    assert curve[-1].batch == max_batch(model, H100, 8, 4096, "int8")
    speeds = [p.tokens_per_s_per_user for p in curve]
    costs = [p.usd_per_mtoken for p in curve]
    assert speeds == sorted(speeds, reverse=True)
    assert costs == sorted(costs, reverse=True)
    # One server's cost over the period spread over batch / decode time tokens per second.
    total = 300_000 + 72_000
    for p in curve:
        assert p.usd_per_mtoken == pytest.approx(total / (p.tokens_per_s * 36 * SECONDS_PER_MONTH) * 1e6)
        assert p.tokens_per_s == pytest.approx(p.batch * p.tokens_per_s_per_user)
