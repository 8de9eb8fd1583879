"""`openlpu reproduce`: rows computed by the model, compared with the published figures."""

import json

from openlpu.perf.reproduce import reproduce
from openlpu.system.published import PUBLISHED


def test_rows_carry_model_published_and_their_ratio(cli):
    rows = json.loads(cli("reproduce", "--only", "resnet50", "network", "matmul", "--json"))["rows"]
    by = {r["workload"]: r for r in rows}
    hop = by["pipelined all-reduce hop"]
    assert hop["published"] == PUBLISHED.pipelined_hop_s and hop["ratio"] == hop["model"] / hop["published"]
    assert 0 < hop["model"] < 2e-6  # a derived latency, not the published one typed back
    util = next(r for r in rows if "MXM utilisation" in r["workload"])
    assert 0.8 <= util["model"] <= 1.0 and util["published"] == 0.8
    resnet = [r for r in rows if r["workload"].startswith("ResNet-50")]
    assert resnet and all(r["model"] is None and r["ratio"] is None and "conv2d" in r["note"] for r in resnet)


def test_sections_can_be_chosen():
    assert {r.workload for r in reproduce(["resnet50"])} == {"ResNet-50 v2, batch 1", "ResNet-50 v2, batch 1, latency"}
