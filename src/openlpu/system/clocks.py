"""Plesiochronous clocks and how the chips stay in step: HAC alignment, program alignment, runtime deskew.

Every chip runs from its own oscillator, a few ppm off nominal, so a program compiled in cycles drifts
apart across chips while it runs. ISCA22's answer, simulated here (what the paper leaves open is
`assumed` in `SyncSpec` and said below):
- HAC: an 8-bit hardware aligned counter per chip, counting 0..251 (a 252-cycle epoch). Every 256
  cycles a parent sends its HAC down a spanning tree of the links (breadth first from chip 0); the
  child sets its own to the value plus the link's latency. A chip's HAC error is then its parent's,
  plus the latency error (none if the link was calibrated by a round trip, else its true latency minus
  the nominal one), minus up to one cycle for sampling the value in its own clock, plus the drift
  until the next exchange. Errors add up along the tree: the residual skew grows with its depth.
- Program alignment: the root waits for an epoch boundary (DESKEW), then sends "start at epoch E" down
  the tree (TRANSMIT; each chip forwards it on arrival), E being the first epoch boundary every chip
  reaches after the message; each chip waits for E on its own HAC (DESKEW) and releases its queues with
  a chip-wide NOTIFY (35 cycles, ISCA20). Chips then start within the HAC residual skew of each other.
- Runtime deskew: from then on a chip's program counts its own clock (its SAC, software aligned
  counter), which drifts from the HACs (which keep tracking the root). RUNTIME_DESKEW t makes every chip
  stall t cycles give or take the difference between its SAC and HAC, so all resume together, again
  within the residual skew. It costs about an epoch.
A scheduled flit lands in its slot only while the chips at both ends agree on time to within the links'
slack; `check_drift` refuses a schedule that would run past it without runtime deskews.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from openlpu.chip.spec import TSP_V1, ChipSpec
from openlpu.errors import UserError
from openlpu.sources import assumed, cited
from openlpu.system.spec import SystemSpec
from openlpu.system.timing import NetworkTiming
from openlpu.system.topology import Topology


@dataclass(frozen=True)
class SyncSpec:
    name: str = "groq-v1"
    hac_bits: int = cited(8, "ISCA22: the HAC is an 8-bit hardware aligned counter")
    hac_epoch_cycles: int = cited(252, "ISCA22: the HAC epoch is 252 cycles")
    hac_exchange_cycles: int = cited(256, "ISCA22: HAC values are exchanged every 256 cycles over a spanning tree")
    clock_ppm: float = assumed(
        100.0, "oscillators within +-100 ppm (what IEEE 802.3 allows a SerDes reference clock); "
               "each chip's offset is drawn uniformly in that range")
    link_latency_sd_cycles: float = cited(3.0, "ISCA22 Table 2: link latency sd < 3 cycles")
    latency_calibrated: bool = assumed(
        True, "each link's latency is measured at bring-up (half a round trip) and used by the HAC exchange")
    sample_cycles: int = assumed(1, "a counter value from another clock domain is taken on the next edge: "
                                    "up to one cycle late")
    slack_slots: float = assumed(
        0.5, "a flit still lands in its own slot while the chips at both ends of its link differ by less "
             "than half a flit time")
    runtime_deskew_cycles: int = cited(252, "ISCA22: a runtime deskew (RUNTIME_DESKEW t) takes about one epoch")

    def __post_init__(self) -> None:
        checks = [
            (0 < self.hac_epoch_cycles <= 2 ** self.hac_bits, "hac_epoch_cycles",
             f"between 1 and 2^hac_bits = {2 ** self.hac_bits} (the counter must hold it)"),
            (self.hac_exchange_cycles > 0, "hac_exchange_cycles", "positive"),
            (self.clock_ppm >= 0, "clock_ppm", "0 or more"),
            (self.sample_cycles >= 0, "sample_cycles", "0 or more"),
            (0 < self.slack_slots < 1, "slack_slots", "between 0 and 1 flit time"),
            (self.runtime_deskew_cycles > 0, "runtime_deskew_cycles", "positive"),
        ]
        for ok, field, need in checks:
            if not ok:
                raise UserError(f"sync spec {self.name!r} is inconsistent: {field} = {getattr(self, field)!r} "
                                f"must be {need}.")

    def slack_cycles(self, spec: SystemSpec) -> float:
        return self.slack_slots * NetworkTiming(spec).flit_cycles

    @property
    def worst_drift_per_cycle(self) -> float:
        """Two chips at opposite ends of the tolerance drift apart by 2 x ppm cycles per cycle."""
        return 2 * self.clock_ppm * 1e-6

    def latency_error_bound(self, spec: SystemSpec) -> float:
        """Largest error one HAC exchange can make in a link's latency."""
        if self.latency_calibrated:
            return 0.0
        return max(spec.link_latency_max_cycles - spec.link_latency_cycles,
                   spec.link_latency_cycles - spec.link_latency_min_cycles)

    def residual_bound(self, spec: SystemSpec, depth: int) -> float:
        """Worst HAC skew between two chips of a tree of this depth. Each level adds to a chip's error
        its link's latency error (+-), minus up to a sampling cycle, plus one exchange period of drift
        against the root (+-); two chips can sit at opposite ends of the sum."""
        drift = self.worst_drift_per_cycle * self.hac_exchange_cycles
        return depth * (2 * self.latency_error_bound(spec) + self.sample_cycles + 2 * drift)

    def deskew_interval(self, spec: SystemSpec, depth: int) -> int:
        """Most cycles a program may run between two runtime deskews on a tree of this depth."""
        room = self.slack_cycles(spec) - self.residual_bound(spec, depth)
        if room <= 0:
            raise UserError(f"the HAC residual skew bound ({self.residual_bound(spec, depth):.1f} cycles at tree "
                            f"depth {depth}) leaves no room in the links' {self.slack_cycles(spec):.1f}-cycle slack: "
                            "calibrate link latencies or use a shallower spanning tree.")
        if self.clock_ppm == 0:
            return np.iinfo(np.int64).max
        return int(room / self.worst_drift_per_cycle)


