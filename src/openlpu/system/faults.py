"""Link faults: inject a failure on a named link, detect it, re-plan around it or move to the spare node.

The network has no retry: a flit sent on a dead link is gone. The chip at the far end expected it in a
known slot, so it notices at once (the executor reports the link, the chip and the cycle). The runtime
then sends one probe flit each way over every link, to find every dead link and not only those this
plan used, and replays the run (ISCA22: a fatal error replays the inference) on a new plan compiled
without them, whose detours the scheduler finds on its own. If a participant can no longer be reached at
all, its whole node is swapped for the rack's hot-spare node (ISCA22: N+1), whose chips take the
failed chips' places and inputs, and the collective is compiled again over the new set of chips.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from openlpu.errors import UserError
from openlpu.system.collectives import CollectivePlan, LinkFailure, compile_collective, run, spare_chips
from openlpu.system.netexec import MissingArrival, execute
from openlpu.system.paths import Path
from openlpu.system.schedule import NoRoute, Router, Scheduler, Transfer
from openlpu.system.topology import Topology


def parse_link(topo: Topology, name: str | int) -> int:
    """A link by id ("17") or by its chips ("3-5"; "3-5#1" for the second of parallel links)."""
    text = str(name).strip()
    if re.fullmatch(r"\d+", text):
        link = int(text)
        if link >= len(topo.ends):
            raise UserError(f"link {link} does not exist in {topo.name}: use 0 to {len(topo.ends) - 1} or A-B.")
        return link
    match = re.fullmatch(r"(\d+)-(\d+)(?:#(\d+))?", text)
    if not match:
        raise UserError(f"cannot read the link {text!r}: name it by id (17) or by its chips (3-5, 3-5#1).")
    a, b, nth = int(match[1]), int(match[2]), int(match[3] or 0)
    topo.check_chip(a)
    topo.check_chip(b)
    found = np.flatnonzero(np.all(topo.ends == sorted((a, b)), axis=1))
    if nth >= len(found):
        raise UserError(f"chips {a} and {b} are joined by {len(found)} link(s) in {topo.name}: "
                        f"{'pick another pair' if not len(found) else f'use #0 to #{len(found) - 1}'}.")
    return int(found[nth])


def links_of(topo: Topology, chip: int) -> list[int]:
    """Every link of a chip: failing them all takes the chip off the network."""
    topo.check_chip(chip)
    return np.flatnonzero(np.any(topo.ends == chip, axis=1)).tolist()


@dataclass(frozen=True, eq=False)
class FaultRun:
    outputs: list[np.ndarray]  # in the order of the original participants
    plan: CollectivePlan  # the plan that succeeded
    first_plan: CollectivePlan  # the plan compiled before anything failed
    detections: list[MissingArrival] = field(default_factory=list)
    replanned: bool = False
    spare: dict[int, int] = field(default_factory=dict)  # failed chip -> spare chip that took its place

    def summary(self) -> dict[str, Any]:
        return {
            "detected": [{"link": d.link, "chip": d.chip, "cycle": d.cycle} for d in self.detections],
            "action": "spare node" if self.spare else "re-planned" if self.replanned else "unaffected",
            "spare": {str(k): v for k, v in self.spare.items()},
            "latency_cycles_before": self.first_plan.latency,
            "latency_cycles_after": self.plan.latency,
            "failed_links": list(self.plan.schedule.failed_links),
        }


def run_with_faults(op: str, topo: Topology, inputs: list[np.ndarray], nbytes: int, failed_links: list[int],
                    chips=None, root: int | None = None, dst: int | None = None) -> FaultRun:
    """Compile `op` for a healthy network, run it with `failed_links` dead, detect, recover, replay."""
    first = plan = compile_collective(op, topo, nbytes, chips, root, dst)
    original = plan.groups.chips
    known: set[int] = set()
    detections: list[MissingArrival] = []
    spare: dict[int, int] = {}
    by_chip = dict(zip(original.tolist(), inputs, strict=True))
    for _ in range(len(failed_links) + 1):
        # Ranks follow chip ids, so a spare node can move a participant's rank: keep the data in the
        # original participants' order (the blocks of a reduce-scatter input, the rows of an all-gather).
        now = np.array([spare.get(c, c) for c in original.tolist()])
        rank = np.searchsorted(plan.groups.chips, now)  # original rank -> rank in this plan
        try:
            outputs = run(plan, [_reorder(op, by_chip[c], rank) for c in now[np.argsort(rank)].tolist()],
                          tuple(failed_links))
        except LinkFailure as failure:
            detections += failure.detections
            known |= {d.link for d in failure.detections} | {d.link for d in probe_links(topo, failed_links)}
            plan = _replan(op, topo, nbytes, plan, sorted(known), spare, by_chip, root, dst)
            continue
        ordered = [outputs[r][rank] if op == "allgather" else outputs[r] for r in rank.tolist()]
        return FaultRun(ordered, plan, first, detections, bool(known), spare)
    raise UserError(f"{op} still loses flits after {len(failed_links) + 1} attempts: repair links "
                    f"{sorted(known)} and run again.")


def probe_links(topo: Topology, failed_links: list[int]) -> list[MissingArrival]:
    """One flit each way over every link, all in the first slot: the links that lose theirs."""
    sched = Scheduler(topo)
    ends = topo.ends.tolist()
    for link, (a, b) in enumerate(ends):
        for src, dst in ((a, b), (b, a)):
            sched.force(Transfer(src, dst, topo.spec.flit_payload_bytes, name="probe"), Path((src, dst), (link,)),
                        [[1]])
    probes = sched.result()
    payloads = {t: np.zeros(topo.spec.flit_payload_bytes, np.uint8) for t in range(len(probes.transfers))}
    return execute(probes, payloads, failed_links).detections


def _reorder(op: str, data: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """A reduce-scatter input's blocks, moved to the ranks their participants now have."""
    if op != "reduce-scatter" or np.array_equal(rank, np.arange(len(rank))):
        return data
    blocks = data.reshape(len(rank), -1)
    moved = np.empty_like(blocks)
    moved[rank] = blocks
    return moved.reshape(data.shape)


