"""One read-only host array for equal contents.

A model compiled as many programs (a layer and a chip each under tensor parallelism) holds the same masks,
folds and zero rows in every one of them: as constants, as weights the fast executor keeps installed, as
values it keeps for later runs. Each program keeps what it holds, so equal arrays are kept once.
"""

from __future__ import annotations

import hashlib
import weakref

import numpy as np

_arrays: weakref.WeakValueDictionary = weakref.WeakValueDictionary()  # (dtype, shape, digest) -> array in use


def shared(a: np.ndarray) -> np.ndarray:
    """A read-only array with `a`'s dtype, shape and bytes: the first one asked for while it is in use."""
    key = (a.dtype.str, a.shape, hashlib.blake2b(a.tobytes(), digest_size=16).digest())
    known = _arrays.get(key)
    if known is not None and known.tobytes() == a.tobytes():
        return known
    a = a.copy()
    a.flags.writeable = False
    _arrays[key] = a
    return a