GROQ_SYNC = SyncSpec()


class DriftError(UserError):
    """The schedule runs longer than the chips stay within the links' slack of each other."""


@dataclass(frozen=True)
class DeskewPlan:
    duration_cycles: int
    interval_cycles: int  # longest stretch without a runtime deskew
    deskews: int
    cost_cycles: int  # the deskews' stalls

    @property
    def overhead(self) -> float:
        return self.cost_cycles / self.duration_cycles if self.duration_cycles else 0.0


def tree_depth(topo: Topology, root: int = 0) -> int:
    return int(topo.graph.distances(root).max())


def plan_deskews(topo: Topology, duration_cycles: int, sync: SyncSpec = GROQ_SYNC) -> DeskewPlan:
    interval = sync.deskew_interval(topo.spec, tree_depth(topo))
    deskews = max(0, -(-duration_cycles // interval) - 1)
    return DeskewPlan(duration_cycles, interval, deskews, deskews * sync.runtime_deskew_cycles)


def check_drift(topo: Topology, duration_cycles: int, deskews: int = 0, sync: SyncSpec = GROQ_SYNC) -> DeskewPlan:
    """Refuse a program of `duration_cycles` that has fewer runtime deskews than drift requires."""
    plan = plan_deskews(topo, duration_cycles, sync)
    if deskews < plan.deskews:
        spec = topo.spec
        raise DriftError(
            f"the schedule runs {duration_cycles:,} cycles, but chips at +-{sync.clock_ppm:g} ppm drift past the "
            f"links' {sync.slack_cycles(spec):.1f}-cycle slack after {plan.interval_cycles:,} cycles: insert "
            f"{plan.deskews} RUNTIME_DESKEW (one every {plan.interval_cycles:,} cycles, about "
            f"{sync.runtime_deskew_cycles} cycles each) or shorten the program.")
    return plan


# ---- simulation ----
@dataclass(frozen=True, eq=False)
class SyncRun:
    sync: SyncSpec
    ppm: np.ndarray  # each chip's clock offset
    link_latency: np.ndarray  # each link's true latency, cycles
    parent: np.ndarray  # spanning tree (-1 at the root)
    depth: int
    hac_error: np.ndarray  # (exchanges + 1, chips): HAC minus the root's, after each exchange period
    converged_after: int  # exchange periods until every HAC is aligned
    residual_skew: float  # max - min HAC error once aligned, worst over the simulated periods
    start: np.ndarray  # each chip's first program cycle, in root cycles, after program alignment
    align_begin: float  # when the root's DESKEW began
    deskew: DeskewPlan | None  # None: the residual skew alone already exceeds the links' slack
    skew_before_deskew: float  # the widest program skew just before a runtime deskew
    skew_after_deskew: float

    @property
    def alignment_cycles(self) -> float:
        return float(self.start.max() - self.align_begin)

    @property
    def start_skew(self) -> float:
        return float(self.start.max() - self.start.min())

    def summary(self) -> dict[str, Any]:
        plan = self.deskew
        return {
            "chips": len(self.ppm),
            "tree_depth": self.depth,
            "ppm_spread": float(self.ppm.max() - self.ppm.min()),
            "hac_converge_cycles": self.converged_after * self.sync.hac_exchange_cycles,
            "hac_residual_skew_cycles": self.residual_skew,
            "alignment_cycles": self.alignment_cycles,
            "start_skew_cycles": self.start_skew,
            "deskew_interval_cycles": plan and plan.interval_cycles,
            "program_cycles": plan and plan.duration_cycles,
            "runtime_deskews": plan and plan.deskews,
            "runtime_deskew_cost_cycles": plan and plan.cost_cycles,
            "runtime_deskew_overhead": plan and plan.overhead,
            "skew_before_deskew_cycles": self.skew_before_deskew,
            "skew_after_deskew_cycles": self.skew_after_deskew,
        }


def spanning_tree(topo: Topology, root: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Breadth-first tree: (parent chip, link to the parent) for every chip, -1 at the root."""
    dist = topo.graph.distances(root)
    parent = np.full(topo.chips, -1, np.int64)
    via = np.full(topo.chips, -1, np.int64)
    g = topo.graph
    src = np.repeat(np.arange(topo.chips), np.diff(g.indptr))
    up = dist[g.neighbours] == dist[src] - 1
    # The first (lowest) neighbour one hop closer to the root is the parent.
    chips, first = np.unique(src[up], return_index=True)
    parent[chips] = g.neighbours[up][first]
    via[chips] = g.edge_of[up][first]
    return parent, via


def simulate(topo: Topology, program_cycles: int = 0, sync: SyncSpec = GROQ_SYNC, seed: int = 0,
             chip: ChipSpec = TSP_V1) -> SyncRun:
    """HAC alignment from random boot phases, program alignment, then a program of `program_cycles`
    with the runtime deskews `plan_deskews` asks for. Times are in cycles of the root's clock."""
    spec = topo.spec
    rng = np.random.default_rng(seed)
    n = topo.chips
    ppm = rng.uniform(-sync.clock_ppm, sync.clock_ppm, n)
    rate = (ppm - ppm[0]) * 1e-6  # each chip's cycles gained per root cycle
    nominal = np.where(topo.is_global, spec.global_link_latency_cycles, spec.link_latency_cycles)
    true = np.clip(np.round(rng.normal(nominal, sync.link_latency_sd_cycles)),
                   spec.link_latency_min_cycles, spec.link_latency_max_cycles)
    assumed_latency = true if sync.latency_calibrated else nominal
    parent, via = spanning_tree(topo)
    depth = tree_depth(topo)

    # HAC alignment: every period each child takes its parent's value (as it was that period) over its link.
    periods = depth + 4
    err = np.zeros((periods + 1, n))
    err[0] = rng.uniform(0, sync.hac_epoch_cycles, n)
    err[0, 0] = 0.0
    child = parent >= 0
    for k in range(1, periods + 1):
        sample = rng.uniform(0, sync.sample_cycles, n)
        new = err[k - 1] + rate * sync.hac_exchange_cycles
        new[child] = (err[k - 1][parent[child]] + assumed_latency[via[child]] - true[via[child]] - sample[child]
                      + rate[child] * sync.hac_exchange_cycles)
        new[0] = 0.0
        err[k] = new
    spread = np.ptp(err, axis=1)
    bound = sync.residual_bound(spec, depth)
    settled = np.flatnonzero(np.maximum.accumulate((spread > bound)[::-1])[::-1] == 0)
    converged = int(settled[0]) if settled.size else periods
    residual = float(spread[converged:].max())

    # Program alignment: DESKEW at the root, TRANSMIT down the tree, DESKEW to epoch E, NOTIFY.
    e = err[-1]
    epoch = sync.hac_epoch_cycles
    begin = periods * sync.hac_exchange_cycles
    root_go = np.ceil(begin / epoch) * epoch  # the root's DESKEW ends at its next epoch boundary
    hop = true + NetworkTiming(spec, chip).forward_cycles
    order = np.argsort(topo.graph.distances(0), kind="stable")
    heard = np.zeros(n)
    heard[0] = root_go
    for c in order[1:].tolist():
        heard[c] = heard[parent[c]] + hop[via[c]]
    # Epoch E: the first boundary (on each chip's own HAC) that every chip reaches after hearing.
    target = np.ceil(((heard + e) / epoch).max()) * epoch
    start = target - e + chip.notify_cycles

    # Runtime: each chip's program advances at its own rate; deskews re-align them to the HACs.
    try:
        deskew = plan_deskews(topo, program_cycles, sync)
    except UserError:
        deskew = None
    before = after = float(np.ptp(start))
    if deskew and deskew.deskews:
        stretch = deskew.interval_cycles / (1 + rate)  # root cycles a chip takes for one interval
        reached = start + stretch
        before = float(np.ptp(reached))
        after = float(np.ptp(e))  # every chip resumes when its HAC shows the agreed time
    return SyncRun(sync, ppm, true, parent, depth, err, converged, residual, start, float(begin), deskew, before,
                   after)
