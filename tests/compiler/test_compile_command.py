"""`openlpu compile`: builtin examples and graph files, run and checked against the reference."""

import json

import pytest

from openlpu.cli import main


@pytest.mark.parametrize("example", ["matmul", "gemv", "mlp"])
def test_builtin_examples_match_the_reference_and_the_schedule(example, capsys):
    assert main(["compile", example, "--chip", "tsp-mini", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["run"]["matches_reference"] is True
    # determinism: the run takes the scheduled cycles plus the superlane stagger and the last commit
    assert data["run"]["cycles"] >= data["cycles_scheduled"]
    assert all(0 < m["mxm_utilisation"] <= 1 for m in data["matmuls"])


def test_a_graph_file_and_a_trace(tmp_path, capsys):
    f = tmp_path / "g.py"
    f.write_text("import numpy as np\nimport openlpu\n\ndef build(lanes):\n    g = openlpu.Graph()\n"
                 "    x = g.input('x', (2, lanes), 'fp32')\n    g.output('y', g.relu(g.neg(x)))\n    return g\n")
    trace = tmp_path / "t.json"
    assert main(["compile", str(f), "--chip", "tsp-mini", "--json", "--trace", str(trace)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [o["op"] for o in data["ops"]] == ["neg", "relu"]
    assert data["run"]["matches_reference"]
    assert any(e.get("name") == "RELU" for e in json.loads(trace.read_text())["traceEvents"])


@pytest.mark.parametrize("arg, words", [("nope", "neither a builtin example"), ("x.py", "neither a builtin")])
def test_bad_graph_names_get_one_sentence(arg, words, capsys):
    assert main(["compile", arg]) == 2
    assert words in capsys.readouterr().err


def test_a_graph_file_without_build(tmp_path, capsys):
    f = tmp_path / "g.py"
    f.write_text("x = 1\n")
    assert main(["compile", str(f)]) == 2
    assert "has no function build(lanes)" in capsys.readouterr().err
