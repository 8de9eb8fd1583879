"""`openlpu reproduce`: rows computed by the model, compared with the published figures."""

import json

import pytest

from openlpu.cli import main
from openlpu.perf.reproduce import reproduce, scaling
from openlpu.perf.reproduce_plot import plot_breakdown, plot_scaling
from openlpu.system.published import PUBLISHED


def test_rows_carry_model_published_and_their_ratio(cli):
    rows = json.loads(cli("reproduce", "--only", "network", "matmul", "--json"))["rows"]
    by = {r["workload"]: r for r in rows}
    hop = by["pipelined all-reduce hop"]
    assert hop["published"] == PUBLISHED.pipelined_hop_s and hop["ratio"] == hop["model"] / hop["published"]
    assert 0 < hop["model"] < 2e-6  # a derived latency, not the published one typed back
    util = next(r for r in rows if "MXM utilisation" in r["workload"])
    assert 0.8 <= util["model"] <= 1.0 and util["published"] == 0.8


def test_sections_can_be_chosen():
    rows = reproduce(["resnet50"])
    assert {r.workload for r in rows} == {"ResNet-50 v2, batch 1", "ResNet-50 v2, batch 1, latency"}
    assert all(r.model > 0 and r.ratio == r.model / r.published for r in rows)  # modelled, a miss or not


def test_scaling_goes_from_the_smallest_system_to_a_layer_a_node(tiny_config, tmp_path):
    runs = scaling([tiny_config], chips=(16, 64))["tiny"]
    # Two layers: one node holds both, then a layer a node, then the LM head on a node of its own.
    assert [r.plan.system_chips for r in runs] == [8, 16, 24]
    assert [r.plan.stage_layers for r in runs] == [(2,), (1, 1), (1, 1, 0)]
    per_user = [r.tokens_per_s_per_user for r in runs]
    system = [r.tokens_per_s_system for r in runs]
    assert per_user == sorted(per_user, reverse=True)  # each extra stage adds a hand-off to the token
    assert system == sorted(system) and system[-1] > system[0]  # and a pipeline slot for another user
    for r in runs:
        assert r.ttft_s is None and r.decode_s == pytest.approx(sum(r.breakdown.values()), rel=1e-12)
    plot_scaling({"tiny": runs}, tmp_path / "scaling.png")
    plot_breakdown(runs, tmp_path / "breakdown.png")
    for name in ("scaling.png", "breakdown.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_plots_folder_that_cannot_be_made_is_one_sentence(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["reproduce", "--only", "resnet50", "--plots", str(blocker / "plots")]) == 2
    err = capsys.readouterr().err
    assert "cannot create the plots folder" in err and err.count("\n") == 1
