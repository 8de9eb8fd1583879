"""Requests in flight on the pipeline (runtime/pipeline_flight.py): chip k runs one request's step while chip
k + 1 runs another's. The timeline follows from the stages' and hand-offs' cycles, and each request's tokens
are the ones it gets alone."""

import json

import pytest

from openlpu.cli import main
from openlpu.commands.demo import QUESTION
from openlpu.errors import UserError
from openlpu.runtime.lpu_engine import GREEDY, LpuEngine
from openlpu.runtime.pipeline_flight import generate_in_flight
from openlpu.runtime.sampling import SamplingParams

CLOCK = 900e6


def alone(engine, prompt, tokens, sampling=GREEDY):
    """The spans a request yields by itself, in order, and its Generation."""
    run, spans = engine.generation(prompt, tokens, sampling=sampling), []
    while True:
        try:
            spans.append(next(run))
        except StopIteration as done:
            return spans, done.value


@pytest.fixture(scope="module")
def two_stages(tiny):
    return LpuEngine(tiny, "fp16", executor="fast", cache_bucket=32, prefill_tokens=8, chips=2)


def test_two_requests_on_two_stages_keep_to_the_timeline_worked_by_hand(two_stages):
    """One-token prompts: every step is the decode step, so every step's stage 0 takes c0 cycles, its hand-off L
    and its stage 1 c1. Stage 1 (the second layer and the head) is the slower (c1 > c0 + L): from request 0's
    first step on it never idles, and request 0's token i ends at c0 + L + (2i + 1) c1, request 1's at
    c0 + L + (2i + 2) c1."""
    spans, gen0 = alone(two_stages, [5], 3)
    (_, c0), (_, link), (_, c1) = spans[:3]
    assert spans == [("chip 0", c0), ("link 0->1", link), ("chip 1", c1)] * 3
    assert c1 > c0 + link and link > 209  # the case worked out below; a hand-off is at least a link's latency
    _, gen1 = alone(two_stages, [9], 3)

    flight = generate_in_flight(two_stages, [[5], [9]], 3)
    first = c0 + link
    assert flight.step_ends(0) == [first + c1, first + 3 * c1, first + 5 * c1]
    assert flight.step_ends(1) == [first + 2 * c1, first + 4 * c1, first + 6 * c1]
    starts = {name: [(b.request, b.start) for b in flight.busy if b.resource == name]
              for name in ("chip 0", "link 0->1", "chip 1")}
    # chip 0 takes request 1's first step while request 0's goes on; then each step as its last token comes
    assert starts["chip 0"] == [(0, 0), (1, c0), (0, first + c1), (1, first + 2 * c1), (0, first + 3 * c1),
                                (1, first + 4 * c1)]
    assert starts["link 0->1"] == [(0, c0), (1, 2 * c0), (0, 2 * c0 + link + c1), (1, 2 * c0 + link + 2 * c1),
                                   (0, 2 * c0 + link + 3 * c1), (1, 2 * c0 + link + 4 * c1)]
    assert starts["chip 1"] == [(r % 2, first + r * c1) for r in range(6)]
    assert flight.makespan == first + 6 * c1
    assert flight.ttft_s(0) == (first + c1) / CLOCK and flight.ttft_s(1) == (first + 2 * c1) / CLOCK
    assert flight.decode_tokens_per_s(0) == flight.decode_tokens_per_s(1) == 2 * CLOCK / (4 * c1)
    assert flight.system_tokens_per_s == 6 * CLOCK / (first + 6 * c1)
    assert flight.one_at_a_time_tokens_per_s == 6 * CLOCK / (6 * (first + c1))
    assert flight.utilisation() == {"chip 0": 6 * c0 / (first + 6 * c1), "link 0->1": 6 * link / (first + 6 * c1),
                                    "chip 1": 6 * c1 / (first + 6 * c1)}
    assert [g.token_ids for g in flight.generations] == [gen0.token_ids, gen1.token_ids]


def test_requests_of_every_length_get_their_own_tokens_on_a_timeline_without_overlaps(tiny, two_stages):
    tok = tiny.tokenizer
    prompts = [tok.encode(text) for text in ("Once upon a time", "Hi", "Why is the sky blue?")]
    flight = generate_in_flight(two_stages, prompts, 4)
    reference = LpuEngine(tiny, "fp16", executor="reference", cache_bucket=32, prefill_tokens=8)
    for prompt, gen in zip(prompts, flight.generations, strict=True):
        assert gen.token_ids == reference.generate(prompt, 4).token_ids  # the compiled programs' bits
    assert [len(g.prefill) for g in flight.generations] == [2, 1, 2]  # 11, 4 and 9 tokens in steps of 8
    for name in ("chip 0", "link 0->1", "chip 1"):
        spans = sorted((b.start, b.end) for b in flight.busy if b.resource == name)
        assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:], strict=False))
    for r in range(3):  # a request's spans follow one another: a step needs its stage before, or its last token
        own = [b for b in flight.busy if b.request == r]
        assert all(a.end <= b.start for a, b in zip(own, own[1:], strict=False))
    assert flight.system_tokens_per_s > 1.4 * flight.one_at_a_time_tokens_per_s


