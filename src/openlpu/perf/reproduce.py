"""The published results next to openlpu's figures, each computed by the model as it stands.

A figure the model cannot produce yet is a row that says so; a miss stays a miss, with the ratio. Sources
are FACTS.md rows (ISCA20, ISCA22, PRESS).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from openlpu.chip.spec import get_chip
from openlpu.compiler.compile import compile as compile_graph
from openlpu.compiler.graph import Graph
from openlpu.models.resnet_graph import resnet50_timing
from openlpu.models.zoo import ZOO, DecoderConfig, load_config
from openlpu.perf.predict import DEFAULTS, Prediction, compile_blocks, decode_keys, plan, predict
from openlpu.system.netfigures import figures as network_figures


@dataclass
class Row:
    workload: str
    system: str
    model: float | None  # None: not modelled yet
    published: float
    unit: str
    source: str
    note: str = ""

    @property
    def ratio(self) -> float | None:
        return None if self.model is None else self.model / self.published

    def as_dict(self) -> dict:
        return {**self.__dict__, "ratio": self.ratio}


def resnet50() -> list[Row]:
    """Every distinct unit compiled once for tsp-v1 (int8) and composed, one image after another."""
    t = resnet50_timing("tsp-v1")
    parts = ", ".join(f"{k} {v * 1e6:,.0f} us" for k, v in t.breakdown().items())
    note = (f"{t.cycles:,} cycles at {t.clock_hz / 1e6:,.0f} MHz, units in sequence: {parts}; a matmul runs in "
            f"{t.matmul_cycles / t.cycles:.0%} of them: the rest is im2col copies, requantisation passes waiting for "
            f"whole tensors, and units that never overlap")
    return [Row("ResNet-50 v2, batch 1", "1 chip", 1 / t.latency_s, 20_400, "images/s", "ISCA20", note),
            Row("ResNet-50 v2, batch 1, latency", "1 chip", t.latency_s, 49e-6, "s", "ISCA20", note)]


def llama2_70b(keep: list[Prediction]) -> list[Row]:
    p = predict(load_config("llama2-70b-4096"), chips=576)
    keep.append(p)
    parts = ", ".join(f"{k} {v * 1e6:,.0f} us" for k, v in p.breakdown.items())
    return [Row("Llama-2-70B (4K context), decode per user", "576 chips", p.tokens_per_s_per_user, 300.0,
                "tokens/s", "PRESS", f"{p.decode_s * 1e6:,.0f} us a token: {parts}")]


def network() -> list[Row]:
    wanted = {"pipelined all-reduce hop": "8 chips (a node)",
              "rack: worst-case vector, SRAM to SRAM": "1 rack (72 chips)",
              "10,440 chips: worst-case vector, end to end": "145 racks (10,440 chips)"}
    return [Row(r["figure"], wanted[r["figure"]], r["model"], r["published"], r["unit"], r["source"], r["detail"])
            for r in network_figures() if r["figure"] in wanted]


def matmul_utilisation() -> list[Row]:
    g = Graph()
    x = g.input("x", (2304, 4096), "fp16")
    # Distinct weights, as a real layer's: the compiler stores equal tiles once, which zeros would all be.
    w = np.random.default_rng(0).integers(-127, 128, (4096, 1376)).astype(np.float16)
    g.output("y", g.matmul(x, g.constant("w", w)))
    compiled = compile_graph(g, "tsp-v1", check=False)
    stat = compiled.matmuls[0]
    return [Row("[2304x4096]x[4096x1376] fp16 matmul, MXM utilisation", "1 chip", stat.utilisation(compiled.chip),
                0.80, "fraction of peak", "ISCA22 Fig. 13 (>= 80%)",
                f"{stat.end - stat.start:,} scheduled cycles")]


SECTIONS: dict[str, Callable[..., list[Row]]] = {
    "resnet50": resnet50, "llama2-70b": llama2_70b, "network": network, "matmul": matmul_utilisation,
}


SCALING_CHIPS = (16, 32, 64, 128, 256, 576)


def scaling(models: list[str] | None = None, chips: tuple[int, ...] = SCALING_CHIPS) -> dict[str, list[Prediction]]:
    """Decode at batch 1 and each model's context, on the smallest system that holds it, on each of `chips`
    above that, and on a layer a node with the LM head alone (more chips add no pipeline stage). Every zoo
    decoder by default."""
    decoders = [load_config(name) for name in models or
                [name for name, m in ZOO.items() if isinstance(m, DecoderConfig)]]
    sram = get_chip("tsp-v1").sram_bytes
    # Every model's blocks at once, in parallel: the shard's shape does not depend on the chips.
    compile_blocks([key for m in decoders for key in decode_keys(plan(m, DEFAULTS.tp, "int8", m.context, 1, sram))])
    sweep = {}
    for model in decoders:
        smallest = predict(model, prefill=False)
        most = (model.n_layers + 1) * DEFAULTS.tp
        sizes = sorted({n for n in (*chips, most) if smallest.plan.system_chips < n <= most})
        sweep[model.name] = [smallest] + [predict(model, n, prefill=False) for n in sizes]
    return sweep


def reproduce(sections: list[str] | None = None, keep: list[Prediction] | None = None) -> list[Row]:
    keep = [] if keep is None else keep
    rows: list[Row] = []
    for name in sections or list(SECTIONS):
        rows += SECTIONS[name](keep) if name == "llama2-70b" else SECTIONS[name]()
    return rows
