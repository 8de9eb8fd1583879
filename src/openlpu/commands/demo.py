"""`openlpu demo`: the main job of `make demo`: a real model answers a question on the simulated LPU.

It is `openlpu generate` with a default question: SmolLM2-135M-Instruct at int8 on one simulated tsp-v1,
its compiled programs run on the fast executor, the answer printed with its simulated timing.
"""

from __future__ import annotations

import argparse

from openlpu.commands import generate
from openlpu.commands.output import add_json_flag

QUESTION = "What is the capital of France?"


def register(sub) -> None:
    p = sub.add_parser("demo", help="a real model answers a question on the simulated LPU (the main job)",
                       description="Compile SmolLM2-135M-Instruct for one simulated LPU, run its prompt and decode "
                                   "steps on the fast executor, and print the answer with the simulated time to first "
                                   "token and tokens/s. Takes a few minutes on a laptop-class host: every step runs "
                                   "the whole compiled program.",
                       epilog="examples:\n  openlpu demo\n  openlpu demo --prompt \"Name a prime number.\" "
                              "--max-tokens 12\n\nall options are those of `openlpu generate`.",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    generate.add_prompt_args(p, required=False)
    generate.add_model_args(p, max_tokens=24)
    generate.add_trace_flag(p)
    add_json_flag(p)
    p.set_defaults(run=run)


def run(args) -> int:
    args.prompt = args.prompt or [QUESTION]
    return generate.run(args)
