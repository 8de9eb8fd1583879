"""ResNet-50 v2 at batch 1 on one LPU, int8: every distinct unit shape of `zoo.resnet50_v2` compiled once as a
graph and the network composed from their scheduled cycles (ARCHITECTURE principle 5: reuse, not brute force).

Activations are NHWC images as [H*W, C] int8 tensors. A convolution's int32 result is requantised on the
VXM (to fp32, times a per-channel scale, plus a per-channel bias: batch norm folded in, ReLU, back to int8).
Units run one after another, each from its input in SRAM to its output in SRAM, so the composed latency is
the sum of the units' schedules (no overlap between units is counted). Weights are random: timing does not
depend on them.

The stem's 7x7 stride-2 convolution over 3 channels takes its im2col patches [112*112, 147] from the host
(im2col of 3 channels in whole column tiles would need 49 tiles a pixel), in 4 row chunks that fit the MXM's
accumulators, with its pixels in an order (parity_rows) that makes the stem's 3x3 stride-2 max-pool a max of
row runs instead of 28K single-pixel im2col copies.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from openlpu.chip.spec import get_chip
from openlpu.compiler.compile import compile as compile_graph
from openlpu.compiler.graph import Graph, Node
from openlpu.models.zoo import resnet50_v2


@dataclass(frozen=True)
class Unit:
    """One distinct piece of the network: what it is, how many times it runs, its input image."""

    name: str
    hw: int
    channels: int
    width: int = 0
    stride: int = 1
    kind: str = "middle"  # stem, pool, first, middle, last, head


@dataclass
class Timing:
    chip: str
    clock_hz: float
    parts: list[tuple[Unit, int, int]] = field(default_factory=list)  # (unit, count, scheduled cycles)
    matmul_cycles: int = 0  # of `cycles`, those in which some matmul (or convolution's) of a unit runs

    @property
    def cycles(self) -> int:
        return sum(count * cycles for _, count, cycles in self.parts)

    @property
    def latency_s(self) -> float:
        return self.cycles / self.clock_hz

    def breakdown(self) -> dict[str, float]:
        """Seconds per group of units (stem, each stage, head)."""
        out: dict[str, float] = {}
        for unit, count, cycles in self.parts:
            group = unit.name.split("_block")[0]
            out[group] = out.get(group, 0.0) + count * cycles / self.clock_hz
        return out


def units() -> list[tuple[Unit, int]]:
    """The network's distinct units and how many times each runs, read off the zoo's layer list."""
    layers = {layer.name: layer for layer in resnet50_v2().layers}
    conv1 = layers["conv1"]
    out: dict[Unit, int] = {Unit("stem_conv", conv1.out_shape[0], conv1.weight_shape[2], conv1.weight_shape[3],
                                 conv1.stride, "stem"): 1,
                            Unit("stem_pool", conv1.out_shape[0], conv1.weight_shape[3], 0, 2, "pool"): 1}
    for name, layer in layers.items():
        if not name.endswith(".conv1") or "_block" not in name:
            continue
        p = name[:-len("conv1")]
        _, _, channels, width = layer.weight_shape
        stride = layers[p + "conv2"].stride
        shortcut = layers.get(p + "shortcut")
        kind = "first" if shortcut is not None and shortcut.op == "conv" else "last" if stride > 1 else "middle"
        unit = Unit(name.split(".")[0], layer.out_shape[0], channels, width, stride, kind)
        key = next((u for u in out if (u.hw, u.channels, u.width, u.stride, u.kind) ==
                    (unit.hw, unit.channels, unit.width, unit.stride, unit.kind)), unit)
        out[key] = out.get(key, 0) + 1
    post = layers["post_bn"]
    out[Unit("head", post.out_shape[0], post.out_shape[2], layers["fc"].out_shape[0], 1, "head")] = 1
    return list(out.items())


def _requant(g: Graph, y: Node, rng, relu: bool = True) -> Node:
    """int32 -> int8: times a per-channel scale plus a bias (batch norm folded in), ReLU, cast."""
    c = y.cols
    z = g.add(g.mul(g.cast(y, "fp32"), g.constant(f"s{len(g.nodes)}", rng.uniform(0.01, 0.02, (1, c)), "fp32")),
              g.constant(f"b{len(g.nodes)}", rng.uniform(-1, 1, (1, c)), "fp32"))
    return g.cast(g.relu(z) if relu else z, "int8")


def _weights(rng, *shape) -> np.ndarray:
    return rng.integers(-3, 4, shape).astype(np.int8)


def parity_rows(hw: int) -> np.ndarray:
    """The stem's pixel order: per image row, the even columns then the odd ones (the host orders the
    patches so), which makes every window of a 3x3 stride-2 pool a run of consecutive rows."""
    cols = np.concatenate([np.arange(0, hw, 2), np.arange(1, hw, 2)])
    return (np.arange(hw)[:, None] * hw + cols[None, :]).ravel()


def parity_max_pool(g: Graph, x: Node, hw: int) -> Node:
    """3x3 stride-2 max-pool (padding 1) of an hw x hw image whose rows are in parity_rows order: the max
    over image rows 2i-1, 2i, 2i+1 (whole rows: runs of hw), then over columns 2j-1, 2j, 2j+1 (the odd
    half shifted by one, the even half). A window position off the image repeats one inside it, which leaves
    the max unchanged (Keras pads with zeros instead: the same unless a whole window is negative)."""
    half = hw // 2

    def image_rows(offset):
        return [min(max(2 * i + offset, 0), hw - 1) * hw + k for i in range(half) for k in range(hw)]

    rows = g.maximum(g.maximum(g.take_rows(x, image_rows(-1)), g.take_rows(x, image_rows(0))),
                     g.take_rows(x, image_rows(1)))  # [half * hw, C], each row still in parity order

    def columns(parity, shift):
        return [i * hw + parity * half + max(j + shift, 0) for i in range(half) for j in range(half)]

    even, odd, odd_before = (g.take_rows(rows, columns(p, s)) for p, s in ((0, 0), (1, 0), (1, -1)))
    return g.maximum(g.maximum(odd_before, even), odd)


def unit_graph(unit: Unit, rng) -> Graph:
    g = Graph()
    hw, c, w, s = unit.hw, unit.channels, unit.width, unit.stride
    if unit.kind == "stem":  # host im2col patches, one chunk of rows that fits the accumulators
        rows = hw * hw // 4
        x = g.input("x", (rows, 7 * 7 * c), "int8")
        g.output("y", _requant(g, g.matmul(x, g.constant("w", _weights(rng, 7 * 7 * c, w))), rng, relu=False))
        return g
    x = g.input("x", (hw * hw, c), "int8")
    if unit.kind == "pool":
        g.output("y", parity_max_pool(g, x, hw))
        return g
    if unit.kind == "head":  # post-activation, global average pool (a ones row on the MXM), fc, softmax
        a = _requant(g, g.cast(x, "int32"), rng)
        pooled = g.matmul_nt(g.constant("ones", np.ones((1, hw * hw), np.int8)), g.transpose(a))
        logits = g.matmul(_requant(g, pooled, rng, relu=False), g.constant("fc", _weights(rng, c, w)))
        g.output("probs", g.softmax(g.cast(logits, "fp32")))
        return g
    pre = _requant(g, g.cast(x, "int32"), rng)
    out_hw = (hw + 2 - 3) // s + 1
    if unit.kind == "first":
        shortcut = g.conv2d(pre, _weights(rng, 1, 1, c, 4 * w), (hw, hw))
    elif unit.kind == "last":
        shortcut = g.cast(g.max_pool2d(x, (hw, hw), 1, s), "int32")
    else:
        shortcut = g.cast(x, "int32")
    h1 = _requant(g, g.conv2d(pre, _weights(rng, 1, 1, c, w), (hw, hw)), rng)
    h2 = _requant(g, g.conv2d(h1, _weights(rng, 3, 3, w, w), (hw, hw), s, 1), rng)
    h3 = g.conv2d(h2, _weights(rng, 1, 1, w, 4 * w), (out_hw, out_hw))
    g.output("y", _requant(g, g.add(shortcut, h3), rng, relu=False))
    return g


def _covered(spans: list[tuple[int, int]]) -> int:
    """Cycles inside at least one of the spans."""
    total, reach = 0, None
    for start, end in sorted(spans):
        if reach is None or start >= reach:
            total, reach = total + end - start, end
        elif end > reach:
            total, reach = total + end - reach, end
    return total


CHUNKS = {"stem": 4}  # the stem conv's row chunks


def resnet50_timing(chip: str = "tsp-v1", progress=None) -> Timing:
    """Compile each distinct unit (without the verifier: seconds instead of minutes) and compose."""
    spec = get_chip(chip)
    rng = np.random.default_rng(0)
    timing = Timing(spec.name, spec.clock_hz)
    for unit, count in units():
        if progress:
            progress(unit)
        compiled = compile_graph(unit_graph(unit, rng), spec, check=False)
        runs = count * CHUNKS.get(unit.kind, 1)
        timing.parts.append((unit, runs, compiled.cycles_scheduled + spec.superlanes))
        timing.matmul_cycles += runs * _covered([(m.start, m.end) for m in compiled.matmuls])
    return timing
