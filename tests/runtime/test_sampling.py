import pytest
from hypothesis import given
from hypothesis import strategies as st

from openlpu.errors import UserError
from openlpu.runtime.sampling import SamplingParams, StopMatcher


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
