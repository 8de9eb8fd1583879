"""`openlpu predict`: tokens/s of a decoder LLM on N LPUs, from compiled layer shards and scheduled transfers."""

from __future__ import annotations

import argparse

from rich.table import Table

from openlpu.commands.output import add_json_flag, emit, kv_table
from openlpu.models.zoo import NUMERICS, load_decoder_config
from openlpu.perf.predict import PARTS, predict

PUBLISHED = {"llama2-70b-4096": (300.0, "PRESS, Feb 2024: ~300 tokens/s per user on 576 chips")}

EPILOG = """examples:
  openlpu predict llama2-70b-4096 --chips 576      the published system (8 racks x 9 nodes x 8)
  openlpu predict llama2-70b-4096                  the smallest system that fits, and why
  openlpu predict llama2-7b-2048 --chips 40 --context 512 --prompt-tokens 32
  openlpu predict llama3-8b-8192 --numerics fp16 --batch 4 --json
  openlpu predict mixtral-8x7b-32768 --context 4096 --expert-parallel 8

Tensor parallelism over the 8 chips of a node, pipeline parallelism across nodes; a mixture of experts
splits its experts over the node's chips too (--expert-parallel: default, the degree that runs the fewest
expert columns a chip in the worst case of routing). One layer shard is
compiled per distinct block (attention over the KV cache at the context, MLP, LM head) and the decode
time composes their scheduled cycles with compiled all-reduces, scheduled stage hand-offs and PCIe
(docs/predict.md). Without --chips it picks the smallest of 8, 16, ... 64 chips or racks of 64 active
chips that holds the weights and KV cache; a model that does not fit is refused in one sentence."""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "predict",
        help="predict tokens/s of a decoder LLM on N LPUs from compiled schedules",
        description="Partition a zoo decoder (or a Hugging Face config.json) over LPUs, compile one layer "
        "shard per distinct block, and compose TTFT, decode time per token, tokens/s per user and for the "
        "system, with a breakdown, a roofline cross-check and GPU baselines.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", help="zoo name (llama2-70b-4096, ...), config.json or .gguf path")
    p.add_argument("--chips", type=int, help="chips, a multiple of 8 (default: the smallest system that fits)")
    p.add_argument("--numerics", choices=NUMERICS, default="int8", help="weights (default %(default)s)")
    p.add_argument("--context", type=int, help="tokens in each user's KV cache (default: the model's)")
    p.add_argument("--prompt-tokens", type=int, default=128, help="prompt length of the TTFT (default 128)")
    p.add_argument("--batch", type=int, default=1, help="users decoded together in one step (default 1)")
    p.add_argument("--expert-parallel", type=int, metavar="N",
                   help="mixture of experts: groups of a node's chips holding different experts (1, 2, 4, 8)")
    add_json_flag(p)
    p.set_defaults(run=run)


def run(args) -> int:
    model = load_decoder_config(args.model)
    result = predict(model, args.chips, args.numerics, args.context, args.prompt_tokens, args.batch,
                     expert_parallel=args.expert_parallel)
    data = result.as_dict()
    if model.name in PUBLISHED and data["chips"] == 576 and args.batch == 1:
        figure, source = PUBLISHED[model.name]
        data["published"] = {"tokens_per_s_per_user": figure, "source": source,
                             "ratio": data["tokens_per_s_per_user"] / figure}
    emit(args, data, _render)
    return 0


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f} us"


def _render(console, d) -> None:
    part = d["partitioning"]
    layers = "-".join(str(n) for n in part["layers_per_stage"])
    experts = (f"; experts {part['expert_parallel']}-way expert parallel, {part['experts_per_chip']} a chip, "
               f"{part['expert_slots_per_decode_step']} run a decode step") if "expert_parallel" in part else ""
    console.print(kv_table(f"{d['model']} at {d['numerics']}, context {d['context']}, batch {d['batch']}", [
        ("chips", f"{d['chips']} of a {d['system_chips']}-chip system: {part['tensor_parallel']}-way tensor "
                  f"parallel x {part['pipeline_stages']} pipeline stages of {layers} layer"
                  f"{'s' * (layers != '1')}{experts}"),
        ("why these chips", d["chips_because"]),
        ("SRAM per chip", f"{d['sram_bytes_per_chip'] / 1e6:,.1f} of {d['sram_bytes_available'] / 1e6:,.1f} MB"),
        (f"TTFT, {d['prompt_tokens']} prompt tokens", f"{d['ttft_s'] * 1e3:,.3f} ms"),
        ("decode per token", f"{d['decode_s_per_token'] * 1e3:,.3f} ms"),
        ("tokens/s per user", f"{d['tokens_per_s_per_user']:,.1f}"),
        ("tokens/s system", f"{d['tokens_per_s_system']:,.1f} ({d['users_in_flight']} user"
                            f"{'s' * (d['users_in_flight'] != 1)} in flight, "
                            f"slowest stage {_us(d['slowest_stage_s'])})"),
    ]))
    table = Table(title="decode time per token", title_justify="left")
    for col in ("part", "time", "share", "how"):
        table.add_column(col, justify="right" if col in ("time", "share") else "left")
    total = d["decode_s_per_token"]
    for name in PARTS:
        table.add_row(name, _us(d["breakdown"][name]), f"{d['breakdown'][name] / total:.1%}", d["derivation"][name])
    console.print(table)

    r = d["roofline"]
    side = Table(title="side by side (per user)", title_justify="left")
    for col in ("system", "decode per token", "tokens/s per user", "TTFT", "note"):
        side.add_column(col, justify="left" if col in ("system", "note") else "right")
    side.add_row("LPU, compiled", _us(total), f"{d['tokens_per_s_per_user']:,.1f}", f"{d['ttft_s'] * 1e3:,.2f} ms",
                 f"{d['chips']} chips")
    side.add_row("LPU, roofline bound", _us(r["time_s"]), f"{r['tokens_per_s_per_user']:,.1f}", "",
                 f"SRAM {_us(r['sram_s'])}, MXM install {_us(r['mxm_install_s'])}, MXM {_us(r['mxm_s'])}, "
                 f"network+host {_us(r['network_and_host_s'])}; compiled / bound {r['compiled_over_bound']:.2f}")
    for g in d["gpu_baselines"]:
        if "error" in g:
            side.add_row(g["gpu"], "", "", "", g["error"])
        else:
            side.add_row(f"{g['gpus']}x {g['gpu']}, roofline", _us(g["decode_s_per_token"]),
                         f"{g['tokens_per_s_per_user']:,.1f}", f"{g['ttft_s'] * 1e3:,.2f} ms",
                         f"{g['decode']['bound']} bound; a bound, real GPUs are slower")
    if "published" in d:
        pub = d["published"]
        side.add_row("published", "", f"{pub['tokens_per_s_per_user']:,.0f}", "",
                     f"{pub['source']}; openlpu / published = {pub['ratio']:.2f}")
    console.print(side)
