"""openlpu: an open, executable model of Groq's LPU (the Tensor Streaming Processor)."""

from openlpu.compiler.compile import compile  # noqa: A004 - the public API mirrors the issue's sketch
from openlpu.compiler.graph import Graph
from openlpu.errors import UserError

__all__ = ["Graph", "UserError", "compile"]
__version__ = "0.1.0"
