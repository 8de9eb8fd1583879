"""`openlpu serve` and `openlpu bench` as a user runs them."""

import json
import os
import subprocess
import sys
import time

import httpx
import pytest

from openlpu.cli import main


@pytest.mark.parametrize("command", ["serve", "bench"])
def test_help_teaches_with_examples(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and f"openlpu {command} " in out


def test_serve_starts_on_a_free_port_and_answers(tiny_path, tmp_path):
    env = os.environ | {"XDG_CACHE_HOME": str(tmp_path)}  # its compiled step cycles go there, not to ~/.cache
    proc = subprocess.Popen([sys.executable, "-m", "openlpu.cli", "serve", "--model", str(tiny_path), "--port", "0",
                             "--chips", "3", "--warm-tokens", "1", "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines = []
        while not lines or lines[-1] != "}\n":
            lines.append(proc.stdout.readline())
            if not lines[-1]:
                raise RuntimeError(f"openlpu serve exited before printing its address: {''.join(lines)!r}")
        info = json.loads("".join(lines))
        assert info["model"] == "tiny-256" and info["concurrency"] == 3 and info["lpu_timing"] == "compiled"
        for _ in range(100):
            try:
                health = httpx.get(info["url"] + "/health").json()
                break
            except httpx.ConnectError:
                time.sleep(0.05)
        assert health["slots"] == 3 and health["pace"] == "lpu"
        # the background warm-up compiles the one step shape a 1-token sequence needs, in each sampling mode
        # (nucleus last), and says so
        for i, mode in enumerate(("greedy", "sample", "nucleus")):
            assert proc.stderr.readline().startswith(f"openlpu serve: step program {i + 1} of 3 ready: 1 x 64 (rows "
                                                     f"x cache slots) {mode}, ")
        compiled = httpx.get(info["url"] + "/health").json()["compiled_steps"]
        assert list(compiled) == ["1x64", "1x64 nucleus", "1x64 sample"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize("args, words", [
    (["--chips", "0"], "--chips 0"),
    (["--port", "70000"], "--port 70000"),
    (["--pace", "lpu", "--requests-per-minute", "0"], "at least 1"),
    (["--warm-tokens", "-1"], "--warm-tokens -1"),
])
def test_serve_refuses_bad_options_in_one_sentence(args, words, tiny_path, capsys):
    assert main(["serve", "--model", str(tiny_path), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("openlpu: ") and words in err and "Traceback" not in err


def test_bench_prints_llmperfs_summary_and_plots(url, engine, tiny_path, tmp_path, capsys):
    assert main(["bench", "--base-url", url + "/openai/v1", "--tokenizer", str(tiny_path), "--requests", "4",
                 "--concurrency", "2", "--input-tokens", "90", "--output-tokens", "6", "--json",
                 "--plots", str(tmp_path)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["model"] == engine.model_id  # found through GET /models
    assert summary["results_num_completed_requests"] == 4 and summary["results_number_errors"] == 0
    assert summary["num_concurrent_requests"] == 2 and summary["mean_input_tokens"] == 90
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [
        "end_to_end_latency_s.png", "inter_token_latency_s.png", "request_output_throughput_token_per_s.png",
        "ttft_s.png"]


def test_bench_explains_an_unreachable_endpoint(tiny_path, capsys):
    assert main(["bench", "--base-url", "http://127.0.0.1:9/v1", "--tokenizer", str(tiny_path)]) == 2
    assert "could not list the models of http://127.0.0.1:9/v1" in capsys.readouterr().err
