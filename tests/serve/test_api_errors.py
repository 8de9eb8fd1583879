"""Bad input gets OpenAI's error format and the right status; the server stays up; nothing leaks."""

import time

import httpx
import openai
import pytest
from servekit import make_service

from openlpu.runtime.reference_engine import ReferenceEngine

QUESTION = [{"role": "user", "content": "Hello"}]


def post(url, body=None, content=None, headers=None):
    return httpx.post(url + "/v1/chat/completions", json=body, content=content, headers=headers)


def error_of(r, status):
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "code", "param"} and error["message"]
    return error


def test_malformed_json_and_non_objects_are_400(url):
    broken = b'{"model": "tiny-256", "messages": ['
    e = error_of(post(url, content=broken, headers={"content-type": "application/json"}), 400)
    assert e["code"] == "invalid_json" and "not valid JSON" in e["message"]
    assert error_of(post(url, body=[1, 2]), 400)["message"].startswith("the request body is a JSON list")


@pytest.mark.parametrize("body, param, words", [
    ({"messages": QUESTION}, "model", "Field required"),
    ({"model": "tiny-256"}, "messages", "Field required"),
    ({"model": "tiny-256", "messages": []}, "messages", "is empty"),
    ({"model": "tiny-256", "messages": [{"role": "robot", "content": "hi"}]}, "messages.0.role", "'system'"),
    ({"model": "tiny-256", "messages": QUESTION, "n": 2}, "n", "only n = 1"),
    ({"model": "tiny-256", "messages": QUESTION, "temperature": "warm"}, "temperature", "valid number"),
])
def test_missing_and_invalid_fields_are_400_naming_the_field(url, body, param, words):
    e = error_of(post(url, body), 400)
    assert e["param"] == param and words in e["message"] and e["type"] == "invalid_request_error"


@pytest.mark.parametrize("field, value", [("temperature", 2.5), ("top_p", 0), ("max_tokens", 0), ("seed", 1.5),
                                          ("stop", ["a", "b", "c", "d", "e"])])
def test_bad_sampling_values_are_400_naming_the_value(url, engine, field, value):
    body = {"model": engine.model_id, "messages": QUESTION, field: value}
    message = error_of(post(url, body), 400)["message"]
    assert field in message or "valid integer" in message


def test_an_unknown_model_is_404_like_groq(url):
    c = openai.OpenAI(base_url=url + "/openai/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.NotFoundError) as err:
        c.chat.completions.create(model="llama2-70b-4096", messages=QUESTION)
    assert err.value.body["code"] == "model_not_found"


def test_a_prompt_over_the_context_is_400_context_length_exceeded(url, engine):
    long = [{"role": "user", "content": "word " * 300}]
    e = error_of(post(url, {"model": engine.model_id, "messages": long}), 400)
    assert e["code"] == "context_length_exceeded" and "context length of 256" in e["message"]
    e = error_of(post(url, {"model": engine.model_id, "messages": QUESTION, "max_tokens": 250}), 400)
    assert e["code"] == "context_length_exceeded"


def test_an_oversized_body_is_413(serve, engine):
    url = serve(make_service(engine, max_body=2000))
    body = {"model": engine.model_id, "messages": [{"role": "user", "content": "x" * 3000}]}
    assert error_of(post(url, body), 413)["code"] == "request_too_large"
    assert post(url, {"model": engine.model_id, "messages": QUESTION, "max_tokens": 2}).status_code == 200


def test_a_wrong_api_key_is_401_and_the_right_one_works(serve, engine):
    url = serve(make_service(engine, api_key="sesame"))
    for key in ("wrong", None):
        headers = {"authorization": f"Bearer {key}"} if key else {}
        assert error_of(post(url, {"model": engine.model_id, "messages": QUESTION}, headers=headers),
                        401)["code"] == "invalid_api_key"
    c = openai.OpenAI(base_url=url + "/v1", api_key="sesame", max_retries=0)
    assert c.chat.completions.create(model=engine.model_id, messages=QUESTION, max_tokens=2).usage.completion_tokens
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=url + "/v1", api_key="nope", max_retries=0).models.list()
    assert httpx.get(url + "/health").status_code == 200 and httpx.get(url + "/").status_code == 200


def test_unknown_paths_and_methods_answer_in_the_same_format(url):
    assert error_of(httpx.get(url + "/v1/nothing"), 404)["code"] == "not_found"
    assert error_of(httpx.get(url + "/v1/chat/completions"), 405)["code"] == "method_not_allowed"


class SlowHost(ReferenceEngine):
    """The tiny model with a slow host (20 ms a token), counting the steps it really computes."""

    steps = 0

    def generate(self, slot, prompt, params):
        for event in super().generate(slot, prompt, params):
            SlowHost.steps += 1
            time.sleep(0.02)
            yield event


def test_a_client_leaving_mid_stream_cancels_its_work(serve, tiny, engine):
    slow = SlowHost(tiny, engine.timing, concurrency=1, prefill_tokens=engine.prefill_tokens)
    url = serve(make_service(slow))
    body = {"model": slow.model_id, "messages": QUESTION, "max_tokens": 200, "stream": True, "temperature": 0}
    with httpx.stream("POST", url + "/v1/chat/completions", json=body) as r:
        lines = r.iter_lines()
        assert next(lines).startswith("data: ")  # the first chunk; then the client hangs up
    deadline = time.monotonic() + 5
    while (health := httpx.get(url + "/health").json())["running"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert health["running"] == 0 and health["waiting"] == 0 and health["completed"] == 0
    stopped_at = SlowHost.steps
    assert stopped_at < 200  # the rest of the 200 tokens (4 s of host work) was never computed
    time.sleep(0.1)
    assert SlowHost.steps == stopped_at
    r = post(url, {"model": slow.model_id, "messages": QUESTION, "max_tokens": 3})  # the server is still up
    assert r.status_code == 200 and httpx.get(url + "/health").json()["completed"] == 1
