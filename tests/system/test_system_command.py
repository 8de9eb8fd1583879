import json

import pytest

from openlpu.cli import main
from openlpu.system.published import PUBLISHED
from openlpu.system.spec import GROQ_V1


def test_json_for_one_node(capsys, cli):
    data = json.loads(cli("system", "--chips", "8", "--json"))
    assert {"chips", "links", "diameter_hops", "bisection_bytes_per_s", "sram_bytes"} <= data.keys()
    assert (data["chips"], data["links"], data["local_links"], data["global_links"]) == (8, 28, 28, 0)
    assert data["diameter_hops"] == 1
    assert data["bisection_bytes_per_s"] == pytest.approx(16 * GROQ_V1.link_bytes_per_s)
    assert data["sram_bytes"] == 8 * 220 * 2**20


def test_default_is_one_rack_compared_with_the_published_rack(capsys, cli):
    data = json.loads(cli("system", "--json"))
    assert (data["chips"], data["nodes"], data["racks"], data["spare_chips"]) == (72, 9, 1, 8)
    assert data["links"] == 9 * 28 + 72 and data["diameter_hops"] == 3
    rows = {row["figure"]: row for row in data["published"]}
    bisection = rows["rack bisection, one direction"]
    assert bisection["published"] == PUBLISHED.rack_bisection_bytes_per_s
    assert bisection["model"] == data["bisection_bytes_per_s"]
    assert bisection["ratio"] == pytest.approx(data["bisection_bytes_per_s"] / 3.2e12)
    hop = rows["one link hop, latency + one flit"]
    assert hop["model"] == pytest.approx(217 / 900e6 + 328 / 12.5e9) and hop["published"] == 722e-9


def test_racks_flag_and_the_table(capsys, cli):
    data = json.loads(cli("system", "--racks", "2", "--json"))
    assert data["chips"] == 144 and data["rack_to_rack_links"] == 144
    assert not any(row["figure"].startswith("rack ") for row in data["published"])
    table = cli("system", "--chips", "264")
    assert "33 fully connected nodes (264 chips)" in table and "model vs published" in table


@pytest.mark.parametrize("argv", [["--chips", "3"], ["--chips", "0"], ["--chips", "20000"]])
def test_bad_sizes_get_one_sentence_naming_the_buildable_sizes(argv, capsys):
    assert main(["system", *argv]) == 2
    message = capsys.readouterr().err.strip().removeprefix("openlpu: ")
    assert message.startswith(f"{argv[1]} chips cannot be built: choose 1, 2, 4 or 8 (one node), 264 ")
    assert "multiple of 72 up to 10,440" in message
    assert message.endswith(".") and message.count(". ") == 0 and "\n" not in message


def test_chips_and_racks_are_exclusive():
    with pytest.raises(SystemExit):
        main(["system", "--chips", "8", "--racks", "1"])
