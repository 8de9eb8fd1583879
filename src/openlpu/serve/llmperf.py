"""An LLMPerf-style load test of any OpenAI-compatible endpoint, with LLMPerf's summary keys.

It follows ray-project/llmperf's `token_benchmark_ray.py` and its OpenAI chat client:

- each prompt is "Randomly stream lines from the following text with {O} output tokens. Don't generate
  eos tokens:" followed by shuffled lines of a text (here openlpu's own evaluation text, cut into
  sentences, instead of LLMPerf's sonnets) up to the input token count, sent as a user message after an
  empty system message, streamed, with max_tokens = O;
- `concurrency` requests are in flight at a time until `requests` have been sent;
- ttft_s: time to the first chunk with content; end_to_end_latency_s: time to the end of the stream;
  number_output_tokens: the answer's text re-tokenised by one fixed tokenizer (LLMPerf uses Llama's,
  openlpu SmolLM2's by default), the same for every endpoint;
  inter_token_latency_s: LLMPerf's definition, the sum of the gaps between content chunks *including
  the TTFT* divided by number_output_tokens; request_output_throughput_token_per_s: output tokens over
  end-to-end latency; mean_output_throughput_token_per_s: all successful output tokens over the test's
  wall time;
- each metric over the successful requests: quantiles p25 p50 p75 p90 p95 p99 (linear interpolation),
  mean, min, max, stddev (ddof 1), flattened to `results_<metric>_quantiles_p50` and so on.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import numpy as np

from openlpu.errors import UserError
from openlpu.models.evaluation import eval_text
from openlpu.models.gguf_file import open_gguf
from openlpu.models.registry import resolve_model
from openlpu.models.tokenizer import Tokenizer

RESULTS_VERSION = "2023-08-31"  # LLMPerf's results format
PRESET = {"input_tokens": 550, "output_tokens": 150, "concurrency": 5, "requests": 150}  # LLMPerf leaderboard
SEED = 11111  # LLMPerf's
QUANTILES = {"p25": 0.25, "p50": 0.5, "p75": 0.75, "p90": 0.9, "p95": 0.95, "p99": 0.99}
METRICS = ("inter_token_latency_s", "ttft_s", "end_to_end_latency_s", "request_output_throughput_token_per_s",
           "number_input_tokens", "number_output_tokens")
REQUEST_TIMEOUT_S = 180.0  # LLMPerf's per-request timeout


@dataclass(frozen=True)
class RequestMetrics:
    """One request as LLMPerf records it; error_code is None on success (the HTTP status, or -1)."""

    ttft_s: float
    inter_token_latency_s: float
    end_to_end_latency_s: float
    request_output_throughput_token_per_s: float
    number_input_tokens: int
    number_output_tokens: int
    error_code: int | None = None
    error_msg: str = ""


def counting_tokenizer(model: str) -> Tokenizer:
    """Only the tokenizer of a model (name or .gguf path), without reading its weights."""
    return Tokenizer.from_gguf(open_gguf(resolve_model(model)))


def build_prompt(tokenizer: Tokenizer, rng: random.Random, input_tokens: int, output_tokens: int) -> tuple[str, int]:
    """LLMPerf's prompt: the instruction, then shuffled lines until `input_tokens` (the last line cut)."""
    count = lambda text: len(tokenizer.encode(text))  # noqa: E731
    prompt = (f"Randomly stream lines from the following text with {output_tokens} output tokens. "
              "Don't generate eos tokens:\n\n")
    remaining = input_tokens - count(prompt)
    if remaining < 0:
        raise UserError(f"--input-tokens {input_tokens} is shorter than the prompt's instruction "
                        f"({count(prompt)} tokens); ask for more input tokens")
    lines = [s.strip() + "\n" for s in re.split(r"(?<=[.;?!])\s+", eval_text()) if s.strip()]
    rng.shuffle(lines)
    while remaining > 0:
        for line in lines:
            n = count(line)
            if n > remaining:  # as LLMPerf: cut the line to as many characters as tokens remain
                prompt += line[:remaining]
                remaining = 0
                break
            prompt += line
            remaining -= n
    return prompt, count(prompt)


