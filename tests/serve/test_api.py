"""The API through the official `openai` client against live servers on 127.0.0.1 (the tiny model)."""

import json
import time

import httpx
import openai
import pytest
from servekit import SlowTiming, make_service, tiny_engine

from openlpu.runtime.lpu_engine import LpuEngine
from openlpu.serve.app import PREFILL_TOKENS, build_engine

QUESTION = [{"role": "user", "content": "Where does the river meet the sea?"}]


def client(url, prefix="/openai/v1", key="unused"):
    return openai.OpenAI(base_url=url + prefix, api_key=key, max_retries=0)


@pytest.fixture(scope="module")
def expected(tiny, engine):
    """What greedy decoding of QUESTION must give: the LPU engine's int8 tokens, 12 at most."""
    prompt = engine.prompt_ids(QUESTION)
    lpu = LpuEngine(tiny, "int8", executor="reference", cache_bucket=engine.cache_bucket,
                    prefill_tokens=engine.prefill_tokens)
    ids = lpu.generate(prompt, 12, tiny.tokenizer.stop_ids).token_ids
    return prompt, ids, tiny.tokenizer.decode(ids, skip_special=True)


def test_a_completion_is_the_models_greedy_answer_with_its_lpu_times(url, engine, expected):
    prompt, ids, text = expected
    r = client(url).chat.completions.create(model=engine.model_id, messages=QUESTION, temperature=0, max_tokens=12)
    assert r.object == "chat.completion" and r.model == engine.model_id
    assert r.choices[0].message.content == text
    assert r.choices[0].finish_reason == ("stop" if ids[-1] in engine.model.tokenizer.stop_ids else "length")
    usage = r.usage.model_dump()
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (len(prompt), len(ids))
    assert usage["total_tokens"] == len(prompt) + len(ids)
    timing, p = engine.timing, len(prompt)
    assert usage["prompt_time"] == timing.prefill_seconds(p)
    decode = sum(timing.decode_seconds(p + i) for i in range(1, len(ids)))
    assert usage["completion_time"] == pytest.approx(decode, rel=1e-12)
    assert usage["total_time"] == pytest.approx(usage["prompt_time"] + usage["completion_time"], rel=1e-12)
    assert r.x_groq["id"].startswith("req_")
    extra = r.model_extra["x_openlpu"]
    assert extra["lpu_timing"] == "compiled" and extra["pace"] == "host"
    assert f"int8 {PREFILL_TOKENS}-token prefill and decode steps compiled for one tsp-v1" in extra["lpu_timing_source"]
    assert "equals bit for bit" in extra["tokens"]
    assert extra["host_usage"]["prompt_time"] > 0


def test_a_stream_carries_the_same_answer_in_groqs_chunks(url, engine, expected):
    prompt, ids, text = expected
    chunks = list(client(url).chat.completions.create(
        model=engine.model_id, messages=QUESTION, temperature=0, max_tokens=12, stream=True,
        stream_options={"include_usage": True}))
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    first, last, usage_chunk = chunks[0], chunks[-2], chunks[-1]
    assert first.choices[0].delta.role == "assistant" and first.x_groq["id"].startswith("req_")
    assert "".join(c.choices[0].delta.content or "" for c in chunks[:-1]) == text
    assert last.choices[0].finish_reason is not None
    usage = last.x_groq["usage"]
    assert last.x_groq["id"] == first.x_groq["id"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (len(prompt), len(ids))
    assert usage["prompt_time"] == pytest.approx(engine.timing.prefill_seconds(len(prompt)), rel=1e-12)
    assert usage_chunk.choices == [] and usage_chunk.usage.completion_tokens == len(ids)
    # every content chunk says when its token was ready, on the LPU and on the host
    times = [c.model_extra["x_openlpu"]["lpu_time"] for c in chunks[1:-2]]
    assert times == sorted(times) and times[0] >= usage["prompt_time"] * (1 - 1e-9)


def test_the_raw_stream_is_server_sent_events_ending_with_done(url, engine):
    body = {"model": engine.model_id, "messages": QUESTION, "max_tokens": 4, "stream": True}
    with httpx.stream("POST", url + "/v1/chat/completions", json=body) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[0][6:])["object"] == "chat.completion.chunk"


