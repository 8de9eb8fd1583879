"""`openlpu eval`: what the LPU's numerics cost in answer quality, measured against the fp32 model.

Teacher-forced over the fixed text that ships with openlpu: for each numerics mode, the perplexity of the
true next tokens and how often the mode's most likely next token is the fp32 model's.
"""

from __future__ import annotations

import argparse
import time

from rich.table import Table

from openlpu.commands.generate import progress_bar
from openlpu.commands.output import add_json_flag, emit
from openlpu.errors import UserError
from openlpu.models.evaluation import eval_token_ids, score, teacher_forced_logits
from openlpu.models.lpu_graph import NUMERICS
from openlpu.models.reference import LlamaReference
from openlpu.models.registry import DEFAULT_MODEL, load_model
from openlpu.runtime.lpu_engine import EXECUTORS, LpuEngine

EPILOG = """examples:
  openlpu eval                                   int8 and fp16 against fp32, first 128 tokens
  openlpu eval --numerics int8 --tokens 511      the whole text (a few minutes)
  openlpu eval --numerics int8 --executor fast   run the compiled programs themselves (slow: minutes a step)

The default executor, reference, evaluates the step graph in numpy with the chip's numerics: the compiled
programs give exactly its bits (tests/models/test_lpu_graph.py), so the scores are the LPU's."""


def register(sub) -> None:
    p = sub.add_parser("eval", help="answer quality of each numerics mode against the fp32 model",
                       description="Teacher-forced perplexity and next-token agreement with the fp32 reference, on "
                                   "the evaluation text that ships with openlpu, for each numerics mode.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=DEFAULT_MODEL, help="model name or .gguf path (default %(default)s)")
    p.add_argument("--numerics", nargs="+", choices=NUMERICS, default=list(NUMERICS),
                   help="modes to score (default: all)")
    p.add_argument("--tokens", type=int, default=128, metavar="N",
                   help="score the first N tokens of the text (default %(default)s)")
    p.add_argument("--executor", choices=EXECUTORS, default="reference",
                   help="how to run the steps (default %(default)s)")
    add_json_flag(p)
    p.set_defaults(run=run)


def run(args) -> int:
    if args.tokens < 2:
        raise UserError(f"--tokens {args.tokens} leaves nothing to predict; use at least 2.")
    model = load_model(args.model)
    ids = eval_token_ids(model.tokenizer, args.tokens)
    t0 = time.perf_counter()
    fp32_logits = teacher_forced_logits(LlamaReference(model.config, model.weights), ids)
    base = score(fp32_logits, ids)
    rows = [{"numerics": "fp32", "executor": "numpy", "predictions": base.n_predictions,
             "perplexity": base.perplexity, "agreement": 1.0, "host_s": time.perf_counter() - t0}]
    for mode in args.numerics:
        t0 = time.perf_counter()
        engine = LpuEngine(model, mode, executor=args.executor, cache_bucket=64)
        with progress_bar(args.json) as progress:
            logits = engine.teacher_forced_logits(ids, progress)[:-1]
        s = score(logits, ids, fp32_logits)
        rows.append({"numerics": mode, "executor": args.executor, "predictions": s.n_predictions,
                     "perplexity": s.perplexity, "agreement": s.agreement, "host_s": time.perf_counter() - t0})

    def render(console, d):
        table = Table(title=f"{d['model']}: teacher-forced on the evaluation text, {d['tokens']} tokens",
                      title_justify="left")
        for col in ("numerics", "executor", "predictions", "perplexity", "agreement with fp32", "host"):
            table.add_column(col, justify="left" if col in ("numerics", "executor") else "right")
        for r in d["modes"]:
            table.add_row(r["numerics"], r["executor"], f"{r['predictions']:,}", f"{r['perplexity']:.2f}",
                          f"{r['agreement']:.1%}", f"{r['host_s']:.1f} s")
        console.print(table)

    emit(args, {"model": model.name, "tokens": len(ids), "modes": rows}, render)
    return 0
