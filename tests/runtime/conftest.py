"""The tiny random-weight model, written once per session (tests/models/conftest.py explains it)."""

from __future__ import annotations

import pytest

from openlpu.models.registry import LoadedModel, load_model
from openlpu.models.tiny_gguf import write_tiny_gguf


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> LoadedModel:
    return load_model(str(write_tiny_gguf(tmp_path_factory.mktemp("tiny") / "tiny.gguf")))
