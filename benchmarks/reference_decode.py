"""Host speed of the numpy fp32 reference (the speed baseline for the simulated LPU path).

Prints prefill tokens per host second for a prompt and decode tokens per host second with the KV
cache, for SmolLM2-135M by default:

    .venv/bin/python benchmarks/reference_decode.py [--model smollm2-135m] [--prompt-tokens 128]
        [--decode-tokens 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from openlpu.errors import UserError
from openlpu.models.evaluation import eval_token_ids
from openlpu.models.reference import LlamaReference
from openlpu.models.registry import DEFAULT_MODEL, load_model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model name or .gguf path")
    parser.add_argument("--prompt-tokens", type=int, default=128, help="prefill length (from the eval text)")
    parser.add_argument("--decode-tokens", type=int, default=64, help="tokens decoded one at a time")
    parser.add_argument("--repeats", type=int, default=3, help="runs; the best is reported")
    args = parser.parse_args()
    try:
        start = time.perf_counter()
        model = load_model(args.model)
        load_s = time.perf_counter() - start
        ref = LlamaReference(model.config, model.weights)
        prompt = eval_token_ids(model.tokenizer, args.prompt_tokens)
    except UserError as err:
        print(f"reference_decode: {err}", file=sys.stderr)
        return 2
    best_prefill, best_decode = 0.0, 0.0
    for _ in range(args.repeats):
        ref.reset()
        t0 = time.perf_counter()
        logits = ref.forward(prompt)
        t1 = time.perf_counter()
        for _ in range(args.decode_tokens):
            logits = ref.forward([int(np.argmax(logits))])
        t2 = time.perf_counter()
        best_prefill = max(best_prefill, len(prompt) / (t1 - t0))
        best_decode = max(best_decode, args.decode_tokens / (t2 - t1))
    c = model.config
    print(f"model            {model.name} ({c.param_count / 1e6:.1f} M parameters, fp32 reference)")
    print(f"load             {load_s:.2f} s (read GGUF, dequantise)")
    print(f"prefill          {best_prefill:8.1f} tokens/s  ({len(prompt)} prompt tokens)")
    print(f"decode           {best_decode:8.1f} tokens/s  ({args.decode_tokens} tokens after the prompt, "
          f"best of {args.repeats})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
