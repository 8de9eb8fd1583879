"""A tiny decoder as a Hugging Face config.json, so commands that predict compile in a second or two."""

import json

import pytest

from openlpu.models.zoo import DecoderConfig

# 8-way tensor parallel leaves one head of 40 columns, 80 FFN columns and 80 vocabulary columns a chip.
TINY = DecoderConfig("tiny", 2, 320, 8, 8, 640, 640, 1e4, 64, "a test config")


@pytest.fixture(scope="session")
def tiny_config(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("configs") / "tiny"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(TINY.to_hf_config()))
    return str(folder)
