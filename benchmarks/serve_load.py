"""64 concurrent streaming clients against `openlpu serve`, and the server's own cost per token.

The server runs as its own process (so its CPU time can be read from /proc) with the tiny model by
default. Every client streams greedy completions; the script counts errors, and reads the usage of each
answer (tokens, simulated LPU queue and total times). The scheduler counts the CPU seconds its thread
spends inside the engine computing tokens (`engine_cpu_s` in /health), so the server's overhead is

    (server CPU seconds for the load - engine CPU seconds for the load) / tokens

that is: parsing, tokenising the chat, scheduling, SSE encoding and HTTP, beyond the model's compute.
BLAS runs single-threaded. The step programs the load needs are compiled first, into a temporary cache
that the server reads, so no compiling is counted.

    .venv/bin/python benchmarks/serve_load.py [--clients 64] [--requests-per-client 2] [--max-tokens 32]
                                              [--chips 8] [--model tiny|smollm2-135m|PATH.gguf]
"""

from __future__ import annotations

import os

os.environ["OPENBLAS_NUM_THREADS"] = "1"  # before numpy loads: CPU time = compute time, in both processes

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from openlpu.models.tiny_gguf import write_tiny_gguf  # noqa: E402
from openlpu.serve.app import build_engine  # noqa: E402

TOPICS = ("the harbour", "the market", "the fog", "the river", "the church tower", "the fishing boats",
          "the seasons", "the town")


def prompt(i: int) -> list[dict]:
    return [{"role": "user", "content": f"Tell me about {TOPICS[i % len(TOPICS)]}, part {i}."}]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def start_server(model: str, chips: int, cache_home: Path) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "openlpu.cli", "serve", "--model", model, "--port", "0", "--chips", str(chips),
           "--pace", "host", "--warm-tokens", "0", "--json"]
    env = os.environ | {"XDG_CACHE_HOME": str(cache_home)}  # the step cycles compiled beforehand
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    lines = []
    while not lines or lines[-1] != "}\n":
        lines.append(proc.stdout.readline())
        if not lines[-1]:
            raise RuntimeError(f"openlpu serve exited before printing its address: {''.join(lines)!r}")
    url = json.loads("".join(lines))["url"]
    for _ in range(200):
        try:
            httpx.get(url + "/health")
            return proc, url
        except httpx.ConnectError:
            time.sleep(0.05)
    raise RuntimeError("the server did not come up")


async def stream_one(client: httpx.AsyncClient, url: str, model: str, i: int, max_tokens: int) -> dict:
    body = {"model": model, "messages": prompt(i), "stream": True, "temperature": 0, "max_tokens": max_tokens}
    start, ttft, usage, error = time.monotonic(), None, None, None
    try:
        async with client.stream("POST", url + "/v1/chat/completions", json=body) as r:
            if r.status_code != 200:
                return {"error": f"HTTP {r.status_code}"}
            async for line in r.aiter_lines():
                if not line.startswith("data: {"):
                    continue
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    error = chunk["error"]["message"]
                elif chunk["choices"] and chunk["choices"][0]["delta"].get("content") and ttft is None:
                    ttft = time.monotonic() - start
                elif chunk["choices"] and chunk["choices"][0]["finish_reason"]:
                    usage = chunk["x_groq"]["usage"]
    except httpx.HTTPError as err:
        error = f"{type(err).__name__}: {err}"
    if error or usage is None:
        return {"error": error or "the stream ended without usage"}
    return {"ttft": ttft, "e2e": time.monotonic() - start, "usage": usage}


async def load(url: str, model: str, clients: int, per_client: int, max_tokens: int) -> tuple[list[dict], float]:
    tcp = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=clients),
                                   socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    async with httpx.AsyncClient(transport=tcp, timeout=600) as client:

        async def one_client(c: int) -> list[dict]:
            return [await stream_one(client, url, model, c * per_client + k, max_tokens) for k in range(per_client)]

        start = time.monotonic()
        done = await asyncio.gather(*(one_client(c) for c in range(clients)))
        return [r for rs in done for r in rs], time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--requests-per-client", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--chips", type=int, default=8)
    parser.add_argument("--model", default="tiny", help="tiny (written to a temp dir), a model name or a .gguf")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = str(write_tiny_gguf(Path(tmp) / "tiny.gguf")) if args.model == "tiny" else args.model
        n = args.clients * args.requests_per_client
        engine = build_engine(model, cache_dir=Path(tmp) / "openlpu" / "step-cycles")  # where the server looks
        engine.timing.warm(max(len(engine.prompt_ids(prompt(i))) for i in range(n)) + args.max_tokens)
        proc, url = start_server(model, args.chips, Path(tmp))
        try:
            served = httpx.get(url + "/v1/models").json()["data"][0]["id"]
            asyncio.run(load(url, served, 4, 1, args.max_tokens))  # warm-up
            cpu0, engine0 = cpu_seconds(proc.pid), httpx.get(url + "/health").json()["engine_cpu_s"]
            results, wall = asyncio.run(load(url, served, args.clients, args.requests_per_client, args.max_tokens))
            server_cpu = cpu_seconds(proc.pid) - cpu0
            engine_cpu = httpx.get(url + "/health").json()["engine_cpu_s"] - engine0
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        ok = [r for r in results if "error" not in r]
        errors = [r["error"] for r in results if "error" in r]
        tokens = sum(r["usage"]["completion_tokens"] for r in ok)

    ttft = np.array([r["ttft"] for r in ok if r["ttft"] is not None])
    queue = np.array([r["usage"]["queue_time"] for r in ok])
    lpu_total = np.array([r["usage"]["queue_time"] + r["usage"]["total_time"] for r in ok])
    print(f"model            {served}, server with --chips {args.chips} --pace host, BLAS single-threaded")
    print(f"load             {args.clients} concurrent streaming clients, {args.requests_per_client} request(s) each, "
          f"greedy, max {args.max_tokens} tokens")
    print(f"errors           {len(errors)} of {len(results)} requests" + (f": {errors[:3]}" if errors else ""))
    print(f"tokens           {tokens} streamed in {wall:.2f} s: {tokens / wall:.0f} tokens/s through the server")
    print(f"host TTFT        p50 {np.median(ttft) * 1e3:.1f} ms, p99 {np.quantile(ttft, 0.99) * 1e3:.1f} ms "
          "(wall clock, at the client)")
    print(f"LPU (simulated)  queue p50 {np.median(queue) * 1e6:.1f} us, p99 {np.quantile(queue, 0.99) * 1e6:.1f} us; "
          f"queue + total p99 {np.quantile(lpu_total, 0.99) * 1e6:.1f} us (compiled timing)")
    print(f"server CPU       {server_cpu:.2f} s = {server_cpu / tokens * 1e3:.3f} ms per token")
    print(f"engine compute   {engine_cpu:.2f} s CPU = {engine_cpu / tokens * 1e3:.3f} ms per token (prompt steps "
          "included)")
    print(f"server overhead  {(server_cpu - engine_cpu) / tokens * 1e3:.3f} ms CPU per token beyond model compute")
    if errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
