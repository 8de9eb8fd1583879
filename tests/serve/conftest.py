"""Live servers on 127.0.0.1 (uvicorn on a thread, a free port each) backed by the tiny model."""

from __future__ import annotations

import contextlib

import pytest
from servekit import make_service, tiny_engine

from openlpu.models.registry import LoadedModel, load_model
from openlpu.models.tiny_gguf import write_tiny_gguf
from openlpu.runtime.reference_engine import ReferenceEngine
from openlpu.serve.app import create_app
from openlpu.serve.server import running


@pytest.fixture(scope="session")
def tiny_path(tmp_path_factory):
    return write_tiny_gguf(tmp_path_factory.mktemp("tiny") / "tiny.gguf")


@pytest.fixture(scope="session")
def tiny(tiny_path) -> LoadedModel:
    return load_model(str(tiny_path))


@pytest.fixture(scope="session")
def step_cycles_dir(tmp_path_factory):
    """Where the tiny model's compiled step cycles are kept: each bucket is compiled once a session."""
    return tmp_path_factory.mktemp("step-cycles")


@pytest.fixture(scope="session")
def engine(tiny, step_cycles_dir) -> ReferenceEngine:
    """The shared servers' engine, its greedy and sampling step programs for up to 64 tokens compiled first (as
    `openlpu serve` warms them; no test asks for a nucleus), so that no short request waits for a compile past a
    client's timeout."""
    served = tiny_engine(tiny, step_cycles_dir)
    served.timing.warm(64, modes=("greedy", "sample"))
    return served


@pytest.fixture(scope="session")
def url(engine):
    """A server shared by the tests that do not change its settings: pace host, 2 chips, no key."""
    with running(create_app(make_service(engine))) as base:
        yield base


@pytest.fixture
def serve():
    """Start a server for one test: `serve(service)` gives its base URL; all stop at the end of the test."""
    with contextlib.ExitStack() as stack:
        yield lambda service: stack.enter_context(running(create_app(service)))
