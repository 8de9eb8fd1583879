"""How the reference multiplies by a weight matrix: the one place a numerics mode changes.

A `Numerics` prepares each weight matrix once (e.g. rounds it to fp16, or quantises it to int8 with
scales) and then multiplies activations by the prepared form. The reference model calls nothing else
for its matmuls, so an fp16 or int8 mode is a new `Numerics`, not a new model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


class Numerics(Protocol):
    name: str

    def prepare(self, w: np.ndarray) -> Any:
        """Turn an fp32 weight matrix (out_features, in_features) into this mode's stored form."""

    def matmul(self, x: np.ndarray, w: Any) -> np.ndarray:
        """x (n, in_features) fp32 times a prepared weight -> (n, out_features) fp32."""


@dataclass(frozen=True)
class Fp32:
    """Plain fp32 weights and activations with fp32 BLAS accumulation: the oracle."""

    name: str = "fp32"

    def prepare(self, w: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(w, dtype=np.float32)

    def matmul(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        return x @ w.T


FP32 = Fp32()


@dataclass(frozen=True, eq=False)
class Int8Weight:
    """A weight matrix as int8 codes and one fp32 scale per output channel (row): w ~= q * scale[:, None]."""

    q: np.ndarray  # (out_features, in_features) int8, in [-127, 127]
    scale: np.ndarray  # (out_features,) float32

    def dequantize(self) -> np.ndarray:
        return self.q.astype(np.float32) * self.scale[:, None]


def quantize_int8_per_channel(w: np.ndarray) -> Int8Weight:
    """Symmetric per-output-channel int8: each row's largest magnitude maps to 127 (round half to even)."""
    amax = np.abs(w).max(axis=1)
    scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8)
    return Int8Weight(q=q, scale=scale)
