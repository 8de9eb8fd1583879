"""ChipSpec: derived figures from first principles, presets, rejection of inconsistent specs."""

import dataclasses
import json

import pytest

from openlpu.chip.spec import TSP_MINI, TSP_V1, get_chip
from openlpu.cli import main
from openlpu.errors import UserError
from openlpu.sources import sources


def test_tsp_v1_derived_figures_follow_from_the_published_parameters():
    c = TSP_V1
    assert c.lanes == 320 and c.vector_bytes == 320
    assert c.mem_slices == 88
    assert c.sram_bytes == 88 * 8192 * 320 == 220 * 2**20  # 220 MiB (ISCA20)
    assert c.vxm_alus == 5120
    assert c.icu_queues == 144  # ISCA20's figure, from the queue layout
    # 4 planes x 320 x 320 MACs x 2 ops at 1 GHz = 819.2 TOPS: ISCA20's "820 TOPS at 1 GHz"
    assert dataclasses.replace(c, clock_hz=1e9).peak_int8_tops == pytest.approx(819.2)
    assert c.peak_fp16_tflops == pytest.approx(c.peak_int8_tops / 4)
    # ISCA20 counts SRAM bandwidth as 2 hemispheres x 44 slices x 2 banks x 320 B per cycle
    assert dataclasses.replace(c, clock_hz=1e9).sram_bandwidth == 88 * 2 * 320 * 1e9
    assert dataclasses.replace(c, clock_hz=1e9).stream_bandwidth == 2 * 32 * 320 * 1e9


def test_floorplan_is_mirrored_around_the_vxm():
    f = TSP_V1.floorplan
    assert len(f) == 2 + 2 + 88 + 1
    assert f[:3] == ("MXM_W", "SXM_W", "MEM_W43") and f[-3:] == ("MEM_E43", "SXM_E", "MXM_E")
    assert f[46] == "VXM" and f[45] == "MEM_W0" and f[47] == "MEM_E0"


def test_every_field_cites_a_source_or_says_assumed():
    for field, src in sources(TSP_V1).items():
        if field == "name":
            continue
        assert src.startswith(("ISCA20", "ISCA22", "CHIP", "GROQAPI", "assumed:")) or "ISCA20" in src, field


@pytest.mark.parametrize("change, field", [
    ({"streams_per_direction": 30}, "streams_per_direction"),
    ({"mem_slices_per_hemisphere": 0}, "mem_slices_per_hemisphere"),
    ({"superlanes": 0}, "superlanes"),
    ({"mxm_planes": 3}, "mxm_planes"),
    ({"lanes_per_superlane": 8}, "lanes_per_superlane"),
])
def test_inconsistent_specs_are_rejected_with_the_field_named(change, field):
    with pytest.raises(UserError, match=field):
        dataclasses.replace(TSP_MINI, **change)


def test_unknown_chip_names_the_presets():
    with pytest.raises(UserError, match="tsp-v1, tsp-mini"):
        get_chip("tsp-v9")


def test_info_json_carries_the_documented_keys(capsys):
    assert main(["info", "--chip", "tsp-v1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    for key in ("clock_hz", "lanes", "superlanes", "mem_slices", "sram_bytes", "mxm_planes", "vxm_alus",
                "icu_queues", "c2c_links", "peak_int8_tops", "peak_fp16_tflops"):
        assert key in data
    assert data["sram_bytes"] == TSP_V1.sram_bytes and data["icu_queues"] == 144
    assert data["sources"]["clock_hz"].startswith("ISCA20")


def test_info_unknown_chip_is_one_sentence(capsys):
    assert main(["info", "--chip", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown chip 'nope'" in err


def test_an_internal_error_is_one_line_not_a_traceback(capsys, monkeypatch):
    import openlpu.commands.info as info

    monkeypatch.delenv("OPENLPU_DEBUG", raising=False)
    monkeypatch.setattr(info, "get_chip", lambda name: 1 / 0)
    assert main(["info"]) == 70
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error (ZeroDivisionError" in err and "Traceback" not in err
