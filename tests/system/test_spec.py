import dataclasses

import pytest

from openlpu.errors import UserError
from openlpu.sources import sources
from openlpu.system.spec import GROQ_V1, SystemSpec


def test_every_numeric_field_cites_a_source():
    cites = sources(GROQ_V1)
    for field in dataclasses.fields(GROQ_V1):
        if field.name != "name":
            assert cites[field.name].startswith(("ISCA", "CHIP", "RACK", "assumed: ")), field.name


def test_link_bandwidth_applies_the_flit_efficiency():
    wire = 4 * 25e9 / 8  # 4 lanes x 25 Gb/s, in bytes/s
    assert GROQ_V1.link_wire_bytes_per_s == wire
    assert GROQ_V1.link_bytes_per_s == pytest.approx(wire * 320 / 328)
    assert GROQ_V1.flit_seconds == pytest.approx(328 / wire)
    assert GROQ_V1.flit_cycles == pytest.approx(328 / wire * 900e6)
    assert GROQ_V1.chip_injection_bytes_per_s == pytest.approx(11 * wire * 320 / 328)
    assert GROQ_V1.chip_global_bytes_per_s == pytest.approx(4 * wire * 320 / 328)


def test_port_budget_matches_the_published_rack():
    # ISCA22: 288 global ports per rack, 144 doubly connect its 9 nodes, 144 go to other racks.
    spec = GROQ_V1
    assert spec.nodes_per_rack * spec.node_global_ports == 288
    assert spec.nodes_per_rack * spec.rack_internal_ports == 144
    assert spec.rack_external_ports == 144
    assert spec.max_racks == spec.rack_external_ports + 1
    assert spec.max_chips == 10_440
    assert spec.max_fully_connected_nodes == 33
    assert spec.active_chips_per_rack == 64


def test_vector_latency_counts_each_link_and_one_flit():
    assert GROQ_V1.vector_seconds(0) == 0
    assert GROQ_V1.vector_seconds(3) == pytest.approx(3 * 217 / 900e6 + GROQ_V1.flit_seconds)


@pytest.mark.parametrize(("change", "named"), [
    ({"local_links_per_chip": 6}, "local_links_per_chip"),
    ({"global_links_per_chip": 10}, "global_links_per_chip"),
    ({"lane_gbps": 31.0}, "lane_gbps"),
    ({"flit_payload_bytes": 330}, "flit_payload_bytes"),
    ({"link_latency_min_cycles": 220}, "link_latency_cycles"),
    ({"spare_nodes_per_rack": 9}, "spare_nodes_per_rack"),
    ({"rack_links_per_node_pair": 5}, "rack_links_per_node_pair"),
    ({"max_racks": 146}, "max_racks"),
])
def test_an_inconsistent_spec_is_rejected_naming_the_field(change, named):
    with pytest.raises(UserError, match=f"is inconsistent: {named} = "):
        SystemSpec(**change)
