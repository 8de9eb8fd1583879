"""`openlpu bench`: measure any OpenAI-compatible endpoint the way LLMPerf does, or a predicted LPU system."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

import httpx
import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from openlpu.commands.output import add_json_flag, emit
from openlpu.errors import UserError
from openlpu.models.registry import DEFAULT_MODEL
from openlpu.models.zoo import load_decoder_config
from openlpu.perf.predict import predict
from openlpu.serve.benchplots import plot_metrics
from openlpu.serve.llmperf import PRESET, QUANTILES, counting_tokenizer, run_load, summarize
from openlpu.serve.simulate import simulate_load, slots

EPILOG = f"""examples:
  openlpu serve &                                          then, in another shell:
  openlpu bench --base-url http://127.0.0.1:8000/openai/v1 LLMPerf's preset: {PRESET['input_tokens']} in, \
{PRESET['output_tokens']} out, {PRESET['concurrency']} at a time, {PRESET['requests']} requests
  openlpu bench --base-url http://127.0.0.1:8000/v1 --concurrency 64 --requests 128 --output-tokens 32
  openlpu bench --base-url https://api.groq.com/openai/v1 --model llama-3.1-8b-instant --json > groq.json
  openlpu bench --base-url http://127.0.0.1:8000/v1 --plots plots/
  openlpu bench --simulate llama2-70b-4096 --chips 576 --concurrency 64 --requests 640

