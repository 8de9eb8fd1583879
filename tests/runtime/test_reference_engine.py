from dataclasses import dataclass

import pytest

from openlpu.errors import UserError
from openlpu.runtime.engine import FINISH_LENGTH, FINISH_STOP
from openlpu.runtime.lpu_engine import LpuEngine
from openlpu.runtime.reference_engine import GRAPHS_KEPT, ReferenceEngine
from openlpu.runtime.sampling import SamplingParams

GREEDY = SamplingParams(temperature=0.0)


@dataclass(frozen=True)
class RecordingTiming:
    """Step times that give away their argument: prefill 1000 + P, decode L."""

    kind: str = "test"
    source: str = "the arguments"

    def prefill_seconds(self, prompt_tokens, sampling="greedy"):
        return 1000.0 + prompt_tokens

    def decode_seconds(self, context, sampling="greedy"):
        return float(context)


@pytest.fixture(scope="module")
def engine(tiny):
    return ReferenceEngine(tiny, RecordingTiming(), concurrency=2, cache_bucket=16)


@pytest.fixture(scope="module")
def prompt(engine):
    return engine.prompt_ids([{"role": "user", "content": "Tell me about the harbour."}])


def test_greedy_tokens_and_text_are_the_lpu_engines_over_several_cache_buckets(tiny, engine, prompt):
    events = list(engine.generate(0, prompt, SamplingParams(temperature=0.0, max_tokens=40)))
    lpu = LpuEngine(tiny, "int8", executor="reference", cache_bucket=16, prefill_tokens=1)  # as the fixture
    expected = lpu.generate(prompt, 40, tiny.tokenizer.stop_ids).token_ids
    assert len(prompt) + len(expected) > 16 * (GRAPHS_KEPT + 1)  # older step graphs were let go and rebuilt
    assert [e.token_id for e in events] == expected
    assert "".join(e.text for e in events) == tiny.tokenizer.decode(expected, skip_special=True)
    assert [e.index for e in events] == list(range(len(expected)))
    last = FINISH_STOP if expected[-1] in tiny.tokenizer.stop_ids else FINISH_LENGTH
    assert [e.finish_reason for e in events] == [None] * (len(expected) - 1) + [last]


def test_each_token_carries_its_step_lpu_time_and_its_host_time(engine, prompt):
    events = list(engine.generate(1, prompt, SamplingParams(temperature=0.0, max_tokens=6)))
    p = len(prompt)
    assert [e.lpu_s for e in events] == [1000.0 + p] + [float(p + i) for i in range(1, len(events))]
    assert all(e.host_s > 0 for e in events)


def test_sequences_on_two_slots_do_not_share_a_cache(engine, prompt):
    other = engine.prompt_ids([{"role": "user", "content": "Something else entirely"}])
    alone = [e.token_id for e in engine.generate(0, prompt, SamplingParams(temperature=0.0, max_tokens=15))]
    a = engine.generate(0, prompt, SamplingParams(temperature=0.0, max_tokens=15))
    b = engine.generate(1, other, SamplingParams(temperature=0.0, max_tokens=15))
    interleaved = []
    for x, _ in zip(a, b, strict=False):
        interleaved.append(x.token_id)
    interleaved += [x.token_id for x in a]
    assert interleaved == alone


def test_a_seed_repeats_a_sampled_completion(engine, prompt):
    def run(seed):
        return [e.token_id for e in engine.generate(0, prompt, SamplingParams(temperature=1.0, seed=seed,
                                                                               max_tokens=20))]

    assert run(11) == run(11)
    assert run(11) != run(12)


def test_a_stop_string_ends_the_answer_before_it(engine, prompt):
    text = "".join(e.text for e in engine.generate(0, prompt, SamplingParams(temperature=0.0, max_tokens=30)))
    stop = text[6:9]
    events = list(engine.generate(0, prompt, SamplingParams(temperature=0.0, max_tokens=30, stop=(stop,))))
    assert "".join(e.text for e in events) == text[: text.find(stop)]
    assert events[-1].finish_reason == FINISH_STOP


def test_max_tokens_gives_exactly_that_many_tokens_unless_a_stop_token_comes_first(tiny, engine, prompt):
    events = list(engine.generate(0, prompt, SamplingParams(temperature=0.0, max_tokens=3)))
    assert len(events) == 3 and events[-1].finish_reason == FINISH_LENGTH


def test_a_prompt_that_leaves_no_room_is_refused(engine, prompt):
    with pytest.raises(UserError, match="exceed the context length of 256"):
        engine.generate(0, [1] * 256, GREEDY)
    with pytest.raises(UserError, match="plus 300 new tokens"):
        engine.generate(0, prompt, SamplingParams(max_tokens=300))
    with pytest.raises(UserError, match="slot 2 does not exist"):
        engine.generate(2, prompt, GREEDY)


def test_served_names_carry_the_context_length(engine):
    assert engine.model_id == "tiny-256"
    assert "tiny" in engine.aliases
