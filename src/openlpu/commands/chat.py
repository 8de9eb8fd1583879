"""`openlpu chat`: a conversation with a real model on the simulated LPU, in the model's chat template.

Each turn re-runs the whole conversation as the prompt (each generation has its own KV cache),
so later turns take longer on the host; the LPU figures after each answer are the simulated ones.
"""

from __future__ import annotations

import argparse

from rich.console import Console

from openlpu.commands.generate import add_model_args, answer, make_engine
from openlpu.errors import UserError
from openlpu.runtime.lpu_engine import Generation, LpuEngine

EPILOG = """examples:
  openlpu chat
  openlpu chat --temperature 0.7 --seed 1 --max-tokens 64

type a message and press enter; /reset forgets the conversation, /exit (or Ctrl-D) ends it."""


def register(sub) -> None:
    p = sub.add_parser("chat", help="talk with a real model on the simulated LPU",
                       description="An interactive conversation: each answer is generated on the simulated LPU and "
                                   "followed by its simulated time to first token and tokens/s.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(p, max_tokens=64)
    p.set_defaults(run=run)


def run(args, read=input) -> int:
    console = Console()
    engine = make_engine(args)
    console.print(f"[bold]{engine.model.name}[/] on a simulated {engine.chip.name}, {engine.numerics}, "
                  f"{engine.executor} executor. /reset forgets, /exit ends.")
    messages: list[dict] = []
    while True:
        try:
            line = read("you> ").strip()
        except EOFError:
            console.print()
            return 0
        if line in ("/exit", "/quit"):
            return 0
        try:
            gen = turn(engine, messages, line, args)
        except UserError as err:  # e.g. the conversation outgrew the context: say so and keep the session
            console.print(f"[red]openlpu: {err}[/]")
            continue
        if line == "/reset":
            console.print("(conversation forgotten)")
        elif gen is not None:
            console.print(f"[bold]{engine.model.name}>[/] ", end="")
            console.print(gen.text.strip(), markup=False, highlight=False)
            lpu = (f"LPU: first token {gen.ttft_s * 1e3:,.2f} ms, {gen.tokens_per_s:,.0f} tokens/s"
                   if gen.executor != "reference" else "LPU: none (reference executor)")
            console.print(f"[dim]{gen.completion_tokens} tokens; {lpu}; host {gen.host_s:,.1f} s[/]")


def turn(engine: LpuEngine, messages: list[dict], line: str, args) -> Generation | None:
    """One line of the user's: /reset clears `messages`; a message gets its answer, both kept in `messages`
    (left unchanged if the answer fails)."""
    if line == "/reset":
        messages.clear()
        return None
    if not line:
        return None
    asked = [*messages, {"role": "user", "content": line}]
    gen = answer(engine, asked, args)
    messages[:] = [*asked, {"role": "assistant", "content": gen.text.strip()}]
    return gen