def _replan(op: str, topo: Topology, nbytes: int, plan: CollectivePlan, failed: list[int], spare: dict[int, int],
            by_chip: dict[int, np.ndarray], root: int | None, dst: int | None) -> CollectivePlan:
    """Compile again without the failed links; swap nodes cut off from the others for spare nodes."""
    chips = plan.groups.chips
    try:
        return compile_collective(op, topo, nbytes, chips, root, dst, tuple(failed))
    except NoRoute:
        pass
    reach = Router(topo, tuple(failed)).distances_to(int(root if root is not None else chips[0]))
    fixed = [c for c in (root, dst) if c is not None]
    if any(reach[c] < 0 for c in fixed) or op == "send":
        raise UserError(f"the {op} needs chips {fixed}, and failed links {failed} cut them apart: repair the links.")
    lost = chips[reach[chips] < 0]
    per_node, per_rack = topo.spec.chips_per_node, topo.spec.chips_per_rack
    spares = spare_chips(topo).reshape(-1, per_node)  # one row per hot-spare node
    usable = np.all(reach[spares] >= 0, axis=1) & ~np.isin(spares, chips).any(axis=1)
    free_nodes = (spares[usable, 0] // per_node).tolist()
    stands_for = {now: original for original, now in spare.items()}
    for node in np.unique(lost // per_node).tolist():
        here = [n for n in free_nodes if n * per_node // per_rack == node * per_node // per_rack]
        if not here:
            raise UserError(f"node {node} is cut off and its rack has no reachable hot-spare node left: "
                            f"repair links {failed}.")
        free_nodes.remove(here[0])
        for c in chips[chips // per_node == node].tolist():
            substitute = here[0] * per_node + c % per_node
            by_chip[substitute] = by_chip[c]  # the host replays the failed chip's inputs on its substitute
            spare[stands_for.get(c, c)] = substitute
    stands_for = {now: original for original, now in spare.items()}
    new_chips = sorted(spare.get(stands_for.get(c, c), c) for c in chips.tolist())
    return compile_collective(op, topo, nbytes, new_chips, root, dst, tuple(failed))
