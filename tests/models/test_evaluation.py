import re

import numpy as np
import pytest

from openlpu.errors import UserError
from openlpu.models.evaluation import (
    eval_text,
    eval_token_ids,
    next_token_agreement,
    perplexity,
    score,
    teacher_forced_logits,
)
from openlpu.models.reference import LlamaReference


def test_eval_text_is_a_few_hundred_words_of_plain_prose():
    text = eval_text()
    words = re.findall(r"[A-Za-z']+", text)
    assert 300 <= len(words) <= 800
    assert text.isascii() and "<|" not in text


def test_perplexity_closed_forms():
    vocab, n = 50, 7
    targets = np.arange(n)
    assert perplexity(np.zeros((n, vocab)), targets) == pytest.approx(vocab)  # uniform: ppl = vocab
    logits = np.zeros((n, vocab))
    logits[np.arange(n), targets] = 3.0  # p(target) = e^3 / (e^3 + 49)
    assert perplexity(logits, targets) == pytest.approx((np.e**3 + vocab - 1) / np.e**3)


def test_agreement_counts_matching_argmaxes():
    ref = np.eye(4, 6)  # argmaxes 0, 1, 2, 3
    other = ref.copy()
    other[1, 5] = 2.0  # row 1 now prefers token 5
    assert next_token_agreement(other, ref) == 0.75
    assert next_token_agreement(ref, ref) == 1.0


def test_teacher_forced_logits_predict_each_next_token(tiny):
    model = LlamaReference(tiny.config, tiny.weights)
    ids = eval_token_ids(tiny.tokenizer, 30)
    logits = teacher_forced_logits(model, ids)
    assert logits.shape == (29, tiny.config.vocab)
    model.reset()
    np.testing.assert_allclose(logits[10], model.forward(ids[:11]), atol=1e-4)
    s = score(logits, ids, logits)
    assert s.n_predictions == 29 and s.agreement == 1.0
    assert s.perplexity == pytest.approx(perplexity(logits, np.asarray(ids[1:])))
    with pytest.raises(UserError, match="at least 2 tokens"):
        teacher_forced_logits(model, ids[:1])


def test_smollm2_reads_english_prose_with_low_perplexity(smollm2, smollm2_reference):
    ids = eval_token_ids(smollm2.tokenizer)
    s = score(teacher_forced_logits(smollm2_reference, ids), ids)
    assert s.n_predictions == len(ids) - 1 > 400
    # A broken model is far off: uniform guessing gives 49152, and rotating RoPE pairs in the wrong
    # layout (rotate-half on the GGUF's interleaved rows) gives about 200.
    assert s.perplexity < 40
