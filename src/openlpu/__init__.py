"""openlpu: an open, executable model of Groq's LPU (the Tensor Streaming Processor)."""

from openlpu.errors import UserError

__all__ = ["UserError"]
__version__ = "0.1.0"
