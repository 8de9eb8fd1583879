"""`openlpu generate`: a real model answering a prompt on the simulated LPU, with the hardware's timing.

The prompt goes into the model's own chat template (with its default system message); the compiled step
programs run on the chosen executor; the answer comes back with the simulated LPU timing (time to first
token, tokens/s, cycles per token) and, apart, the host's own seconds. Several prompts (or `--requests`)
are requests in flight together on the pipeline of chips (runtime/pipeline_flight.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from openlpu.commands.output import add_json_flag, emit, kv_table
from openlpu.errors import UserError
from openlpu.models.lpu_graph import NUMERICS
from openlpu.models.registry import DEFAULT_MODEL, MODELS, load_model
from openlpu.runtime.lpu_engine import EXECUTORS, PARALLEL, PREFILL_TOKENS, Generation, LpuEngine
from openlpu.runtime.pipeline_flight import Flight, generate_in_flight
from openlpu.runtime.sampling import SamplingParams
from openlpu.viz.trace import flight_trace, generation_trace, write_trace

EPILOG = f"""examples:
  openlpu generate --prompt "What is the capital of France?"
  openlpu generate --prompt "Write a haiku about SRAM" --max-tokens 40 --temperature 0.7 --seed 1
  openlpu generate --prompt "Hi" --executor exact --max-tokens 2     (every vector, cycle by cycle: slow)
  openlpu generate --prompt "Hi" --numerics fp16 --chips 2    (fp16 needs two chips' SRAM)
  openlpu generate --prompt "Hi" --numerics fp16 --chips 8 --parallel tensor    (every layer on 8 chips)
  openlpu generate --prompt "Hi" --prompt "Name a colour" --chips 2    (two requests in flight)
  openlpu generate --prompt "Hi" --chips 4 --requests 4 --max-tokens 8    (four copies: system tokens/s)
  openlpu generate --prompt "Hi" --json

models: {', '.join(MODELS)} or the path of a llama-architecture .gguf file.
executors: fast (the compiled program a tensor instruction at a time), exact (cycle-accurate, vector by
vector), reference (the step graph's numpy reference at the same numerics, which the compiled programs equal
bit for bit; nothing is compiled, so there is no LPU time).
The first run of a step shape compiles it (SmolLM2-135M: about half a minute per shape).

requests in flight: with several prompts (--prompt repeated, or --requests N) the requests share the
pipeline of --chips stages: chip k runs one request's step while chip k+1 runs another's, each chip and
link taking the steps in the order their inputs arrive (a decode step needs its request's last token). The
tables give each request's time to first token and tokens/s in flight and alone, each chip's and link's busy
share, and the system's tokens/s against the same requests one at a time: with N requests on N stages it
nears N times, as far as the slowest stage allows. Every request's tokens are those it gets alone."""

PHASES = {"compile": "compiling steps", "prompt": "prompt tokens", "decode": "new tokens"}
SPLIT = {"pipeline": "a pipeline", "tensor": "tensor parallel"}


def add_model_args(p: argparse.ArgumentParser, max_tokens: int) -> None:
    """The options every command that runs the model on the LPU shares (generate, chat)."""
    p.add_argument("--model", default=DEFAULT_MODEL, help="model name or .gguf path (default %(default)s)")
    p.add_argument("--max-tokens", type=int, default=max_tokens, metavar="N",
                   help="most new tokens to generate (default %(default)s)")
    p.add_argument("--numerics", choices=NUMERICS, default="int8",
                   help="int8: int8 weights with per-channel scales, int32 accumulate; fp16: fp16 weights, fp32 "
                        "accumulate (needs more SRAM than one chip for SmolLM2) (default %(default)s)")
    p.add_argument("--chips", type=int, default=1,
                   help="simulated chips of one node, a pipeline of layer ranges handing the residual stream over "
                        "their links (fp16 SmolLM2 needs 2) (default %(default)s)")
    p.add_argument("--parallel", choices=PARALLEL, default="pipeline",
                   help="how the model is split over --chips: pipeline (layer ranges, one after the other) or "
                        "tensor (every layer's heads and FFN columns on every chip, two all-reduces a layer) "
                        "(default %(default)s)")
    p.add_argument("--fail-link", action="append", default=[], metavar="A-B",
                   help="break the link between chips A and B of the node (or link id N): the runtime detects the "
                        "lost flits, re-plans the hand-offs or all-reduces around it and replays (repeat for more)")
    p.add_argument("--temperature", type=float, default=0.0,
                   help="0 is greedy; higher samples more freely, up to 2 (default %(default)s)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling cut (default %(default)s)")
    p.add_argument("--seed", type=int, help="seed of the sampler: the same seed gives the same answer")
    p.add_argument("--stop", action="append", default=[], metavar="TEXT",
                   help="end the answer before this text (up to 4, repeat the flag)")
    p.add_argument("--executor", choices=EXECUTORS, default="fast",
                   help="how to run the programs (default %(default)s)")
    p.add_argument("--cache-bucket", type=int, default=64, metavar="SLOTS",
                   help="KV cache slots are compiled in multiples of this (default %(default)s)")
    p.add_argument("--prefill-tokens", type=int, default=PREFILL_TOKENS, metavar="P",
                   help="prompt tokens per prefill step, halved while a step that size does not fit the chip's "
                        "SRAM; 1 runs the prompt through the decode step (default %(default)s)")


def add_prompt_args(p: argparse.ArgumentParser, required: bool) -> None:
    p.add_argument("--prompt", action="append", required=required, metavar="TEXT",
                   help="the user's message; repeat for several requests in flight on the pipeline")
    p.add_argument("--requests", type=int, metavar="N",
                   help="requests in flight at once, the prompts taken in turn (default: one per --prompt)")


def requested_prompts(args) -> list[str]:
    """One prompt per request: --requests of them, taking the --prompt values in turn."""
    n = len(args.prompt) if args.requests is None else args.requests
    if n < len(args.prompt):
        raise UserError(f"--requests {n} is fewer than the prompts given ({len(args.prompt)}); ask for at least "
                        f"{len(args.prompt)} or give fewer prompts.")
    return [args.prompt[r % len(args.prompt)] for r in range(n)]


def add_trace_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trace", metavar="FILE", help="write a Perfetto timeline (ui.perfetto.dev) of the generation: a "
                                                    "track per chip and per link (hand-offs or all-reduces)")


def register(sub) -> None:
    p = sub.add_parser("generate", help="answer a prompt with a real model on the simulated LPU",
                       description="Wrap the prompt in the model's chat template, run the compiled prefill and decode "
                                   "steps on the simulated LPU and print the answer with its simulated timing.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_prompt_args(p, required=True)
    add_model_args(p, max_tokens=32)
    add_trace_flag(p)
    add_json_flag(p)
    p.set_defaults(run=run)


def sampling_params(args) -> SamplingParams:
    return SamplingParams(temperature=args.temperature, top_p=args.top_p, seed=args.seed,
                          max_tokens=args.max_tokens, stop=tuple(args.stop))


def make_engine(args) -> LpuEngine:
    """The engine the options describe, the model loaded; every bad option is one sentence before any work."""
    sampling_params(args)
    return LpuEngine(load_model(args.model), args.numerics, executor=args.executor, cache_bucket=args.cache_bucket,
                     prefill_tokens=args.prefill_tokens, chips=args.chips, failed_links=args.fail_link,
                     parallel=args.parallel)


@contextmanager
def progress_bar(quiet: bool):
    """A progress callback for LpuEngine that draws one bar per phase on stderr (nothing when quiet or when
    stderr is not a terminal)."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    bars = Progress(TextColumn("{task.description:>16}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=Console(stderr=True), transient=True)
    tasks: dict[str, int] = {}

    def update(phase: str, done: int, total: int) -> None:
        if phase not in tasks:
            tasks[phase] = bars.add_task(PHASES[phase], total=total)
        bars.update(tasks[phase], completed=done, total=total)

    with bars:
        yield update


def answer(engine: LpuEngine, messages: list[dict], args, quiet: bool = False) -> Generation:
    """Generate the assistant's turn of `messages`, compiling what it needs first (with progress)."""
    tok = engine.model.tokenizer
    prompt = tok.encode_chat(messages)
    params = sampling_params(args)
    with progress_bar(quiet) as progress:
        t0 = time.perf_counter()
        compile_s = engine.prepare(len(prompt), args.max_tokens, progress, params)
        prepare_s = time.perf_counter() - t0
        gen = engine.generate(prompt, args.max_tokens, tok.stop_ids, params, progress)
    gen.compile_s += compile_s
    gen.host_s += prepare_s
    return gen


def timing_rows(gen: Generation) -> list[tuple[str, str]]:
    lpu = gen.executor != "reference"
    rows = [("tokens", f"{gen.prompt_tokens} prompt in steps of {gen.prefill_tokens}, {gen.completion_tokens} "
                       f"generated ({gen.finish_reason})"),
            ("system", f"{gen.chip.name} x {gen.chips}{f' ({SPLIT[gen.parallel]})' * (gen.chips > 1)}, {gen.numerics}, "
                       f"{gen.executor} executor")]
    if lpu:
        rows += [("LPU time to first token", f"{gen.ttft_s * 1e3:,.2f} ms ({gen.prefill_cycles:,} cycles)")]
        if gen.decode:
            rows += [("LPU decode", f"{gen.tokens_per_s:,.0f} tokens/s ({gen.cycles_per_token:,.0f} cycles a token "
                                    f"at {gen.chip.clock_hz / 1e6:,.0f} MHz)")]
    else:
        rows += [("LPU time", "none: the reference executor runs no program")]
    rows += [("link failure", replan) for replan in gen.replans]
    rows += [("host", f"{gen.host_s:,.1f} s ({gen.compile_s:,.1f} s compiling)")]
    return rows


def run(args) -> int:
    prompts = requested_prompts(args)
    engine = make_engine(args)
    if len(prompts) > 1:
        return run_in_flight(engine, prompts, args)
    gen = answer(engine, [{"role": "user", "content": prompts[0]}], args, quiet=args.json)
    if args.trace:
        write_trace(args.trace, generation_trace(gen))

    def render(console, d):
        console.print(d["text"].strip() or "(empty answer)", markup=False, highlight=False)
        console.print(kv_table("on the simulated LPU", timing_rows(gen)))

    emit(args, gen.summary(), render)
    return 0


def run_in_flight(engine: LpuEngine, prompts: list[str], args) -> int:
    """The prompts as requests in flight together on the pipeline: answers and the timeline's figures."""
    tok = engine.model.tokenizer
    ids = [tok.encode_chat([{"role": "user", "content": p}]) for p in prompts]
    params = sampling_params(args)
    with progress_bar(args.json) as progress:
        t0 = time.perf_counter()  # the longest prompt first: the KV cache's regions take its size before any compile
        compile_s = sum(engine.prepare(n, args.max_tokens, progress, params)
                        for n in sorted({len(i) for i in ids}, reverse=True))
        flight = generate_in_flight(engine, ids, args.max_tokens, tok.stop_ids, params, progress)
        host_s = time.perf_counter() - t0
    if args.trace:
        write_trace(args.trace, flight_trace(flight))

    def render(console, _):
        for r, gen in enumerate(flight.generations):
            console.print(f"[bold]request {r}[/bold]")
            console.print(gen.text.strip() or "(empty answer)", markup=False, highlight=False)
        if flight.lpu:
            console.print(flight_table(flight))
        console.print(kv_table("all requests", flight_rows(flight) + [
            ("host", f"{host_s:,.1f} s ({compile_s:,.1f} s compiling)")]))

    emit(args, flight.summary() | {"compile_s": compile_s, "host_s": host_s}, render)
    return 0


def flight_table(flight: Flight) -> Table:
    table = Table(title="requests in flight, LPU time (alone: the request by itself)", title_justify="left")
    for column in ("request", "prompt", "new tokens", "TTFT ms", "tokens/s", "alone: TTFT", "tokens/s"):
        table.add_column(column, justify="right")
    for r, gen in enumerate(flight.generations):
        table.add_row(str(r), str(gen.prompt_tokens), f"{gen.completion_tokens} {gen.finish_reason}",
                      f"{flight.ttft_s(r) * 1e3:,.3f}", f"{flight.decode_tokens_per_s(r):,.0f}",
                      f"{gen.ttft_s * 1e3:,.3f}", f"{gen.tokens_per_s:,.0f}")
    return table


def flight_rows(flight: Flight) -> list[tuple[str, str]]:
    first = flight.generations[0]
    rows = [("system", f"{flight.chip.name} x {flight.chips}{f' ({first.parallel})' * (flight.chips > 1)}, "
                       f"{first.numerics}, {first.executor} executor"),
            ("requests", f"{len(flight.generations)} in flight, {flight.completion_tokens} new tokens in all")]
    if not flight.lpu:
        return rows + [("LPU time", "none: the reference executor runs no program")]
    together, alone = flight.system_tokens_per_s, flight.one_at_a_time_tokens_per_s
    return rows + [
        ("LPU system tokens/s", f"{together:,.0f} in flight, {alone:,.0f} one request at a time "
                                f"({together / alone:.2f}x)"),
        ("LPU time", f"{flight.makespan_s * 1e3:,.3f} ms to the last token ({flight.makespan:,} cycles)"),
        ("busy", ", ".join(f"{name} {share:.0%}" for name, share in flight.utilisation().items()))]
