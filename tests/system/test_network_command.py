import argparse
import json

import pytest

from openlpu import cli
from openlpu.commands import network
from openlpu.errors import UserError
from openlpu.system import topology
from openlpu.system.collectives import compile_collective


def run_network(capsys, *argv):
    parser = argparse.ArgumentParser(prog="openlpu")
    network.register(parser.add_subparsers())
    args = parser.parse_args(["network", *argv])
    code = args.run(args)
    return code, capsys.readouterr().out


def test_allreduce_json_runs_on_data_and_reports_the_schedule(capsys):
    code, out = run_network(capsys, "allreduce", "--chips", "8", "--bytes", "4096", "--json")
    data = json.loads(out)
    assert code == 0 and data["ran"] and data["matches_numpy"]
    assert data["latency_cycles"] == compile_collective("allreduce", topology.build(chips=8), 4096).latency
    assert data["chips"] == 8 and data["levels"] == ["node x8"] and data["deskew"]["deskews"] == 0
    assert data["latency_cycles"] >= data["lower_bound_cycles"]


def test_a_failed_link_is_reported_and_the_result_still_matches(capsys):
    code, out = run_network(capsys, "allreduce", "--chips", "8", "--bytes", "4096", "--fail-link", "0-5",
                            "--dtype", "float32", "--json")
    data = json.loads(out)
    assert code == 0 and data["matches_numpy"]
    assert data["faults"]["action"] == "re-planned" and data["faults"]["detected"][0]["link"] == 4
    assert data["failed_links"] == [4]


def test_tables_for_people(capsys):
    _, out = run_network(capsys, "send", "--chips", "8", "--from", "0", "--to", "5", "--bytes", "65536")
    assert "every chip matches numpy" in out and "lower bound" in out
    _, out = run_network(capsys, "sync", "--chips", "72", "--cycles", "100000")
    assert "runtime deskews" in out and "DESKEW, TRANSMIT, NOTIFY" in out
    _, out = run_network(capsys, "broadcast", "--chips", "72", "--root", "9", "--bytes", "640", "--schedule-only")
    assert "not run: --schedule-only" in out


def test_compare_and_figures_json(capsys):
    _, out = run_network(capsys, "compare", "--chips", "8", "--transfers", "20", "--bytes", "3200", "--runs", "2",
                         "--json")
    rows = json.loads(out)["rows"]
    assert [r["mode"] for r in rows] == ["scheduled", "dynamic minimal", "dynamic adaptive"]
    _, out = run_network(capsys, "figures", "--json")
    assert any(r["figure"].startswith("10,440 chips") for r in json.loads(out)["rows"])


def test_errors_are_one_sentence(capsys):
    with pytest.raises(UserError, match="not a whole number of int32 elements"):
        run_network(capsys, "allreduce", "--chips", "8", "--bytes", "10")
    assert cli.main(["network", "allreduce", "--chips", "8", "--fail-link", "0-99"]) == 2
    assert "chip 99 does not exist" in capsys.readouterr().err


def test_help_teaches_with_examples(capsys):
    with pytest.raises(SystemExit):
        cli.main(["network", "--help"])
    out = capsys.readouterr().out
    assert "openlpu network allreduce --racks 8" in out and "--fail-link" in out
