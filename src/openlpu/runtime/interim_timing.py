"""INTERIM LPU timing for the reference-backed engine: a placeholder, not a measurement or a prediction.

The compiled engine will take each step's time from its compiled, simulated program. Until it exists
the service needs some simulated clock, and this is it, built from two published figures and one
assumed number, all visible:

- the chip clock and the MXM's multiply-accumulates per cycle (`ChipSpec`, cited in FACTS.md);
- `layer_cycles`, ASSUMED: the latency of one token through one decoder layer.

A decode step is one token through every layer: n_layers x layer_cycles. A prefill streams the prompt's
tokens through the layers back to back: the first takes a decode step, each later one follows after the
cycles the MXM needs for one token's matmuls at int8 peak. Attention to the context is not counted, so a
decode step costs the same at every context length. Served responses say `"lpu_timing": "interim"`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from openlpu.chip.spec import TSP_V1, ChipSpec
from openlpu.errors import UserError
from openlpu.models.zoo import DecoderConfig
from openlpu.sources import assumed


@dataclass(frozen=True)
class InterimTiming:
    config: DecoderConfig
    chip: ChipSpec = TSP_V1
    layer_cycles: int = assumed(
        3000, "placeholder until compiled schedules exist: a layer as a chain of about 7 dependent matmul and "
              "vector steps, each a few hundred cycles of issue skew, stream hops and functional delay")
    kind: str = "interim"

    @property
    def mxm_macs_per_cycle(self) -> int:
        return self.chip.mxm_planes * self.chip.mxm_size ** 2

    @property
    def decode_cycles(self) -> int:
        return self.config.n_layers * self.layer_cycles

    @property
    def token_interval_cycles(self) -> int:
        """Cycles between prompt tokens in a prefill: one token's matmul weights over the MXM at int8 peak."""
        return math.ceil(self.config.matmul_params() / self.mxm_macs_per_cycle)

    def prefill_seconds(self, prompt_tokens: int) -> float:
        if prompt_tokens < 1:
            raise UserError(f"a prefill of {prompt_tokens} tokens is empty; give a prompt of at least one token")
        return (self.decode_cycles + (prompt_tokens - 1) * self.token_interval_cycles) / self.chip.clock_hz

    def decode_seconds(self, context: int) -> float:
        return self.decode_cycles / self.chip.clock_hz