async def _one_request(client: httpx.AsyncClient, url: str, model: str, prompt: tuple[str, int], output_tokens: int,
                       tokenizer: Tokenizer) -> RequestMetrics:
    text_prompt, prompt_tokens = prompt
    body = {"model": model, "stream": True, "max_tokens": output_tokens,
            "messages": [{"role": "system", "content": ""}, {"role": "user", "content": text_prompt}]}
    gaps: list[float] = []
    text, code, message = "", None, ""
    start = last = time.monotonic()
    try:
        async with client.stream("POST", url, json=body) as response:
            if response.status_code != 200:
                code, message = response.status_code, (await response.aread()).decode(errors="replace")[:500]
            else:
                async for line in response.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[len("data: "):])
                    if "error" in chunk:
                        code, message = chunk["error"].get("code") or -1, chunk["error"].get("message", "")
                        break
                    content = chunk["choices"][0]["delta"].get("content") if chunk["choices"] else None
                    if content:
                        now = time.monotonic()
                        gaps.append(now - last)
                        last = now
                        text += content
    except (httpx.HTTPError, json.JSONDecodeError, KeyError, IndexError) as err:
        code, message = -1, f"{type(err).__name__}: {err}"
    end_to_end = time.monotonic() - start
    if code is not None:
        return RequestMetrics(0.0, 0.0, end_to_end, 0.0, prompt_tokens, 0, code if isinstance(code, int) else -1,
                              message)
    n = len(tokenizer.encode(text))
    return RequestMetrics(
        ttft_s=gaps[0] if gaps else 0.0,
        inter_token_latency_s=sum(gaps) / n if n else 0.0,
        end_to_end_latency_s=end_to_end,
        request_output_throughput_token_per_s=n / end_to_end if end_to_end > 0 else 0.0,
        number_input_tokens=prompt_tokens,
        number_output_tokens=n,
    )


async def run_load(base_url: str, model: str, *, input_tokens: int, output_tokens: int, concurrency: int,
                   requests: int, tokenizer: Tokenizer, api_key: str | None = None,
                   on_done: Callable[[RequestMetrics], None] = lambda m: None) -> tuple[list[RequestMetrics], float]:
    """Send `requests` prompts, `concurrency` at a time; the metrics of each and the wall time of all."""
    for name, value in (("--input-tokens", input_tokens), ("--output-tokens", output_tokens),
                        ("--concurrency", concurrency), ("--requests", requests)):
        if value < 1:
            raise UserError(f"{name} {value} must be at least 1")
    rng = random.Random(SEED)
    prompts = [build_prompt(tokenizer, rng, input_tokens, output_tokens) for _ in range(requests)]
    url = base_url.rstrip("/") + "/chat/completions"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    # Nagle off, as LLMPerf's `requests` (urllib3) has it: otherwise a request's body can wait ~40 ms for an ACK.
    transport = httpx.AsyncHTTPTransport(limits=limits, socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    results: list[RequestMetrics] = []
    async with httpx.AsyncClient(headers=headers, transport=transport, timeout=REQUEST_TIMEOUT_S) as client:
        queue = list(reversed(prompts))

        async def worker() -> None:
            while queue:
                metrics = await _one_request(client, url, model, queue.pop(), output_tokens, tokenizer)
                results.append(metrics)
                on_done(metrics)

        start = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(min(concurrency, requests))))
        wall = time.monotonic() - start
    return results, wall


def _stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {**{f"quantiles_{k}": None for k in QUANTILES}, "mean": None, "min": None, "max": None, "stddev": None}
    a = np.asarray(values, dtype=np.float64)
    out = {f"quantiles_{k}": float(np.quantile(a, q)) for k, q in QUANTILES.items()}
    std = float(np.std(a, ddof=1)) if a.size > 1 else None
    return {**out, "mean": float(a.mean()), "min": float(a.min()), "max": float(a.max()), "stddev": std}


def summarize(results: list[RequestMetrics], wall_s: float, *, model: str, input_tokens: int, output_tokens: int,
              concurrency: int) -> dict:
    """LLMPerf's summary JSON (flattened keys), computed from the requests and the test's wall time."""
    ok = [r for r in results if r.error_code is None]
    errors = Counter(r.error_code for r in results if r.error_code is not None)
    name = re.sub(r"-{2,}", "-", re.sub(r"[^\w\d-]+", "-", f"{model}_{input_tokens}_{output_tokens}")) + "_summary"
    summary = {"version": RESULTS_VERSION, "name": name, "model": model, "mean_input_tokens": input_tokens,
               "stddev_input_tokens": 0, "mean_output_tokens": output_tokens, "stddev_output_tokens": 0,
               "num_concurrent_requests": concurrency}
    for metric in METRICS:
        for key, value in _stats([getattr(r, metric) for r in ok]).items():
            summary[f"results_{metric}_{key}"] = value
    output = sum(r.number_output_tokens for r in ok)
    summary |= {
        "results_num_requests_started": len(results),
        "results_error_rate": sum(errors.values()) / len(results) if results else 0.0,
        "results_number_errors": sum(errors.values()),
        "results_error_code_frequency": str(dict(errors)),
        "results_mean_output_throughput_token_per_s": output / wall_s if wall_s > 0 else math.nan,
        "results_num_completed_requests": len(ok),
        "results_num_completed_requests_per_min": len(ok) / wall_s * 60 if wall_s > 0 else math.nan,
        "timestamp": int(time.time()),
    }
    return summary
