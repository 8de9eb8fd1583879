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
  by bit in ROUNDS rounds (n < 2^23, so theta reaches -128, below which exp is 0 in fp32), each a
  comparison over the vocabulary and a row sum on the MXM; every step is exact or one deterministic fp32
  rounding, so the reference and the chip agree bit for bit. The kept set is the nucleus (the smallest set
  of most likely tokens whose probability reaches top_p, ties kept together) plus any token less than DELTA
  below its least likely member in z: the threshold moves on a grid of DELTA. The others get -inf added
  before the Gumbel argmax.

Comparisons use no compare op (the VXM has none): a - b is 0 only when a == b and has an exact sign, and
times 2^200 any nonzero difference (at least 2^-149) is at least 2^51 in size, so min(max(.., -1), 0) + 1 is
exactly 1 where a >= b and 0 elsewhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from openlpu.compiler.graph import Graph, Node
from openlpu.errors import UserError

if TYPE_CHECKING:
    from openlpu.models.lpu_graph import StepBuilder

SAMPLING = ("greedy", "sample", "nucleus")
DELTA = 2.0**-16  # the nucleus threshold's grid, in scaled logits
ROUNDS = 23  # bits of n: thresholds down to -(2^23 - 1) * DELTA, about -128
MAX_INV_TEMP = 1e6  # 1 / T above it is sent as this: z stays finite for any logits below 1e32
_HALF_BIG = 2.0**100  # applied twice (2^200 is no fp32)


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
        d = g.sub(z, g.row_max(z))
        theta = _nucleus_threshold(b, d, g.row_max(g.input("top_p", (1, 1), "fp32")))
        scores = g.add(scores, _minus_inf_below(g, d, theta))
    return g.argmax(scores, name="next")


def _nucleus_threshold(b: StepBuilder, d: Node, top_p: Node) -> Node:
    """theta [P, 1]: -n * DELTA for the smallest n whose tokens d >= theta hold top_p of the mass."""
    g = b.g
    e = g.exp(d)
    target = g.mul(b.row_sum_small(e), top_p)
    n = None  # how many grid points are known to keep too little mass
    for bit in reversed(range(ROUNDS)):
        trial = float(2**bit - 1) if n is None else g.add(n, float(2**bit - 1))
        theta = g.mul(trial, -DELTA) if isinstance(trial, Node) else -trial * DELTA
        kept = g.maximum(g.add(e, _minus_inf_below(g, d, theta)), 0.0)  # e where d >= theta, else 0
        short = g.sub(1.0, _at_least(g, b.row_sum_small(kept), target))
        step = g.mul(short, float(2**bit))
        n = step if n is None else g.add(n, step)
    return g.mul(n, -DELTA)


def _at_least(g: Graph, a: Node, b: Node) -> Node:
    """1.0 where a >= b, else 0.0 (exact; module doc)."""
    big = g.mul(g.mul(g.sub(a, b), _HALF_BIG), _HALF_BIG)
    return g.add(g.minimum(g.maximum(big, -1.0), 0.0), 1.0)


def _minus_inf_below(g: Graph, d: Node, theta: Node | float) -> Node:
    """0 where d >= theta, else at most -2^51 (-inf for far below): added, it drops a token from an argmax."""
    return g.minimum(g.mul(g.mul(g.sub(d, theta), _HALF_BIG), _HALF_BIG), 0.0)