--json prints LLMPerf's summary (results_ttft_s_quantiles_p50, results_mean_output_throughput_token_per_s, ...),
so it diffs against LLMPerf's own *_summary.json. The API key comes from --api-key or $OPENAI_API_KEY.
Output tokens are counted by re-tokenising each answer with one fixed tokenizer (--tokenizer), as LLMPerf does.
--simulate runs the same workload on the simulated system of a zoo model (no weights): TTFT and decode time
from `openlpu predict`, requests placed on the system's slots by the server's scheduler, all in simulated
seconds; the JSON adds `simulation` (slots, predicted times, queue-time quantiles). See docs/serve.md."""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bench",
        help="load-test an OpenAI-compatible endpoint like LLMPerf (TTFT, inter-token latency, tokens/s)",
        description="Send streamed chat completions to an endpoint, a few at a time, and report LLMPerf's metrics: "
                    "time to first token, inter-token latency, end-to-end latency, output tokens/s per request "
                    "and overall, and errors, with p50/p90/p99.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--base-url", help="the API root, e.g. http://127.0.0.1:8000/openai/v1")
    target.add_argument("--simulate", metavar="MODEL",
                        help="a zoo model (llama2-70b-4096, ...) or config.json: its predicted LPU system, simulated")
    p.add_argument("--chips", type=int,
                   help="with --simulate: chips, a multiple of 8 (default: the smallest system that fits)")
    p.add_argument("--model", help="model id to request (default: the first of the endpoint's GET /models)")
    p.add_argument("--concurrency", type=int, default=PRESET["concurrency"],
                   help="requests in flight at once (default %(default)s)")
    p.add_argument("--input-tokens", type=int, default=PRESET["input_tokens"],
                   help="prompt tokens per request (default %(default)s)")
    p.add_argument("--output-tokens", type=int, default=PRESET["output_tokens"],
                   help="max_tokens per request (default %(default)s)")
    p.add_argument("--requests", type=int, default=PRESET["requests"], help="requests in all (default %(default)s)")
    p.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY"), help="bearer key (default $OPENAI_API_KEY)")
    p.add_argument("--tokenizer", default=DEFAULT_MODEL,
                   help="model name or .gguf whose tokenizer counts prompt and answer tokens (default %(default)s)")
    p.add_argument("--plots", type=Path, metavar="DIR", help="write a histogram of each metric to DIR")
    add_json_flag(p)
    p.set_defaults(run=run)


def first_model(base_url: str, api_key: str | None) -> str:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.get(base_url.rstrip("/") + "/models", headers=headers, timeout=30)
        response.raise_for_status()
        return response.json()["data"][0]["id"]
    except (httpx.HTTPError, ValueError, KeyError, IndexError) as err:
        raise UserError(f"could not list the models of {base_url} ({type(err).__name__}: {err}); check --base-url "
                        "and --api-key, or name the model with --model") from None


def run(args) -> int:
    if args.simulate:
        return run_simulated(args)
    if args.chips is not None:
        raise UserError(f"--chips {args.chips} sizes a simulated system; use it with --simulate MODEL")
    model = args.model or first_model(args.base_url, args.api_key)
    tokenizer = counting_tokenizer(args.tokenizer)
    shape = {"input_tokens": args.input_tokens, "output_tokens": args.output_tokens, "concurrency": args.concurrency}
    with Progress(console=Console(stderr=True), transient=True, disable=args.json) as progress:
        task = progress.add_task(f"{model}: requests", total=args.requests)
        results, wall = asyncio.run(run_load(args.base_url, model, requests=args.requests, tokenizer=tokenizer,
                                             api_key=args.api_key, on_done=lambda m: progress.advance(task),
                                             **shape))
    summary = summarize(results, wall, model=model, **shape)
    if args.plots:
        plot_metrics(results, args.plots, f"{model}, {args.input_tokens} in / {args.output_tokens} out, "
                                          f"concurrency {args.concurrency}")
    emit(args, summary, render)
    return 0


def run_simulated(args) -> int:
    config = load_decoder_config(args.simulate)
    shape = {"input_tokens": args.input_tokens, "output_tokens": args.output_tokens, "concurrency": args.concurrency}
    with Console(stderr=True, quiet=args.json).status(f"{config.name}: compiling its layer shards (openlpu predict)"):
        prediction = predict(config, args.chips, prompt_tokens=args.input_tokens)
    run = simulate_load(prediction, requests=args.requests, **shape)
    summary = summarize(run.results, run.makespan_s, model=config.name, **shape)
    queue = np.asarray(run.queue_times)
    summary["simulation"] = {
        "chips": prediction.plan.chips, "slots": slots(prediction), "ttft_s": prediction.ttft_s,
        "decode_s_per_token": prediction.decode_s, "makespan_s": run.makespan_s,
        "queue_time_s": {k: float(np.quantile(queue, q)) for k, q in QUANTILES.items()} | {"max": float(queue.max())},
        "timing": "openlpu predict: compiled layer shards, scheduled collectives and hand-offs (docs/predict.md)",
        "clock": "simulated seconds: ttft, latencies and the overall tokens/s are the system's, not this host's"}
    if args.plots:
        plot_metrics(run.results, args.plots, f"{config.name} on {prediction.plan.chips} simulated chips, "
                                              f"{args.input_tokens} in / {args.output_tokens} out, "
                                              f"concurrency {args.concurrency}")
    emit(args, summary, render)
    return 0


def render(console: Console, s: dict) -> None:
    table = Table(title=f"{s['model']}: {s['mean_input_tokens']} in, {s['mean_output_tokens']} out, "
                        f"concurrency {s['num_concurrent_requests']}", title_justify="left")
    for column in ("metric", "p50", "p90", "p99", "mean"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for metric, label in (("ttft_s", "time to first token (s)"),
                          ("inter_token_latency_s", "inter-token latency (s)"),
                          ("end_to_end_latency_s", "end-to-end latency (s)"),
                          ("request_output_throughput_token_per_s", "output tokens/s per request"),
                          ("number_output_tokens", "output tokens per request")):
        keys = (f"results_{metric}_quantiles_p50", f"results_{metric}_quantiles_p90",
                f"results_{metric}_quantiles_p99", f"results_{metric}_mean")
        table.add_row(label, *("-" if s[k] is None else f"{s[k]:.4g}" for k in keys))
    console.print(table)
    sim = s.get("simulation")
    if sim:
        q = sim["queue_time_s"]
        console.print(f"simulated: {sim['chips']} chips running {sim['slots']} at once; predicted TTFT "
                      f"{sim['ttft_s'] * 1e3:.2f} ms, {sim['decode_s_per_token'] * 1e3:.3f} ms per token; "
                      f"queue time p50 {q['p50']:.4g} s, p90 {q['p90']:.4g} s, p99 {q['p99']:.4g} s")
    console.print(f"overall output tokens/s {s['results_mean_output_throughput_token_per_s']:.1f}; "
                  f"completed {s['results_num_completed_requests']} of {s['results_num_requests_started']}; "
                  f"errors {s['results_number_errors']} {s['results_error_code_frequency']}")
