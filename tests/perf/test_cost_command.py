import json

import pytest

from openlpu.cli import main


def test_json_has_the_seed_figures_and_costs_per_token(capsys, cli, tiny_config):
    data = json.loads(cli("cost", "--json", "--model", tiny_config))
    seed = {r["item"]: r for r in data["seed"]}
    assert seed["LPU hardware"]["computed_usd"] == 11_440_000
    assert seed["LPU operations"]["computed_usd"] == pytest.approx(761_904)
    assert seed["LPU operations"]["ratio"] == pytest.approx(761_904 / 762_000)
    assert seed["GPU operations"]["computed_usd"] == 72_000
    lpu, predicted = data["points"][0], data["lpu_prediction"]
    # The LPU system is the one predict planned, a card a chip, at the throughput it predicted.
    assert lpu["system"] == f"{predicted['system_chips']} LPU cards" and predicted["chips"] == 8
    assert lpu["tokens_per_s"] == predicted["tokens_per_s_system"]
    assert lpu["tokens_per_s_per_user"] == pytest.approx(1 / predicted["decode_s_per_token"])
    cost = 8 * 20_000 + 8 * 0.185 * 200 * 36
    assert lpu["usd_per_mtoken"] == pytest.approx(cost / (lpu["tokens_per_s"] * 36 * 2_629_800) * 1e6, rel=1e-12)
    assert "predict: compiled" in lpu["throughput_from"]
    assert [p["batch"] for p in data["points"]] == [1, 1, data["gpu_baseline"]["max_batch"]]
    assert data["gpu_baseline"]["decode"]["bound"] == "network"  # a tiny model: the all-reduces dominate
    assert data["sources"]["server_price_usd"].startswith("FACTS 4")


def test_flags_change_the_assumptions(capsys, cli, tiny_config):
    flags = ["--cards", "576", "--months", "12", "--server-price", "250000", "--gpu", "a100", "--gpus", "4",
             "--batch", "8", "--model", tiny_config, "--chips", "16", "--lpu-batch", "2", "--card-price", "10000"]
    data = json.loads(cli("cost", "--json", *flags))
    seed = {r["item"]: r["computed_usd"] for r in data["seed"]}
    assert seed["LPU hardware"] == 576 * 10_000
    assert seed["GPU hardware"] == 250_000
    assert seed["GPU operations"] == 6.5 * 200 * 12  # the A100 server's own power
    gpu = data["points"][1]
    assert gpu["batch"] == 8
    assert data["gpu_baseline"]["gpus"] == 4 and data["gpu_baseline"]["gpu"] == "A100 80GB SXM"
    # Two 4-GPU replicas per server.
    assert gpu["tokens_per_s"] == pytest.approx(2 * data["gpu_baseline"]["tokens_per_s_system"])
    assert gpu["users"] == 2 * 8
    lpu = data["points"][0]
    assert (lpu["system"], lpu["batch"]) == ("16 LPU cards", 2)
    cost = 16 * 10_000 + 16 * 0.185 * 200 * 12
    assert lpu["usd_per_mtoken"] == pytest.approx(cost / (lpu["tokens_per_s"] * 12 * 2_629_800) * 1e6, rel=1e-12)


def test_table_shows_seed_and_computed_side_by_side(capsys, cli, tiny_config):
    out = cli("cost", "--model", tiny_config)
    assert "$11,440,000" in out and "$11.44M" in out
    assert "$761,904" in out and "$0.762M" in out and "0.9999" in out
    assert "network bound" in out


def test_plot_is_written(capsys, tmp_path, cli, tiny_config):
    path = tmp_path / "cost.png"
    data = json.loads(cli("cost", "--json", "--plot", str(path), "--model", tiny_config, "--plot-lpu-batch", "2"))
    assert data["plot"] == str(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("argv, words", [(["--model", "resnet50"], "not a decoder LLM"),
                                         (["--plot", "/nonexistent-dir/cost.png"], "writable --plot path"),
                                         (["--chips", "12"], "multiple of 8")])
def test_bad_input_is_one_sentence(argv, words, capsys, tiny_config):
    assert main(["cost", "--model", tiny_config, *argv]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


def test_help_teaches_with_examples(capsys, cli):
    with pytest.raises(SystemExit):
        cli("cost", "--help")
    out = capsys.readouterr().out
    assert "examples:" in out and "--usd-per-kw-month" in out and "FACTS.md section 4" in out
