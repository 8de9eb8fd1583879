from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def examples_dir() -> Path:
    return ROOT / "examples"


@pytest.fixture
def cli(capsys):
    """Run the real `openlpu` command; returns its stdout and checks it succeeded."""
    from openlpu.cli import main

    def run(*argv: str) -> str:
        code = main(list(argv))
        out = capsys.readouterr()
        assert code == 0, out.err
        return out.out

    return run
