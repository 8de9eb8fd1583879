"""`openlpu generate`, `chat`, `eval` and `demo` as the user runs them, on the tiny GGUF (and SmolLM2 for Paris):
the tokens are the engine's, the timing is the compiled programs', bad input is one sentence."""

import json
from dataclasses import replace

import numpy as np
import pytest

from openlpu.chip.spec import get_chip
from openlpu.cli import main
from openlpu.commands import chat
from openlpu.errors import UserError
from openlpu.models.evaluation import eval_token_ids, score, teacher_forced_logits
from openlpu.models.lpu_graph import build_step_graph
from openlpu.models.reference import LlamaReference
from openlpu.runtime.lpu_engine import LpuEngine
from openlpu.runtime.sampling import SamplingParams

QUESTION = "Once upon a time"
BUCKET = ["--cache-bucket", "64", "--prefill-tokens", "16"]


def generate_json(cli, tiny, *extra) -> dict:
    return json.loads(cli("generate", "--model", str(tiny.path), "--prompt", QUESTION, *BUCKET, "--json", *extra))


def reference_engine(tiny, numerics="int8") -> LpuEngine:
    return LpuEngine(tiny, numerics, executor="reference", cache_bucket=64, prefill_tokens=16)


def prompt_ids(tiny, *turns: str) -> list[int]:
    roles = ["user", "assistant"] * len(turns)
    return tiny.tokenizer.encode_chat([{"role": r, "content": t} for r, t in zip(roles, turns, strict=False)])


def test_generate_runs_the_compiled_steps_and_reports_their_timing(cli, tiny):
    d = generate_json(cli, tiny, "--max-tokens", "6")
    tok = tiny.tokenizer
    expected = reference_engine(tiny).generate(prompt_ids(tiny, QUESTION), 6, tok.stop_ids)
    assert d["token_ids"] == expected.token_ids
    assert d["text"] == expected.text == tok.decode([t for t in d["token_ids"] if t not in tok.stop_ids], True)
    assert d["prompt_tokens"] == len(prompt_ids(tiny, QUESTION)) and d["completion_tokens"] == len(d["token_ids"])
    assert (d["chips"], d["numerics"], d["executor"]) == (1, "int8", "fast")
    assert d["ttft_s"] == pytest.approx(d["prefill_cycles"] / 900e6)
    assert d["tokens_per_s"] == pytest.approx(900e6 / d["cycles_per_token"])
    assert d["host_s"] >= d["compile_s"] > 0


def test_seeded_sampling_repeats_and_equals_the_reference(cli, tiny):
    sampled = generate_json(cli, tiny, "--max-tokens", "5", "--temperature", "1.5", "--seed", "7")
    params = SamplingParams(temperature=1.5, seed=7)
    engine = reference_engine(tiny)
    expected = engine.generate(prompt_ids(tiny, QUESTION), 5, tiny.tokenizer.stop_ids, params)
    assert sampled["token_ids"] == expected.token_ids
    other = engine.generate(prompt_ids(tiny, QUESTION), 5, tiny.tokenizer.stop_ids, replace(params, seed=8))
    assert other.token_ids != expected.token_ids
    greedy = engine.generate(prompt_ids(tiny, QUESTION), 5, tiny.tokenizer.stop_ids)
    assert greedy.token_ids != expected.token_ids


def test_a_stop_string_cuts_the_answer(cli, tiny):
    """The tiny model's answers are random bytes that often end early: take the first prompt whose greedy
    answer has four characters, and stop at its second and third."""
    for prompt in ("Once upon a time", "Tell me a story", "Hello there", "Why is the sky blue?"):
        free = json.loads(cli("generate", "--model", str(tiny.path), "--prompt", prompt, *BUCKET, "--json",
                              "--max-tokens", "12", "--executor", "reference"))
        if len(free["text"]) >= 4:
            break
    text = free["text"]
    stop = text[1:3]
    cut = json.loads(cli("generate", "--model", str(tiny.path), "--prompt", prompt, *BUCKET, "--json",
                         "--max-tokens", "12", "--executor", "reference", "--stop", stop))
    assert cut["text"] == text[:text.index(stop)]
    assert cut["finish_reason"] == "stop" and len(cut["token_ids"]) < len(free["token_ids"])


