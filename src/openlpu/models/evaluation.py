"""Answer quality under a numerics mode: teacher-forced perplexity and next-token agreement.

Teacher forcing feeds the true text and scores the model's prediction of each next token: perplexity
is exp(mean negative log-likelihood of the true next tokens); agreement is the fraction of positions
where a model's most likely next token equals the fp32 reference's. The text is fixed and ships with
the package (`openlpu/data/eval_text.txt`, prose written for this project).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files

import numpy as np

from openlpu.errors import UserError
from openlpu.models.reference import LlamaReference
from openlpu.models.tokenizer import Tokenizer


def eval_text() -> str:
    return files("openlpu").joinpath("data/eval_text.txt").read_text(encoding="utf-8")


def eval_token_ids(tokenizer: Tokenizer, max_tokens: int | None = None) -> list[int]:
    """The evaluation text's ids (BOS first if the model wants it), cut to max_tokens if given."""
    ids = tokenizer.bos_prefix + tokenizer.encode(eval_text())
    return ids if max_tokens is None else ids[:max_tokens]


def teacher_forced_logits(model: LlamaReference, ids: list[int]) -> np.ndarray:
    """Logits (len(ids) - 1, vocab): row i predicts ids[i + 1] having seen ids[: i + 1]."""
    if len(ids) < 2:
        raise UserError(f"teacher forcing needs at least 2 tokens, got {len(ids)}; use a longer text")
    model.reset()
    return model.forward(ids[:-1], all_logits=True)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def perplexity(logits: np.ndarray, targets: np.ndarray) -> float:
    """exp of the mean negative log-probability that logits (n, vocab) give the targets (n,)."""
    nll = -log_softmax(logits)[np.arange(len(targets)), targets]
    return float(np.exp(nll.mean()))


def next_token_agreement(logits: np.ndarray, reference_logits: np.ndarray) -> float:
    """Fraction of rows whose argmax equals the reference's argmax."""
    return float(np.mean(logits.argmax(axis=-1) == reference_logits.argmax(axis=-1)))


@dataclass(frozen=True)
class TeacherForcedScore:
    n_predictions: int
    perplexity: float
    agreement: float | None  # None when scored without a reference


def score(logits: np.ndarray, ids: list[int], reference_logits: np.ndarray | None = None) -> TeacherForcedScore:
    """Score teacher-forced logits of `ids` (as from `teacher_forced_logits`), optionally against a reference."""
    targets = np.asarray(ids[1:])
    return TeacherForcedScore(
        n_predictions=len(targets),
        perplexity=perplexity(logits, targets),
        agreement=None if reference_logits is None else next_token_agreement(logits, reference_logits),
    )
