import pytest

from openlpu.system import topology
from openlpu.system.summary import summarize


def test_full_scale_against_the_published_figures(full_scale):
    data = summarize(full_scale)
    assert (data["chips"], data["racks"], data["spare_chips"]) == (10_440, 145, 1_160)
    assert data["rack_to_rack_links"] == 145 * 144 // 2
    rows = {row["figure"]: row for row in data["published"]}
    assert rows["diameter, virtual-router hops"]["model"] == 5 == rows["diameter, virtual-router hops"]["published"]
    assert rows["diameter, link hops"]["model"] == data["diameter_hops"] == 7
    assert rows["global SRAM"]["model"] == 10_440 * 220 * 2**20 > 2e12
    latency = rows["worst-case vector latency, links only"]
    assert latency["model"] == pytest.approx(7 * 217 / 900e6 + 328 / 12.5e9) and latency["model"] < 3e-6
    per_chip = rows["bisection bandwidth per chip of one half"]
    assert per_chip["model"] == pytest.approx(data["bisection_bytes_per_s"] / 5_220)


def test_only_the_figures_that_apply_are_compared():
    node = {row["figure"] for row in summarize(topology.build(chips=8))["published"]}
    assert node == {"one link hop, latency + one flit"}
    fully = {row["figure"] for row in summarize(topology.build(chips=264))["published"]}
    assert "diameter, link hops" in fully and "global bandwidth per chip (4 links)" in fully
    assert summarize(topology.build(chips=1))["published"] == []