@pytest.mark.parametrize("argv, words", [
    (["--chips", "4"], "has 2 layers: it splits into 1 to 2 pipeline stages, not 4"),
    (["--temperature", "3"], "temperature 3.0 is out of range"),
    (["--max-tokens", "0"], "max_tokens 0 must be a positive integer"),
    (["--model", "gpt-9"], "unknown model 'gpt-9'; use one of smollm2-135m"),
    (["--prompt", "word " * 300], "exceed the context length of 256"),
])
def test_bad_input_is_one_sentence(tiny, capsys, argv, words):
    argv = ["generate", "--model", str(tiny.path), "--prompt", QUESTION, "--executor", "reference", *argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1 and "Traceback" not in err


def test_a_model_bigger_than_the_chip_is_refused_before_compiling(tiny):
    small = replace(get_chip("tsp-mini"), name="tsp-micro", mem_addresses=16)
    graph = build_step_graph(tiny.config, tiny.weights, "fp16", 1, 16, small)
    assert small.sram_bytes < sum(n.value.nbytes for n in graph.nodes if n.op == "constant")
    with pytest.raises(UserError, match=r"at fp16 has .* MiB of weights and the stage of layers 0..1 on one "
                                        r"tsp-micro holds .* MiB, more than its .* MiB of SRAM: .* or --numerics int8"):
        LpuEngine(tiny, "fp16", chip=small).step(1, 16)


def test_chat_keeps_the_conversation_and_forgets_on_reset(tiny):
    engine, args, messages = reference_engine(tiny), chat_args(tiny), []
    stops = tiny.tokenizer.stop_ids
    first = chat.turn(engine, messages, "Hello", args).text.strip()
    assert first == engine.generate(prompt_ids(tiny, "Hello"), 4, stops).text.strip()
    second = chat.turn(engine, messages, "And then?", args).text.strip()
    assert second == engine.generate(prompt_ids(tiny, "Hello", first, "And then?"), 4, stops).text.strip()
    assert [m["content"] for m in messages] == ["Hello", first, "And then?", second]
    assert chat.turn(engine, messages, "/reset", args) is None and messages == []
    chat.turn(engine, messages, "And then?", args)
    assert messages[0]["content"] == "And then?" and len(messages) == 2


def test_chat_session_ends_on_exit_or_end_of_input(tiny, capsys):
    lines = iter(["Hello", "/reset"])

    def read(_):
        return next(lines)  # StopIteration at the end would be a bug: EOFError ends the session

    def read_until_eof(prompt):
        try:
            return read(prompt)
        except StopIteration:
            raise EOFError from None

    assert chat.run(chat_args(tiny), read=read_until_eof) == 0
    out = capsys.readouterr().out
    assert "4 tokens; LPU: none (reference executor)" in out and "(conversation forgotten)" in out


def chat_args(tiny):
    from openlpu.cli import build_parser

    return build_parser().parse_args(["chat", "--model", str(tiny.path), "--max-tokens", "4", "--executor",
                                      "reference", "--cache-bucket", "64", "--prefill-tokens", "16"])


def test_eval_scores_each_mode_against_fp32(cli, tiny):
    d = json.loads(cli("eval", "--model", str(tiny.path), "--tokens", "40", "--json"))
    rows = {r["numerics"]: r for r in d["modes"]}
    ids = eval_token_ids(tiny.tokenizer, 40)
    fp32 = teacher_forced_logits(LlamaReference(tiny.config, tiny.weights), ids)
    assert rows["fp32"]["perplexity"] == pytest.approx(score(fp32, ids).perplexity)
    assert all(r["predictions"] == len(ids) - 1 for r in rows.values())
    int8 = reference_engine(tiny).teacher_forced_logits(ids)[:-1]
    assert rows["int8"]["agreement"] == pytest.approx(np.mean(int8.argmax(1) == fp32.argmax(1)))
    assert rows["fp16"]["agreement"] == 1.0  # fp16 keeps every argmax of the tiny model (docs/lpu.md)
    assert rows["fp16"]["perplexity"] == pytest.approx(rows["fp32"]["perplexity"], rel=0.01)


def test_generate_help_teaches_the_options_and_the_executors(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["generate", "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    for option in ("--prompt", "--max-tokens", "--numerics", "--temperature", "--top-p", "--seed", "--stop",
                   "--executor", "--chips", "--fail-link", "--trace", "--json"):
        assert option in out
    assert "fast (the compiled program a tensor instruction at a time)" in out and "exact (cycle-accurate" in out
