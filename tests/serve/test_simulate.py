"""`bench --simulate`: LLMPerf's closed loop on a predicted system, placed by the scheduler's timeline."""

import json
from types import SimpleNamespace

import pytest

from openlpu.cli import main
from openlpu.errors import UserError
from openlpu.serve.llmperf import summarize
from openlpu.serve.simulate import simulate_load, slots


def prediction(users=2, ttft=1.0, decode=0.5, slowest_stage=0.1, prompt=16, context=64):
    plan = SimpleNamespace(users_in_flight=users, batch=1, context=context)
    return SimpleNamespace(plan=plan, ttft_s=ttft, decode_s=decode, slowest_stage_s=slowest_stage,
                           prompt_tokens=prompt)


def test_a_crowd_larger_than_the_slots_queues_for_them():
    # 2 slots, 4 clients, each answer a 1 s prefill and 2 decode steps of 0.5 s: 2 s a request
    run = simulate_load(prediction(), input_tokens=16, output_tokens=3, concurrency=4, requests=8)
    assert run.queue_times == [0.0, 0.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0]
    assert [r.ttft_s for r in run.results] == [q + 1.0 for q in run.queue_times]
    assert [r.end_to_end_latency_s for r in run.results] == [q + 2.0 for q in run.queue_times]
    assert run.makespan_s == 8.0  # 8 requests of 2 s on 2 slots, never idle
    summary = summarize(run.results, run.makespan_s, model="m", input_tokens=16, output_tokens=3, concurrency=4)
    assert summary["results_mean_output_throughput_token_per_s"] == 24 / 8.0
    assert summary["results_ttft_s_quantiles_p50"] == 3.0 and summary["results_number_errors"] == 0


def test_no_queue_while_the_slots_outnumber_the_clients():
    run = simulate_load(prediction(users=4), input_tokens=16, output_tokens=3, concurrency=4, requests=12)
    assert run.queue_times == [0.0] * 12 and run.makespan_s == 6.0


def test_the_slowest_stage_bounds_the_requests_in_flight():
    assert slots(prediction(users=8, decode=0.5, slowest_stage=0.2)) == 2
    assert slots(prediction(users=1, decode=0.5, slowest_stage=0.9)) == 1


@pytest.mark.parametrize("kwargs, words", [
    ({"input_tokens": 16, "output_tokens": 60}, "exceed the context of 64"),
    ({"input_tokens": 32, "output_tokens": 4}, "16-token prompts, not 32"),
    ({"input_tokens": 16, "output_tokens": 0}, "--output-tokens 0"),
])
def test_bad_workloads_are_refused_in_one_sentence(kwargs, words):
    with pytest.raises(UserError, match=words):
        simulate_load(prediction(), concurrency=2, requests=4, **kwargs)


@pytest.fixture
def mini_llama(tmp_path):
    """A llama config small enough to compile in seconds, with heads and FFN that split 8 ways."""
    folder = tmp_path / "mini-llama"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "model_type": "llama", "num_hidden_layers": 2, "hidden_size": 512, "num_attention_heads": 8,
        "intermediate_size": 1024, "vocab_size": 2560, "max_position_embeddings": 256}))
    return folder


def test_the_command_prints_llmperfs_summary_in_simulated_seconds(mini_llama, capsys):
    assert main(["bench", "--simulate", str(mini_llama), "--input-tokens", "16", "--output-tokens", "4",
                 "--requests", "6", "--concurrency", "3", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    sim = summary.pop("simulation")
    live_keys = summarize([], 1.0, model="m", input_tokens=16, output_tokens=4, concurrency=3)
    assert summary.keys() == live_keys.keys()  # the same keys as a run against a server, and LLMPerf's
    assert summary["model"] == "mini-llama" and summary["results_num_completed_requests"] == 6
    assert sim["chips"] == 8 and sim["slots"] == 1
    request = sim["ttft_s"] + 3 * sim["decode_s_per_token"]  # one slot: six requests back to back
    assert sim["makespan_s"] == pytest.approx(6 * request, rel=1e-12)
    assert summary["results_mean_output_throughput_token_per_s"] == pytest.approx(24 / (6 * request), rel=1e-12)
    assert sim["queue_time_s"]["max"] == pytest.approx(2 * request, rel=1e-12)  # three clients, one slot


def test_chips_without_simulate_is_refused(capsys):
    assert main(["bench", "--base-url", "http://127.0.0.1:9/v1", "--chips", "8"]) == 2
    assert "--chips 8 sizes a simulated system; use it with --simulate MODEL" in capsys.readouterr().err
