"""`openlpu serve`: a Groq/OpenAI-compatible API and a chat page, backed by the model on simulated LPUs."""

from __future__ import annotations

import argparse
import sys
import threading

from openlpu.commands.output import add_json_flag, emit, kv_table
from openlpu.errors import UserError
from openlpu.models.registry import DEFAULT_MODEL
from openlpu.runtime.compiled_timing import CompiledTiming, StepProgram
from openlpu.serve.app import API_PREFIXES, Service, build_engine, create_app
from openlpu.serve.ratelimit import RateLimiter
from openlpu.serve.scheduler import PACES, Scheduler
from openlpu.serve.server import bind, serve_forever

WARM_TOKENS = 1024  # the playground's chats and LLMPerf's 550 + 150 tokens

EPILOG = """examples:
  openlpu serve                                   SmolLM2-135M on one simulated chip, http://127.0.0.1:8000
  openlpu serve --chips 4 --pace host --port 9000
  openlpu serve --api-key secret --requests-per-minute 30

then, from Python (pip install openai):
  from openai import OpenAI
  client = OpenAI(base_url="http://127.0.0.1:8000/openai/v1", api_key="unused")
  client.chat.completions.create(model="smollm2-135m-8192", messages=[{"role": "user", "content": "Hi"}])
or open http://127.0.0.1:8000/ for the chat page, or measure it: openlpu bench --base-url http://127.0.0.1:8000/v1

Tokens are the int8 LPU program's (its step graph evaluated in numpy, equal bit for bit to the compiled
program); the LPU times in `usage` and `x_groq` are the compiled step programs' cycles at the chip's clock,
one program per 64 cache slots, compiled in the background from the start (--warm-tokens) or when a
request first needs one, and kept in ~/.cache/openlpu; the host's own times are in `x_openlpu.host_usage`.
See docs/serve.md."""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve the model through a Groq/OpenAI-compatible API and a chat page",
        description="Serve a model on simulated LPUs: POST /chat/completions (streamed or not), GET /models, "
                    f"GET /models/ID under {' and '.join(API_PREFIXES)}, GET /health, and a chat page at /.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default %(default)s)")
    p.add_argument("--model", default=DEFAULT_MODEL, help="model name or .gguf path (default %(default)s)")
    p.add_argument("--chips", type=int, default=1,
                   help="simulated chips, one model replica each: requests run this many at once (default 1)")
    p.add_argument("--pace", choices=PACES, default="lpu",
                   help="lpu: stream no faster than the simulated LPU; host: as fast as this machine computes "
                        "(default %(default)s)")
    p.add_argument("--api-key", help="require 'Authorization: Bearer KEY' on the API (default: no key)")
    p.add_argument("--requests-per-minute", type=int, default=10_000, help="rate limit (default %(default)s)")
    p.add_argument("--tokens-per-minute", type=int, default=10_000_000, help="rate limit (default %(default)s)")
    p.add_argument("--warm-tokens", type=int, default=WARM_TOKENS, metavar="N",
                   help="compile the step programs of sequences up to N tokens, greedy and sampling, in the background "
                        "from the start; longer ones compile when a request first needs them (default %(default)s)")
    add_json_flag(p)
    p.set_defaults(run=run)


def run(args) -> int:
    if args.warm_tokens < 0:
        raise UserError(f"--warm-tokens {args.warm_tokens} is negative; give 0 (compile on demand) or more tokens")
    limiter = RateLimiter(args.requests_per_minute, args.tokens_per_minute)
    sock = bind(args.host, args.port)  # before loading the model: a busy port fails at once
    engine = build_engine(args.model, args.chips)
    service = Service(engine, Scheduler(engine, args.pace), limiter, api_key=args.api_key)
    base = f"http://{args.host}:{sock.getsockname()[1]}"
    info = {"url": base, "playground": f"{base}/", "api": [base + prefix for prefix in API_PREFIXES],
            "model": engine.model_id, "context": engine.context_length, "chips": args.chips,
            "concurrency": engine.concurrency, "pace": args.pace, "lpu_timing": engine.timing.kind,
            "lpu_timing_source": engine.timing.source, "warm_tokens": args.warm_tokens,
            "api_key_required": args.api_key is not None}

    def render(console, d):
        console.print(kv_table("openlpu serve (Ctrl-C stops)", [
            ("chat page", d["playground"]), ("API", ", ".join(d["api"])), ("model", d["model"]),
            ("chips", f"{d['chips']} (one replica each: {d['concurrency']} at once)"),
            ("pace", d["pace"]), ("LPU timing", d["lpu_timing_source"]),
            ("step programs", f"for up to {d['warm_tokens']} tokens read from ~/.cache/openlpu or compiled in the "
                              "background (stderr); others when first needed"),
            ("API key", "required" if d["api_key_required"] else "none"),
        ]))

    emit(args, info, render)
    threading.Thread(target=_warm, args=(engine.timing, args.warm_tokens), name="openlpu-warm", daemon=True).start()
    serve_forever(create_app(service), sock)
    return 0


def _warm(timing: CompiledTiming, tokens: int) -> None:
    try:
        timing.warm(tokens, _report)
    except Exception as err:  # the server stays up: a request that needs the program compiles it, or fails alone
        print(f"openlpu serve: compiling the step programs stopped ({type(err).__name__}: {err}); requests will "
              "compile the ones they need", file=sys.stderr, flush=True)


def _report(program: StepProgram, done: int, total: int) -> None:
    print(f"openlpu serve: step program {done} of {total} ready: {program.tokens} x {program.cache_len} (rows x cache "
          f"slots) {program.sampling}, {program.cycles:,} cycles", file=sys.stderr, flush=True)
