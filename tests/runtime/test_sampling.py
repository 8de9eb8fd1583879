import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from openlpu.errors import UserError
from openlpu.runtime.sampling import Sampler, SamplingParams, StopMatcher, nucleus, token_probabilities

PROBS = np.array([0.5, 0.3, 0.15, 0.05])


@pytest.mark.parametrize("kwargs, named", [
    ({"temperature": -0.1}, "temperature -0.1"),
    ({"temperature": 2.5}, "temperature 2.5"),
    ({"temperature": "hot"}, "temperature 'hot'"),
    ({"top_p": 0.0}, "top_p 0.0"),
    ({"top_p": 1.5}, "top_p 1.5"),
    ({"max_tokens": 0}, "max_tokens 0"),
    ({"seed": 1.5}, "seed 1.5"),
    ({"stop": ("a", "b", "c", "d", "e")}, "stop ['a', 'b', 'c', 'd', 'e']"),
    ({"stop": ("",)}, "stop ['']"),
])
def test_bad_values_are_refused_in_one_sentence_naming_them(kwargs, named):
    with pytest.raises(UserError) as err:
        SamplingParams(**kwargs)
    assert str(err.value).startswith(named) and str(err.value).count(". ") == 0


def test_temperature_zero_is_argmax_and_takes_the_first_of_equal_logits():
    sampler = Sampler(SamplingParams(temperature=0.0))
    assert sampler.choose(np.array([0.1, 3.0, -2.0, 3.0])) == 1


def test_probabilities_are_the_softmax_of_logits_over_temperature():
    logits = np.array([1.0, 2.0, 0.5, -1.0])
    for t in (0.5, 1.0, 2.0):
        expected = np.exp(logits / t) / np.exp(logits / t).sum()
        np.testing.assert_allclose(token_probabilities(logits, t), expected, rtol=1e-12)


def test_nucleus_keeps_the_most_likely_tokens_until_they_reach_top_p():
    np.testing.assert_allclose(nucleus(PROBS, 0.8), [0.625, 0.375, 0, 0])  # 0.5 + 0.3 reaches 0.8
    np.testing.assert_allclose(nucleus(PROBS, 0.81), [0.5, 0.3, 0.15, 0] / np.float64(0.95))
    np.testing.assert_allclose(nucleus(PROBS, 1e-6), [1, 0, 0, 0])
    np.testing.assert_array_equal(nucleus(PROBS, 1.0), PROBS)


def test_draws_follow_the_distribution_and_never_leave_the_nucleus():
    logits = np.log(PROBS)
    plain = Sampler(SamplingParams(temperature=1.0, seed=3))
    counts = np.bincount([plain.choose(logits) for _ in range(20000)], minlength=4) / 20000
    np.testing.assert_allclose(counts, PROBS, atol=0.015)
    cut = Sampler(SamplingParams(temperature=1.0, top_p=0.75, seed=3))  # keeps 0.5 and 0.3
    counts = np.bincount([cut.choose(logits) for _ in range(5000)], minlength=4) / 5000
    assert counts[2] == counts[3] == 0
    np.testing.assert_allclose(counts[:2], [0.625, 0.375], atol=0.03)


def test_the_same_seed_gives_the_same_tokens():
    logits = np.linspace(0, 1, 50)

    def draws(seed):
        sampler = Sampler(SamplingParams(seed=seed))
        return [sampler.choose(logits) for _ in range(30)]

    assert draws(5) == draws(5)
    assert draws(5) != draws(6)


def test_stop_text_is_held_until_decided():
    m = StopMatcher(("END",))
    assert m.feed("abc E") == ("abc ", False)  # "E" may start END
    assert m.feed("N") == ("", False)
    assert m.feed("D and more") == ("", True)
    m = StopMatcher(("END",))
    assert m.feed("xE") == ("x", False)
    assert m.feed("x") == ("Ex", False)  # not END after all
    assert m.feed("EN") == ("", False)
    assert m.flush() == "EN"


@given(text=st.text(alphabet="abc", max_size=30), cuts=st.lists(st.integers(0, 30), max_size=6),
       stops=st.lists(st.text(alphabet="abc", min_size=1, max_size=3), max_size=4))
def test_streamed_text_is_the_text_up_to_the_first_stop(text, cuts, stops):
    bounds = sorted({0, len(text), *(c for c in cuts if c <= len(text))})
    matcher, out, stopped = StopMatcher(tuple(stops)), "", False
    for a, b in zip(bounds, bounds[1:], strict=False):
        piece, stopped = matcher.feed(text[a:b])
        out += piece
        if stopped:
            break
    if not stopped:
        out += matcher.flush()
    hits = [(text.find(s) + len(s), text.find(s)) for s in stops if s in text]  # the first to be complete wins
    assert out == (text[: min(hits)[1]] if hits else text)
    assert stopped == bool(hits) or len(bounds) == 1
