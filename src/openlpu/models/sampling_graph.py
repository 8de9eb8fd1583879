"""Choosing the next token on the chip: greedy, a sample at a temperature, or a sample from the top-p nucleus.

The step graph's `next` [P, 1] int32 is each row's token, chosen by one of `SAMPLING`:

- `greedy`: argmax(logits), the first on ties (`Graph.argmax`).
- `sample`: the Gumbel-max trick. argmax(z + g), with z = logits / T and g_j = -log(-log u_j) for u_j uniform
  in (0, 1), is an exact sample of softmax(z). The VXM has no log (its float functions are exp, tanh and
  rsqrt), so the host draws g, input `gumbel` [P, vocab] fp32, from the request's seeded generator as it
  draws the embeddings' rows; the chip multiplies the logits by `inv_temp` (1 / T, an input [1, 1]: one program
  serves every temperature, and the VXM has no divide), adds g and takes the argmax.
- `nucleus`: the same argmax over the top-p nucleus only, which the chip finds itself. With d = z - max(z)
  (<= 0) and e = exp(d), the kept tokens are those with d >= theta, theta = -n * DELTA for the smallest integer
  n whose kept mass sum(e_j, d_j >= theta) reaches top_p * sum(e) (`top_p` an input [1, 1]). n is found bit
  by bit in ROUNDS rounds, each a comparison over the vocabulary and a row sum (`_mass`: column halves added
  on the VXM, then the MXM); theta reaches -64, below ln((1 - top_p) / vocab) for any fp32 top_p < 1 and
  vocabulary below 2^40, where the tokens left out hold less than 1 - top_p of the mass (sum(e) >= 1). Every
  step is exact or a deterministic fp32 rounding, so the reference and the chip agree bit for bit. The kept
  set is the nucleus (the smallest set of most likely tokens whose probability reaches top_p, ties kept
  together) plus any token less than DELTA below its least likely member in z (the threshold moves on a
  grid); the others get -inf added before the Gumbel argmax.

Comparisons use no compare op (the VXM has none): a - b is 0 only when a == b and has an exact sign, so
times 2^200 (2^100 twice: 2^200 is no fp32) a nonzero difference, at least 2^-149, is at least 2^51 in size;
clamped, it is exactly 0 or 1, or drops a token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from openlpu.compiler.graph import Graph, Node
from openlpu.errors import UserError

if TYPE_CHECKING:
    from openlpu.models.lpu_graph import StepBuilder

SAMPLING = ("greedy", "sample", "nucleus")
DELTA = 2.0**-14  # the nucleus threshold's grid, in scaled logits
ROUNDS = 20  # bits of n: thresholds down to -(2^20 - 1) * DELTA, about -64
FOLDED_TILES = 20  # a mass is summed on the MXM once folded to this many column tiles
MAX_INV_TEMP = 1e6  # 1 / T above it is sent as this: z stays finite for any logits below 1e32
_BIG = 2.0**100  # applied twice (2^200 is no fp32)


def sampling_mode(temperature: float, top_p: float) -> str:
    """The step program that draws with these parameters."""
    if temperature == 0:
        return "greedy"
    return "sample" if top_p >= 1 else "nucleus"


def sampling_inputs(mode: str, gumbel: np.ndarray, temperature: float, top_p: float) -> dict[str, np.ndarray]:
    """The step's sampling inputs: `gumbel` [P, vocab] (zero rows for padding), 1 / T and top_p."""
    if mode == "greedy":
        return {}
    inputs = {"gumbel": gumbel.astype(np.float32),
              "inv_temp": np.array([[min(1 / temperature, MAX_INV_TEMP)]], np.float32)}
    if mode == "nucleus":
        inputs["top_p"] = np.array([[top_p]], np.float32)
    return inputs


