"""Sampling on the chip (models/sampling_graph.py) on made-up logits: the Gumbel-max draw follows
softmax(logits / T), top-p never leaves numpy's nucleus, the edge cases are greedy or the whole vocabulary,
and the compiled program gives its reference's tokens."""

import numpy as np
import pytest

from openlpu.chip.spec import get_chip
from openlpu.compiler.compile import compile
from openlpu.compiler.graph import Graph
from openlpu.models.lpu_graph import StepBuilder
from openlpu.models.sampling_graph import MAX_INV_TEMP, choose_next, sampling_inputs, sampling_mode
from openlpu.models.tiny_gguf import TINY_CONFIG

LANES = 320


def sampler_graph(rows: int, vocab: int, mode: str) -> Graph:
    """`next` chosen by `mode` from an input `logits` [rows, vocab] (made on the chip by a mul, as the head's are)."""
    g = Graph()
    b = StepBuilder(g, TINY_CONFIG, "fp16", rows, get_chip("tsp-v1"))
    logits = g.input("logits", (rows, vocab), "fp32")
    g.output("next", choose_next(b, g.mul(logits, 1.0), mode))
    return g


def draw(logits_row: np.ndarray, draws: int, temperature: float, top_p: float = 1.0, seed: int = 0) -> np.ndarray:
    """`draws` tokens for one row of logits, each graph row with its own noise, through the graph's reference."""
    mode = sampling_mode(temperature, top_p)
    logits = np.tile(np.asarray(logits_row, np.float32), (draws, 1))
    noise = np.random.default_rng(seed).gumbel(size=logits.shape)
    inputs = {"logits": logits, **sampling_inputs(mode, noise, temperature, top_p)}
    return sampler_graph(draws, logits.shape[1], mode).evaluate(inputs, lanes=LANES)["next"][:, 0]


def softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    z = np.asarray(logits, np.float64) / temperature
    e = np.exp(z - z.max())
    return e / e.sum()


def nucleus(probs: np.ndarray, top_p: float) -> set[int]:
    """numpy's nucleus: the most likely tokens, by a sort, until their probability reaches top_p."""
    order = np.argsort(-probs, kind="stable")
    before = np.cumsum(probs[order]) - probs[order]  # probability of the tokens ranked above each one
    return {int(t) for t in order[before < top_p]}


def chi_square(counts: np.ndarray, probs: np.ndarray) -> float:
    expected = counts.sum() * probs
    return float(((counts - expected) ** 2 / expected).sum())


def test_gumbel_draws_follow_the_softmax_at_the_temperature():
    """8,000 draws over 5 tokens: chi-square (4 degrees of freedom) below 18.5, its 0.1% tail; the same counts
    are far from the distribution at another temperature, so the check can fail."""
    logits = np.array([1.0, 2.0, 0.5, -1.0, 1.5])
    for t in (0.5, 1.0, 1.7):
        counts = np.bincount(draw(logits, 8000, t, seed=int(10 * t)), minlength=5)
        assert chi_square(counts, softmax(logits, t)) < 18.5
        assert chi_square(counts, softmax(logits, t * 1.5)) > 100


def test_top_p_never_leaves_the_nucleus_and_reaches_all_of_it():
    """Random rows of 40 logits at several top_p: every draw lies in numpy's sort-based nucleus, and over
    3,000 draws each nucleus token of probability above 0.2% is drawn (the cut is not tighter either)."""
    rng = np.random.default_rng(5)
    for top_p, t in ((0.5, 1.0), (0.9, 0.7), (0.97, 1.3)):
        logits = rng.standard_normal(40) * 2
        probs = softmax(logits.astype(np.float32), t)
        kept = nucleus(probs, top_p)
        drawn = set(draw(logits, 3000, t, top_p, seed=int(100 * top_p)).tolist())
        assert drawn <= kept
        assert {k for k in kept if probs[k] > 0.002} <= drawn
        assert len(kept) < 40  # the cut removes something


def test_the_edge_cases_are_greedy_or_the_whole_vocabulary():
    logits = np.array([0.3, 2.0, -0.5, 2.0, 1.0, 0.0])
    assert set(draw(logits, 200, 1.0, top_p=1e-6).tolist()) == {1, 3}  # only the tied best two
    assert set(draw(logits, 200, 1e-9).tolist()) == {1, 3}  # 1 / T is capped: finite, the best two
    assert MAX_INV_TEMP * np.abs(logits).max() < 1e30
    assert set(draw(logits, 2000, 1.0, top_p=1.0).tolist()) == set(range(6))
    nucleus_at_1 = sampler_graph(2000, 6, "nucleus")  # the nucleus program at p = 1 keeps every token too
    inputs = {"logits": np.tile(logits.astype(np.float32), (2000, 1)),
              **sampling_inputs("nucleus", np.random.default_rng(1).gumbel(size=(2000, 6)), 1.0, 1.0)}
    assert set(nucleus_at_1.evaluate(inputs, lanes=LANES)["next"][:, 0].tolist()) == set(range(6))
    assert sampling_mode(0.0, 0.5) == "greedy" and sampling_inputs("greedy", np.zeros((1, 6)), 0.0, 1.0) == {}
    greedy = sampler_graph(1, 6, "greedy")
    assert {n.name for n in greedy.nodes if n.op == "input"} == {"logits"}
    assert greedy.evaluate({"logits": logits[None].astype(np.float32)}, lanes=LANES)["next"][0, 0] == 1


@pytest.mark.parametrize("mode", ["sample", "nucleus"])
def test_the_compiled_sampler_gives_its_reference_tokens(mode):
    """64 rows over 700 logits (three column tiles, the last partial): the fast executor's tokens are the
    reference's, bit for bit."""
    rng = np.random.default_rng(2)
    g = sampler_graph(64, 700, mode)
    inputs = {"logits": (rng.standard_normal((64, 700)) * 3).astype(np.float32),
              **sampling_inputs(mode, rng.gumbel(size=(64, 700)), 0.8, 0.9)}
    ours = compile(g, "tsp-v1", check=False).run(inputs, executor="fast").outputs["next"]
    reference = g.evaluate(inputs, lanes=LANES)["next"]
    assert np.array_equal(ours, reference)
    assert len(set(reference[:, 0].tolist())) > 10  # sampled, not one argmax
