import math

import pytest

from openlpu.errors import UserError
from openlpu.models.tiny_gguf import TINY_CONFIG
from openlpu.runtime.interim_timing import InterimTiming
from openlpu.sources import sources

CLOCK_HZ = 900e6  # FACTS.md: 900 MHz nominal
MXM_MACS = 4 * 320 * 320  # FACTS.md: 4 planes of 320 x 320


def test_a_decode_step_is_every_layer_at_the_assumed_layer_latency():
    timing = InterimTiming(TINY_CONFIG)
    assert timing.decode_seconds(10) == timing.decode_seconds(200) == 2 * 3000 / CLOCK_HZ


def test_a_prefill_adds_one_mxm_pass_of_the_weights_per_further_prompt_token():
    timing = InterimTiming(TINY_CONFIG, layer_cycles=1000)
    # tiny model: 2 layers x (q, k, v, o: 2*64*64 + 2*64*32; gate, up, down: 3*64*128) + output 384*64
    matmul_weights = 2 * (2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 128) + 384 * 64
    interval = math.ceil(matmul_weights / MXM_MACS)
    assert timing.token_interval_cycles == interval
    assert timing.prefill_seconds(1) == timing.decode_seconds(1) == 2000 / CLOCK_HZ
    assert timing.prefill_seconds(101) == pytest.approx((2000 + 100 * interval) / CLOCK_HZ, rel=1e-12)


def test_the_timing_says_it_is_interim_and_its_latency_assumed():
    timing = InterimTiming(TINY_CONFIG)
    assert timing.kind == "interim"
    assert sources(timing)["layer_cycles"].startswith("assumed:")


def test_an_empty_prefill_is_refused():
    with pytest.raises(UserError, match="0 tokens"):
        InterimTiming(TINY_CONFIG).prefill_seconds(0)
