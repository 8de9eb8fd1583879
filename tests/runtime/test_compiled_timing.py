"""The served LPU seconds are the compiled step programs' cycles at the chip's clock."""

import pytest

from openlpu.chip.spec import TSP_V1
from openlpu.errors import UserError
from openlpu.runtime import compiled_timing
from openlpu.runtime.compiled_timing import CompiledTiming
from openlpu.runtime.lpu_engine import LpuEngine
from openlpu.runtime.reference_engine import ReferenceEngine
from openlpu.runtime.sampling import SamplingParams

BUCKET = 8  # small, so that a short generation crosses from one step program to the next
PREFILL = 4
PROMPT = list(range(3, 10))  # 7 tokens: 4-row steps at 0 and 4 (8 slots); decode at 7, 8 (8 slots) and 9 (16)
SLOTS = 16  # the KV cache's pinned regions hold the whole sequence, in the engine's programs and the timing's


@pytest.fixture(scope="module")
def cycles_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("step-cycles")


@pytest.fixture(scope="module")
def timing(tiny, cycles_dir):
    return CompiledTiming(tiny, "int8", "tsp-v1", BUCKET, cycles_dir, PREFILL, SLOTS)


@pytest.fixture(scope="module")
def run(tiny):
    """The compiled programs themselves, run step by step on the fast executor by the LPU engine."""
    engine = LpuEngine(tiny, "int8", executor="fast", cache_bucket=BUCKET, prefill_tokens=PREFILL, cache_slots=SLOTS)
    return engine.generate(PROMPT, 4, tiny.tokenizer.stop_ids)


def test_step_times_are_the_runs_cycles_over_the_clock_exactly(run, timing):
    assert timing.prefill_seconds(len(PROMPT)) == run.prefill_cycles / TSP_V1.clock_hz == run.ttft_s
    decode = [timing.decode_seconds(len(PROMPT) + i + 1) for i in range(len(run.decode))]
    assert decode == [step.cycles / TSP_V1.clock_hz for step in run.decode]
    assert [(step.tokens, step.cache_len) for step in run.prefill] == [(4, 8), (3, 8)]  # the last step padded
    assert [step.cache_len for step in run.decode] == [8, 16, 16]  # a step's slots hold its own token too
    assert timing.compiled() == {"1x8": run.decode[0].cycles, "1x16": run.decode[-1].cycles,
                                 "4x8": run.prefill[0].cycles}


def test_the_served_tokens_are_the_compiled_programs(tiny, run, timing):
    engine = ReferenceEngine(tiny, timing, cache_bucket=BUCKET, prefill_tokens=PREFILL)
    events = list(engine.generate(0, PROMPT, SamplingParams(temperature=0.0, max_tokens=4)))
    assert [e.token_id for e in events] == run.token_ids
    assert [e.lpu_s for e in events] == [run.ttft_s] + [s.cycles / TSP_V1.clock_hz for s in run.decode]


def test_cycles_are_read_back_from_disk_without_compiling(tiny, timing, cycles_dir, monkeypatch):
    known = timing.compiled()

    def no_compile(*args, **kwargs):
        raise AssertionError("compiled again")

    monkeypatch.setattr(compiled_timing, "compile", no_compile)
    again = CompiledTiming(tiny, "int8", "tsp-v1", BUCKET, cycles_dir, cache_slots=SLOTS)
    for shape in known:
        rows, cache_len = map(int, shape.split("x"))
        again.step(cache_len, rows)
    assert again.compiled() == known
    fp16 = CompiledTiming(tiny, "fp16", "tsp-v1", BUCKET, cycles_dir)  # another key: nothing to read
    with pytest.raises(AssertionError, match="compiled again"):
        fp16.step(8)


def test_warming_reports_each_step_program_shortest_cache_first(timing):
    seen = []
    timing.warm(5, lambda program, done, total: seen.append((program.tokens, program.cache_len, program.sampling,
                                                             done, total)))
    # 5 tokens: decode steps leave up to 4 cached; prompts up to 5 long run 4-row steps from 0 and 4, the second
    # writing its 4 rows (padding too) into slots 4..7; each shape greedy then sampling, the nucleus ones last
    shapes = [(1, 8), (4, 8)]
    order = [(*shape, mode) for shape in shapes for mode in ("greedy", "sample")] + [(*s, "nucleus") for s in shapes]
    assert seen == [(*shape, i + 1, 6) for i, shape in enumerate(order)]
    assert set(timing.compiled()) >= {f"{r}x{c}" + ("" if m == "greedy" else f" {m}") for r, c, m in order}
    assert timing.source == ("cycles of tiny's int8 4-token prefill and decode steps compiled for one tsp-v1 (a "
                             "program per 8-slot cache bucket) at 900 MHz")


def test_an_empty_prefill_is_refused(timing):
    with pytest.raises(UserError, match="prefill of 0 tokens"):
        timing.prefill_seconds(0)


def test_a_sampled_request_is_timed_by_its_sampling_programs(tiny, timing):
    """Top-p adds a nucleus search to the step that chooses a token: the served seconds include it, for the
    prompt's last step and every decode step, as the engine's own compiled run of the same request does."""
    params = SamplingParams(temperature=0.8, top_p=0.9, seed=1, max_tokens=3)
    engine = LpuEngine(tiny, "int8", executor="fast", cache_bucket=BUCKET, prefill_tokens=PREFILL, cache_slots=SLOTS)
    sampled = engine.generate(PROMPT, 3, tiny.tokenizer.stop_ids, params)
    served = ReferenceEngine(tiny, timing, cache_bucket=BUCKET, prefill_tokens=PREFILL)
    events = list(served.generate(0, PROMPT, params))
    assert [e.token_id for e in events] == sampled.token_ids
    assert [e.lpu_s for e in events] == [sampled.ttft_s] + [s.cycles / TSP_V1.clock_hz for s in sampled.decode]
    assert timing.decode_seconds(len(PROMPT) + 1, "nucleus") > timing.decode_seconds(len(PROMPT) + 1)
    assert "1x8 nucleus" in timing.compiled()
