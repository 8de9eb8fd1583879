"""Cost: the seed's LPU-vs-GPU comparison reproduced from its assumptions, then cost per million tokens.

A system's cost over a period is its hardware price (capex, paid once and amortised over the period)
plus its power (opex: kW x $ per kW-month x months). Cost per million tokens divides that by the
tokens the system serves in the period at a throughput, busy a given fraction of the time: for LPUs the
throughput `predict` composes from compiled schedules, for GPUs the roofline baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

from openlpu.errors import UserError
from openlpu.models.zoo import DecoderConfig
from openlpu.perf.gpu import GpuSpec, gpu_baseline, max_batch
from openlpu.perf.predict import Prediction, predict
from openlpu.sources import assumed, cited

SECONDS_PER_MONTH = 365.25 / 12 * 24 * 3600  # a Julian month: the average over leap years

# The seed's published figures (FACTS.md section 4), in US dollars: what `seed_comparison` must give.
SEED_PUBLISHED = {
    "LPU hardware": 11.44e6,
    "LPU operations": 0.762e6,
    "GPU hardware": 0.3e6,
    "GPU operations": 0.072e6,
}


@dataclass(frozen=True)
class CostAssumptions:
    """The seed's assumptions (FACTS.md section 4) and the fraction of the time a system serves.

    The GPU server's price and power live in its `GpuSpec`; throughputs come from `predict` (LPU) and the
    roofline baseline (GPU)."""

    lpu_cards: int = cited(572, "FACTS 4 (seed): 572 Groq cards for Llama-2-70B")
    lpu_card_price_usd: float = cited(20_000.0, "FACTS 4 (seed): $20K per card (> $20K at quantity 1)")
    lpu_card_w: float = cited(185.0, "CHIP: 185 W average power per card; FACTS 4")
    gpu_servers: int = cited(1, "FACTS 4 (seed): one 8xH100 server")
    usd_per_kw_month: float = cited(200.0, "FACTS 4 (seed): $200 per kW-month")
    months: int = cited(36, "FACTS 4 (seed): 3 years")
    utilisation: float = assumed(1.0, "serving all the time: the lowest cost per token a system can reach")

    def __post_init__(self) -> None:
        for name in ("lpu_cards", "gpu_servers", "months"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} = {getattr(self, name)}: give at least 1")
        for name in ("lpu_card_price_usd", "lpu_card_w", "usd_per_kw_month"):
            if getattr(self, name) < 0:
                raise UserError(f"{name} = {getattr(self, name)}: give a price or power of 0 or more")
        if not 0 < self.utilisation <= 1:
            raise UserError(f"utilisation {self.utilisation}: give a fraction of the time in (0, 1]")


@dataclass(frozen=True)
class System:
    """Hardware bought as `units` of one price and power (LPU cards, or GPU servers)."""

    name: str
    units: int
    unit_price_usd: float
    unit_kw: float

    @property
    def hardware_usd(self) -> float:
        return self.units * self.unit_price_usd

    def operations_usd(self, usd_per_kw_month: float, months: float) -> float:
        return self.units * self.unit_kw * usd_per_kw_month * months

    def total_usd(self, usd_per_kw_month: float, months: float) -> float:
        return self.hardware_usd + self.operations_usd(usd_per_kw_month, months)


def lpu_system(a: CostAssumptions, cards: int | None = None) -> System:
    """`cards` LPU cards (default: the seed's count) at the assumed price and power."""
    cards = a.lpu_cards if cards is None else cards
    return System(f"{cards} LPU cards", cards, a.lpu_card_price_usd, a.lpu_card_w / 1000)


def gpu_system(a: CostAssumptions, gpu: GpuSpec) -> System:
    name = f"{a.gpu_servers} server(s) of {gpu.server_gpus} {gpu.name}"
    return System(name, a.gpu_servers, gpu.server_price_usd, gpu.server_kw)


@dataclass(frozen=True)
class SeedRow:
    item: str
    computed_usd: float
    published_usd: float

    @property
    def ratio(self) -> float:
        return self.computed_usd / self.published_usd


def seed_comparison(a: CostAssumptions, gpu: GpuSpec) -> list[SeedRow]:
    """The seed's four figures computed from the assumptions, beside the published ones."""
    lpu, server = lpu_system(a), gpu_system(a, gpu)
    computed = {
        "LPU hardware": lpu.hardware_usd,
        "LPU operations": lpu.operations_usd(a.usd_per_kw_month, a.months),
        "GPU hardware": server.hardware_usd,
        "GPU operations": server.operations_usd(a.usd_per_kw_month, a.months),
    }
    return [SeedRow(item, computed[item], published) for item, published in SEED_PUBLISHED.items()]


def usd_per_mtoken(system: System, tokens_per_s: float, a: CostAssumptions) -> float:
    """The system's cost over the period divided by the millions of tokens it serves in the period."""
    if tokens_per_s <= 0:
        raise UserError(f"throughput {tokens_per_s} tokens/s for {system.name}: give a positive throughput")
    tokens = tokens_per_s * a.utilisation * a.months * SECONDS_PER_MONTH
    return system.total_usd(a.usd_per_kw_month, a.months) / tokens * 1e6


@dataclass(frozen=True)
class CostPoint:
    """One operating point: a system serving users at a speed, and what a million tokens costs there."""

    system: str
    tokens_per_s_per_user: float
    tokens_per_s: float
    usd_per_mtoken: float
    batch: int  # users decoded together in one step
    users: int  # users the whole system serves at once
    throughput_from: str


def lpu_point(a: CostAssumptions, p: Prediction) -> CostPoint:
    """The LPU system `predict` planned (every chip of it a card) at the throughput it predicted."""
    system = lpu_system(a, p.plan.system_chips)
    users = p.plan.users_in_flight * p.plan.batch
    return CostPoint(system.name, p.tokens_per_s_per_user, p.tokens_per_s_system,
                     usd_per_mtoken(system, p.tokens_per_s_system, a), p.plan.batch, users,
                     f"predict: compiled, {p.plan.chips} chips, {users} user(s) in flight")


def lpu_curve(a: CostAssumptions, model: DecoderConfig, chips: int | None, context: int, numerics: str,
              max_batch: int, expert_parallel: int | None = None) -> list[CostPoint]:
    """Cost against speed per user as the LPU's decode batch doubles from 1 to `max_batch`, while it fits
    the chips (each batch on the smallest system that holds it when `chips` is None)."""
    def point(batch: int) -> CostPoint:
        return lpu_point(a, predict(model, chips, numerics, context, batch=batch, expert_parallel=expert_parallel,
                                    prefill=False))

    points = [point(1)]
    for batch in (2**k for k in range(1, max_batch.bit_length())):
        try:
            points.append(point(batch))
        except UserError:
            break  # this batch's KV caches no longer fit the SRAM: larger ones will not either
    return points


def gpu_point(a: CostAssumptions, model: DecoderConfig, gpu: GpuSpec, gpus: int, batch: int, context: int,
              numerics: str) -> CostPoint:
    """The GPU servers at the roofline baseline's speed: every server runs server_gpus / gpus replicas."""
    run = gpu_baseline(model, gpu, gpus, batch, context, numerics=numerics)
    system = gpu_system(a, gpu)
    tokens_per_s = a.gpu_servers * run.tokens_per_s_per_server
    cost = usd_per_mtoken(system, tokens_per_s, a)
    users = a.gpu_servers * run.replicas_per_server * batch
    return CostPoint(system.name, run.tokens_per_s_per_user, tokens_per_s, cost, batch, users,
                     f"roofline, {gpus}-way tensor parallel")


def gpu_curve(a: CostAssumptions, model: DecoderConfig, gpu: GpuSpec, gpus: int, context: int,
              numerics: str) -> list[CostPoint]:
    """Cost against speed per user as the batch doubles from 1, and at the largest that fits memory."""
    largest = max_batch(model, gpu, gpus, context, numerics)
    batches = [2**k for k in range(largest.bit_length())]
    batches += [largest] if largest & (largest - 1) else []
    return [gpu_point(a, model, gpu, gpus, b, context, numerics) for b in batches]