def test_one_request_in_flight_has_generate_s_timing(tiny, two_stages):
    prompt = tiny.tokenizer.encode("Once upon a time")  # 11 tokens: two prompt steps
    gen = two_stages.generate(prompt, 4)
    flight = generate_in_flight(two_stages, [prompt], 4)
    assert flight.ttft_s(0) == gen.ttft_s and flight.decode_tokens_per_s(0) == pytest.approx(gen.tokens_per_s)
    assert flight.system_tokens_per_s == pytest.approx(flight.one_at_a_time_tokens_per_s)


def test_the_reference_executor_interleaves_sampled_requests_and_keeps_each_one_s_draws(tiny):
    engine = LpuEngine(tiny, "int8", executor="reference", cache_bucket=32, prefill_tokens=8, chips=2)
    sampling = SamplingParams(temperature=1.2, seed=3)
    prompts = [tiny.tokenizer.encode(text) for text in ("Hello there", "Tell me a story", "Hi")]
    calls = []
    flight = generate_in_flight(engine, prompts, 5, sampling=sampling, progress=lambda *a: calls.append(a))
    assert [g.token_ids for g in flight.generations] == [alone(engine, p, 5, sampling)[1].token_ids for p in prompts]
    # progress adds up the requests: the prompts' tokens, then every request's new tokens
    assert ("prompt", sum(map(len, prompts)), sum(map(len, prompts))) in calls
    assert calls[-1] == ("decode", flight.completion_tokens, 15)
    # no cycles: every span is ready at once, and the requests take turns span by span
    assert [b.request for b in flight.busy[:6]] == [0, 1, 2, 0, 1, 2]
    assert not flight.lpu and flight.system_tokens_per_s == 0 and flight.ttft_s(2) == 0


def test_bad_requests_are_one_sentence_before_any_runs(tiny):
    engine = LpuEngine(tiny, "fp16", executor="reference", chips=2)
    with pytest.raises(UserError, match="no prompts: give at least one request"):
        generate_in_flight(engine, [], 3)
    calls = []
    with pytest.raises(UserError, match=rf"token ids must lie in \[0, {tiny.config.vocab}\); got \[9999\]"):
        generate_in_flight(engine, [[1, 2], [9999]], 3, progress=lambda *a: calls.append(a))
    assert calls == []


def test_generate_runs_repeated_prompts_in_flight_with_their_figures_and_trace(cli, tiny, tmp_path):
    argv = ["generate", "--model", str(tiny.path), "--numerics", "fp16", "--chips", "2", "--max-tokens", "3",
            "--cache-bucket", "64", "--prefill-tokens", "16", "--json"]
    trace = tmp_path / "flight.json"
    d = json.loads(cli(*argv, "--prompt", "Hi", "--requests", "2", "--trace", str(trace)))
    single = json.loads(cli(*argv, "--prompt", "Hi", "--executor", "reference"))
    assert [r["token_ids"] for r in d["requests"]] == [single["token_ids"]] * 2
    assert d["chips"] == 2 and d["completion_tokens"] == sum(r["completion_tokens"] for r in d["requests"])
    assert d["tokens_per_s"] == pytest.approx(d["completion_tokens"] / d["makespan_s"])
    assert d["tokens_per_s"] > d["one_at_a_time_tokens_per_s"]
    assert set(d["utilisation"]) == {"chip 0", "link 0->1", "chip 1"}
    assert all(r["ttft_s"] >= r["alone"]["ttft_s"] > 0 for r in d["requests"])
    events = json.loads(trace.read_text())["traceEvents"]
    names = {e["tid"]: e["args"]["name"] for e in events if e.get("name") == "thread_name"}
    spans = [e for e in events if e["ph"] == "X"]
    assert sorted(names.values()) == ["chip 0", "chip 1", "link 0->1"]
    assert {e["name"] for e in spans} == {"request 0", "request 1"}
    assert max(e["ts"] + e["dur"] for e in spans) == pytest.approx(d["makespan_s"] * 1e6)


def test_too_few_requests_for_the_prompts_is_one_sentence(tiny, capsys):
    argv = ["generate", "--model", str(tiny.path), "--prompt", "a", "--prompt", "b", "--requests", "1"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--requests 1 is fewer than the prompts given (2); ask for at least 2" in err and err.count("\n") == 1


def test_generate_help_teaches_requests_in_flight(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--requests N" in out and "repeat for several requests in flight" in out
    assert "chip k runs one request's step while chip k+1 runs another's" in out


def test_demo_asks_its_question_of_as_many_requests_as_asked(cli, tiny):
    argv = ["demo", "--model", str(tiny.path), "--executor", "reference", "--max-tokens", "2", "--json"]
    d = json.loads(cli(*argv, "--requests", "2"))
    question = tiny.tokenizer.encode_chat([{"role": "user", "content": QUESTION}])
    assert [r["prompt_tokens"] for r in d["requests"]] == [len(question)] * 2
    assert d["requests"][0]["token_ids"] == d["requests"][1]["token_ids"] == json.loads(cli(*argv))["token_ids"]