def choose_next(b: StepBuilder, logits: Node, mode: str) -> Node:
    """`next` [P, 1] int32 from `logits` [P, vocab] fp32 by `mode` (module doc); adds the mode's inputs."""
    g = b.g
    if mode not in SAMPLING:
        raise UserError(f"unknown sampling mode {mode!r}: use one of {', '.join(SAMPLING)}.")
    if mode == "greedy":
        return g.argmax(logits, name="next")
    gumbel = g.input("gumbel", logits.shape, "fp32")
    z = g.mul(logits, g.row_max(g.input("inv_temp", (1, 1), "fp32")))  # row_max: the scalar in every lane
    scores = g.add(z, gumbel)
    if mode == "nucleus":
        d_big = g.mul(g.sub(z, g.row_max(z)), _BIG)  # d * 2^100: d_big - theta_big is (d - theta) * 2^100
        theta_big = _nucleus_threshold(b, d_big, g.row_max(g.input("top_p", (1, 1), "fp32")))
        scores = g.add(scores, g.minimum(_times_big(g, d_big, theta_big), 0.0))  # -inf-ish below theta
    return g.argmax(scores, name="next")


def _nucleus_threshold(b: StepBuilder, d_big: Node, top_p: Node) -> Node:
    """theta * 2^100 [P, 1], theta = -n * DELTA for the smallest n whose tokens d >= theta hold top_p of the
    mass; found bit by bit, each round moving theta down by 2^bit steps where the trial keeps too little."""
    g = b.g
    e = g.exp(g.mul(d_big, 1 / _BIG))
    target = g.mul(_mass(b, e), top_p)
    step = DELTA * _BIG
    theta_big = None  # -n * step for the n known so far
    for bit in reversed(range(ROUNDS)):
        offset = -(2**bit - 1) * step
        trial = offset if theta_big is None else g.add(theta_big, offset)
        # 1 + (d - trial) * 2^200 is at least 1 where d >= trial and below -2^51 elsewhere; e <= 1
        kept = g.minimum(e, g.relu(g.add(_times_big(g, d_big, trial), 1.0)))
        # the kept mass is at least 1 (the most likely token) and the target positive, so their difference
        # is 0 or at least 2^-25 in size: times 2^200 it is 0 or beyond 2^bit steps
        short = _times_big(g, g.mul(target, _BIG), g.mul(_mass(b, kept), _BIG))
        down = g.relu(g.minimum(short, 2**bit * step))
        theta_big = g.neg(down) if theta_big is None else g.sub(theta_big, down)
    return theta_big


def _times_big(g: Graph, a_big: Node, b_big: Node | float) -> Node:
    """(a_big - b_big) * 2^100: with both scaled by 2^100, (a - b) * 2^200 (module doc)."""
    return g.mul(g.sub(a_big, b_big), _BIG)


def _mass(b: StepBuilder, x: Node) -> Node:
    """Row sums [P, 1] of x (fp32, 0 <= x <= 1). Column halves of whole tiles are added on the VXM (slices on
    tile edges) down to FOLDED_TILES, the tiles past the last pair joined after them, so that the MXM's row
    sum installs a few weight tiles, not one per tile of the vocabulary; its fp16 parts (about 22 bits) are
    summed in one pass, stacked as rows."""
    g, lanes, rows = b.g, b.lanes, x.rows
    rest = []
    while x.cols > FOLDED_TILES * lanes:
        half = x.cols // lanes // 2 * lanes
        if x.cols > 2 * half:
            rest.insert(0, g.slice(x, cols=(2 * half, x.cols)))  # only the first can end in a partial tile
        x = g.add(g.slice(x, cols=(0, half)), g.slice(x, cols=(half, 2 * half)))
    if rest:
        x = g.concat([x, *rest], axis=1)
    hi = g.cast(x, "fp16")
    sums = g.row_sum(g.concat([hi, g.cast(g.sub(x, g.cast(hi, "fp32")), "fp16")], axis=0))
    return g.add(g.slice(sums, rows=(0, rows)), g.slice(sums, rows=(rows, 2 * rows)))
