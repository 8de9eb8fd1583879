"""The LLMPerf-style load test: its statistics, its prompts, and a run against a live server."""

import asyncio
import random

import numpy as np
import pytest

from openlpu.serve.llmperf import RequestMetrics, build_prompt, run_load, summarize

# Every key of an LLMPerf *_summary.json (ray-project/llmperf token_benchmark_ray.py, results version 2023-08-31).
METRICS = ("inter_token_latency_s", "ttft_s", "end_to_end_latency_s", "request_output_throughput_token_per_s",
           "number_input_tokens", "number_output_tokens")
LLMPERF_KEYS = {"version", "name", "model", "mean_input_tokens", "stddev_input_tokens", "mean_output_tokens",
                "stddev_output_tokens", "num_concurrent_requests", "timestamp", "results_num_requests_started",
                "results_error_rate", "results_number_errors", "results_error_code_frequency",
                "results_mean_output_throughput_token_per_s", "results_num_completed_requests",
                "results_num_completed_requests_per_min"} | {
    f"results_{m}_{s}" for m in METRICS
    for s in ("quantiles_p25", "quantiles_p50", "quantiles_p75", "quantiles_p90", "quantiles_p95", "quantiles_p99",
              "mean", "min", "max", "stddev")}


def metrics(ttft, tokens, e2e, error=None):
    return RequestMetrics(ttft, e2e / tokens, e2e, tokens / e2e, 100, tokens, error)


def test_the_summary_has_llmperfs_keys_and_statistics():
    results = [metrics(t, 10, 2.0 * t) for t in (1.0, 2.0, 3.0, 4.0)] + [metrics(0, 1, 0.5, error=429)]
    s = summarize(results, 8.0, model="org/m 1", input_tokens=100, output_tokens=10, concurrency=2)
    assert set(s) == LLMPERF_KEYS
    assert s["name"] == "org-m-1_100_10_summary"
    assert s["results_ttft_s_quantiles_p50"] == 2.5
    assert s["results_ttft_s_quantiles_p90"] == pytest.approx(3.7)  # linear: 3 + 0.7 * (4 - 3)
    assert s["results_ttft_s_quantiles_p99"] == pytest.approx(3.97)
    assert s["results_ttft_s_stddev"] == pytest.approx(np.std([1, 2, 3, 4], ddof=1))
    assert s["results_end_to_end_latency_s_max"] == 8.0
    assert (s["results_num_requests_started"], s["results_num_completed_requests"]) == (5, 4)
    assert (s["results_number_errors"], s["results_error_rate"]) == (1, 0.2)
    assert s["results_error_code_frequency"] == "{429: 1}"
    assert s["results_mean_output_throughput_token_per_s"] == 40 / 8.0
    assert s["results_num_completed_requests_per_min"] == 4 / 8.0 * 60


def test_prompts_follow_llmperfs_recipe(tiny):
    tok = tiny.tokenizer
    prompts = [build_prompt(tok, random.Random(11111), 150, 20) for _ in range(2)]
    text, n = prompts[0]
    assert prompts[0] == prompts[1]  # seeded like LLMPerf
    assert text.startswith("Randomly stream lines from the following text with 20 output tokens. "
                           "Don't generate eos tokens:\n\n")
    assert n == len(tok.encode(text)) and 140 <= n <= 150  # the last line is cut by characters, as LLMPerf does


def test_a_run_against_the_server_measures_every_request(url, engine, tiny):
    results, wall = asyncio.run(run_load(url + "/v1", engine.model_id, input_tokens=100, output_tokens=8,
                                         concurrency=3, requests=6, tokenizer=tiny.tokenizer))
    assert len(results) == 6 and all(r.error_code is None for r in results)
    for r in results:
        assert 0 < r.ttft_s <= r.end_to_end_latency_s <= wall
        assert r.inter_token_latency_s * r.number_output_tokens <= r.end_to_end_latency_s  # gaps sum to the last chunk
        assert r.request_output_throughput_token_per_s == r.number_output_tokens / r.end_to_end_latency_s


def test_failed_requests_are_counted_with_their_status(url, tiny):
    results, wall = asyncio.run(run_load(url + "/v1", "no-such-model", input_tokens=100, output_tokens=8,
                                         concurrency=2, requests=3, tokenizer=tiny.tokenizer))
    s = summarize(results, wall, model="no-such-model", input_tokens=100, output_tokens=8, concurrency=2)
    assert s["results_number_errors"] == 3 and s["results_error_code_frequency"] == "{404: 3}"
    assert s["results_ttft_s_quantiles_p50"] is None
