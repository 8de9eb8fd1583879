"""The chat page in a real headless browser (Debian chromium, driven over the DevTools pipe)."""

import httpx
import pytest
from cdp_pipe import Browser, chromium

pytestmark = pytest.mark.skipif(chromium() is None, reason="chromium is not installed (apt-get install -y chromium)")

STATUS = "document.getElementById('status').textContent"


@pytest.fixture
def page(url, tmp_path):
    browser = Browser(url + "/", str(tmp_path / "profile"))
    try:
        browser.wait_for("document.getElementById('model').textContent.includes('context 256')")
        yield browser
    finally:
        browser.close()


def ask(page, prompt, temperature="0", max_tokens="12"):
    page.evaluate(f"""
        document.getElementById('prompt').value = {prompt!r};
        document.getElementById('temperature').value = {temperature!r};
        document.getElementById('max-tokens').value = {max_tokens!r};
        document.getElementById('send').click();""")
    return page.wait_for(f"['done', 'error'].includes({STATUS}) && {STATUS}")


def figure(page, cell):
    return float(page.evaluate(f"document.getElementById('{cell}').dataset.value"))


def test_the_page_streams_the_answer_and_shows_lpu_and_host_figures(page, url, engine):
    assert ask(page, "Where does the river meet the sea?") == "done"
    answer = page.evaluate("document.getElementById('answer').textContent")
    body = {"model": engine.model_id, "messages": [{"role": "user", "content": "Where does the river meet the sea?"}],
            "temperature": 0, "max_tokens": 12}
    api = httpx.post(url + "/v1/chat/completions", json=body).json()
    assert answer == api["choices"][0]["message"]["content"]
    usage = api["usage"]
    prompt_time = engine.timing.prefill_seconds(usage["prompt_tokens"])
    assert figure(page, "lpu-ttft") == pytest.approx(prompt_time, rel=1e-9)  # alone on the chip: no queue
    assert figure(page, "lpu-tps") == pytest.approx((usage["completion_tokens"] - 1) / usage["completion_time"])
    assert figure(page, "host-ttft") > 0 and figure(page, "host-tps") > 0
    assert page.evaluate("document.getElementById('lpu-timing').textContent") == "compiled"


def test_the_conversation_continues_and_errors_show_on_the_page(page):
    assert ask(page, "Hello") == "done"
    assert ask(page, "And then?") == "done"
    assert page.evaluate("document.querySelectorAll('#conversation .turn').length") == 4
    assert ask(page, "x" * 400) == "error"  # over the tiny model's 256-token context
    assert "context length of 256" in page.evaluate("document.getElementById('answer').textContent")