def test_both_prefixes_serve_the_models_and_health(url, engine):
    for prefix in ("/openai/v1", "/v1"):
        models = client(url, prefix).models.list().data
        assert [m.id for m in models] == [engine.model_id]
        assert models[0].model_extra["context_window"] == 256
        assert client(url, prefix).models.retrieve(engine.model_id).id == engine.model_id
    with pytest.raises(openai.NotFoundError):
        client(url).models.retrieve("llama2-70b-4096")
    health = httpx.get(url + "/health").json()
    assert health["status"] == "ok" and health["model"] == engine.model_id and health["slots"] == 2
    assert health["lpu_timing"] == "compiled" and health["compiled_steps"]["1x64"] == engine.timing.step(64).cycles
    assert health["engine_cpu_s"] > 0  # the scheduler thread's CPU inside the engine: what is not overhead


def test_a_seed_repeats_a_sampled_answer(url, engine):
    def ask(seed):
        return client(url).chat.completions.create(model=engine.model_id, messages=QUESTION, temperature=1.0,
                                                   seed=seed, max_tokens=20).choices[0].message.content

    assert ask(3) == ask(3)
    assert ask(3) != ask(4)


def test_stop_max_tokens_aliases_content_parts_and_unknown_fields(url, engine, expected):
    _, _, text = expected
    c = client(url)
    stop = text[4:7]
    r = c.chat.completions.create(model=engine.model_id, messages=QUESTION, temperature=0, max_tokens=12, stop=[stop])
    assert r.choices[0].message.content == text[: text.find(stop)] and r.choices[0].finish_reason == "stop"
    r = c.chat.completions.create(model="tiny", messages=QUESTION, temperature=0, max_completion_tokens=2,
                                  max_tokens=9)  # max_completion_tokens wins; "tiny" is an alias
    assert r.usage.completion_tokens == 2
    parts = [{"role": "user", "content": [{"type": "text", "text": "Where does the river "},
                                          {"type": "text", "text": "meet the sea?"}]}]
    r = c.chat.completions.create(model=engine.model_id, messages=parts, temperature=0, max_tokens=12,
                                  extra_body={"frequency_penalty": 0.5, "user": "me", "no_such_field": {"a": 1}})
    assert r.choices[0].message.content == text


def test_rate_limit_headers_count_down_then_429_with_retry_after(serve, engine):
    url = serve(make_service(engine, rpm=2))
    body = {"model": engine.model_id, "messages": QUESTION, "max_tokens": 1}
    first = time.monotonic()
    remaining = [httpx.post(url + "/v1/chat/completions", json=body).headers["x-ratelimit-remaining-requests"]
                 for _ in range(2)]
    assert remaining == ["1", "0"]
    r = httpx.post(url + "/v1/chat/completions", json=body)
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 59 - (time.monotonic() - first)
    assert r.json()["error"]["code"] == "rate_limit_exceeded"
    assert r.headers["x-ratelimit-limit-requests"] == "2"
    with pytest.raises(openai.RateLimitError):
        client(url).chat.completions.create(model=engine.model_id, messages=QUESTION)


def test_lpu_pace_streams_no_faster_than_the_simulated_chip(serve, tiny):
    slow = tiny_engine(tiny, None, chips=1, timing=SlowTiming(0.01))
    url = serve(make_service(slow, pace="lpu"))
    start = time.monotonic()
    chunks = list(client(url).chat.completions.create(model=slow.model_id, messages=QUESTION, temperature=0,
                                                      max_tokens=10, stream=True))
    elapsed = time.monotonic() - start
    usage = chunks[-1].x_groq["usage"]
    assert usage["completion_time"] >= 0.009 * (usage["completion_tokens"] - 1)
    assert elapsed >= usage["queue_time"] + usage["total_time"] - 1e-3


def test_the_real_model_is_served_with_its_compiled_timing(step_cycles_dir):
    smollm2 = build_engine("smollm2-135m", chips=1, cache_dir=step_cycles_dir)
    assert smollm2.model_id == "smollm2-135m-8192" and smollm2.concurrency == 1
    assert smollm2.timing.source.startswith(f"cycles of smollm2-135m's int8 {PREFILL_TOKENS}-token prefill and "
                                            "decode steps")
    assert smollm2.prefill_tokens == smollm2.timing.prefill_tokens == PREFILL_TOKENS == 16
    # docs/models.md: the question is 37 prompt tokens; its answer through the int8 step graph is
    # tests/runtime/test_lpu_engine.py's ("The capital of France is Paris")
    assert len(smollm2.prompt_ids([{"role": "user", "content": "What is the capital of France?"}])) == 37
