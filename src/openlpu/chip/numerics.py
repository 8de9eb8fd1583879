"""The chip's number formats and arithmetic, bit-exact and independent of batch shape.

Every function takes arrays whose last axis is the lanes and any leading axes, so the cycle-accurate
executor (one vector) and a tensor-at-a-time executor (many vectors) get the same bits.
Rules (documented in docs/chip.md):
- integer ops wrap (modulo) unless saturating; float->int casts round to nearest even and saturate;
- fp16 arithmetic is computed exactly in float64 and rounded once to fp16;
- fp32 transcendental functions (exp, tanh, rsqrt) are computed in float64 and rounded once to fp32;
- the MXM sums 320 exact products and rounds once to fp32 (ISCA20), then accumulates in fp32.
"""

from __future__ import annotations

import weakref

import numpy as np

from openlpu.chip.shared import shared
from openlpu.errors import UserError

DTYPES: dict[str, np.dtype] = {
    "int8": np.dtype("<i1"),
    "int16": np.dtype("<i2"),
    "int32": np.dtype("<i4"),
    "fp16": np.dtype("<f2"),
    "fp32": np.dtype("<f4"),
}
INT_DTYPES = ("int8", "int16", "int32")
FLOAT_DTYPES = ("fp16", "fp32")


def dtype_of(name: str) -> np.dtype:
    try:
        return DTYPES[name]
    except KeyError:
        raise UserError(f"unknown dtype {name!r}: use one of {', '.join(DTYPES)}.") from None


def width(name: str) -> int:
    """Bytes per element = streams per vector (a stream carries one byte per lane)."""
    return DTYPES[name].itemsize


def to_planes(values: np.ndarray, dtype: str) -> list[np.ndarray]:
    """Elements [..., lanes] -> byte planes, each [..., lanes] uint8 (plane 0 = least significant byte)."""
    w = DTYPES[dtype].itemsize
    raw = np.ascontiguousarray(values, dtype=DTYPES[dtype]).view(np.uint8).reshape(*values.shape, w)
    return [raw[..., i] for i in range(w)]


def from_planes(planes, dtype: str) -> np.ndarray:
    """Byte planes (a sequence of [..., lanes] uint8 arrays) -> elements [..., lanes] of `dtype`."""
    first = planes[0]
    if first.size >= 4096 and len(planes) > 1:  # large (installed weights): whole-array integer ops beat byte stores
        out = np.zeros(first.shape, f"<u{len(planes)}")
        for i in range(len(planes) - 1, -1, -1):
            out <<= 8
            out |= planes[i]
        return out.view(DTYPES[dtype])
    out = np.empty((*first.shape, len(planes)), np.uint8)
    for i, plane in enumerate(planes):
        out[..., i] = plane
    return out.view(DTYPES[dtype])[..., 0]


# ---- elementwise arithmetic ----

def _int_range(dtype: str) -> tuple[int, int]:
    info = np.iinfo(DTYPES[dtype])
    return int(info.min), int(info.max)


def _finish(exact: np.ndarray, dtype: str, saturate: bool) -> np.ndarray:
    """Round an exactly computed result (int64 or float64) into `dtype`."""
    if dtype in INT_DTYPES:
        if saturate:
            lo, hi = _int_range(dtype)
            exact = np.clip(exact, lo, hi)
        return exact.astype(DTYPES[dtype])  # int64 -> narrower int wraps (modulo)
    return exact.astype(DTYPES[dtype])


def _wide(a: np.ndarray, dtype: str) -> np.ndarray:
    return a.astype(np.int64) if dtype in INT_DTYPES else a.astype(np.float64)


def binary(op: str, a: np.ndarray, b: np.ndarray, dtype: str, saturate: bool = False) -> np.ndarray:
    with np.errstate(all="ignore"):  # overflow to inf and NaN are results, not warnings
        return _binary(op, a, b, dtype, saturate)


def _binary(op: str, a: np.ndarray, b: np.ndarray, dtype: str, saturate: bool) -> np.ndarray:
    if dtype == "fp32" and op in ("add", "sub", "mul"):
        # IEEE fp32 arithmetic is already one correct rounding.
        return {"add": np.add, "sub": np.subtract, "mul": np.multiply}[op](a, b).astype(np.float32)
    x, y = _wide(a, dtype), _wide(b, dtype)
    if op == "add":
        r = x + y
    elif op == "sub":
        r = x - y
    elif op == "mul":
        r = x * y
    elif op == "max":
        r = np.maximum(x, y)
    elif op == "min":
        r = np.minimum(x, y)
    else:
        raise ValueError(op)
    return _finish(r, dtype, saturate)


def unary(op: str, a: np.ndarray, dtype: str, saturate: bool = False) -> np.ndarray:
    with np.errstate(all="ignore"):
        return _unary(op, a, dtype, saturate)


def _unary(op: str, a: np.ndarray, dtype: str, saturate: bool) -> np.ndarray:
    x = _wide(a, dtype)
    if op == "mov":
        return a.astype(DTYPES[dtype])
    if op == "neg":
        r = -x
    elif op == "abs":
        r = np.abs(x)
    elif op == "relu":
        r = np.maximum(x, 0)
    else:
        if dtype not in FLOAT_DTYPES:
            raise UserError(f"{op} needs a float dtype (fp16 or fp32), not {dtype}: cast first.")
        if op == "exp":
            r = np.exp(x)
        elif op == "tanh":
            r = np.tanh(x)
        elif op == "rsqrt":
            # rsqrt(0) saturates to the largest finite value (assumed): the zero padding lanes of a partial
            # tile must stay finite, or the MXM's zero weights for them turn inf into NaN (0 * inf)
            r = np.where(x == 0, np.finfo(DTYPES[dtype]).max, 1.0 / np.sqrt(x))
        else:
            raise ValueError(op)
    return _finish(r, dtype, saturate)


def cast(a: np.ndarray, src: str, dst: str, round_mode: str = "nearest") -> np.ndarray:
    """Type conversion. Float -> int rounds (nearest even, or toward zero) and saturates; NaN -> 0."""
    with np.errstate(all="ignore"):
        return _cast(a, src, dst, round_mode)


def _cast(a: np.ndarray, src: str, dst: str, round_mode: str) -> np.ndarray:
    if dst in FLOAT_DTYPES:
        return _wide(a, src).astype(DTYPES[dst])
    if src in INT_DTYPES:
        return _finish(a.astype(np.int64), dst, saturate=True)
    x = a.astype(np.float64)
    x = np.rint(x) if round_mode == "nearest" else np.trunc(x)
    lo, hi = _int_range(dst)
    x = np.nan_to_num(np.clip(x, lo, hi), nan=0.0)
    return x.astype(np.int64).astype(DTYPES[dst])


# ---- the MXM ----

class Int8Kernel:
    """[..., K] int8 x installed [N, K] int8 -> [..., N] int32 (A . W^T, as GroqAPI computes).

    |sum| <= K * 2^14 < 2^24 for K <= 1024, so float32 BLAS is exact whatever its summation order.
    """

    def __init__(self, weights: np.ndarray):
        exact_in_fp32 = weights.shape[1] * 2**14 < 2**24
        self.w = weights.astype(np.float32 if exact_in_fp32 else np.int64)  # a copy: the buffer may change

    def __call__(self, acts: np.ndarray) -> np.ndarray:
        return (acts.astype(self.w.dtype) @ self.w.T).astype(np.int32)


_FP16_SCALE = 2.0**24  # every finite fp16 times 2^24 is an integer of at most 41 bits
_SPLIT = 2.0**20
_U = 2.0**-53  # the unit roundoff of float64


def _split(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """fp16 values (in any float dtype) -> (high, low) integer halves of x * 2^24 = high * 2^20 + low, as float64."""
    scaled = x.astype(np.float64) * _FP16_SCALE
    hi = np.trunc(scaled / _SPLIT)
    return hi, scaled - hi * _SPLIT


class Fp16Kernel:
    """[..., K] fp16 x installed [N, K] fp16 -> [..., N] fp32: exact sum of products, rounded once.

    Only the rows and columns of the weights that hold a nonzero take part (a sum of zero products is
    +0, whatever the order it is added in): many installed weights are masks, folds and one-row Gram
    matrices. Products of fp16 values are exact in float64, so a float64 matmul misses the exact sum by
    at most about K * 2^-53 times the sum of |products|, in any summation order (BLAS blocking, batch
    shape). Where every value in that interval rounds to the same nonzero fp32, that is the answer.
    Otherwise (a sum close to a rounding midpoint, or to zero) the vector is done exactly: each operand,
    scaled to an integer, is split into 20-bit halves; the partial matmuls are sums of integers below
    2^49, exact in float64 in any order.
    """

    def __init__(self, weights: np.ndarray):
        self.weights = weights
        self._w = None  # the nonzero part as float64, made on first use

    def __call__(self, acts: np.ndarray) -> np.ndarray:
        if self._w is None:
            self._prepare()
        if acts.ndim > 1:  # a batch: vectors with an inf or NaN take the float64 path one by one, as alone
            rows = acts.reshape(-1, acts.shape[-1])
            exact = np.isfinite(rows).all(axis=1) & self.finite
            if exact.all():
                return self._exact(acts)
            out = np.empty((len(rows), self.weights.shape[0]), np.float32)
            out[exact] = self._exact(rows[exact])
            for i in np.flatnonzero(~exact):
                out[i] = self._float64(rows[i])
            return out.reshape(*acts.shape[:-1], -1)
        if not (self.finite and np.isfinite(acts).all()):
            return self._float64(acts)
        return self._exact(acts)

    def _float64(self, acts: np.ndarray) -> np.ndarray:
        """Non-finite operands: IEEE inf/NaN rules through a float64 product (a matrix-vector product)."""
        with np.errstate(all="ignore"):
            return (acts.astype(np.float64) @ self.weights.astype(np.float64).T).astype(np.float32)

    def _prepare(self) -> None:
        """The nonzero part: its rows found four values a word (most installed weights are one row or a few),
        then its columns in those rows alone. Inf and NaN are nonzero, so `finite` needs only that part."""
        bits = self.weights.view(np.uint16)
        if bits.flags.c_contiguous and bits.shape[1] % 4 == 0:
            rows = np.flatnonzero((bits.view(np.uint64) & 0x7FFF7FFF7FFF7FFF).any(axis=1))
        else:
            rows = np.flatnonzero((bits & 0x7FFF).any(axis=1))
        nonzero = (bits[rows] & 0x7FFF) != 0
        cols = np.flatnonzero(nonzero.any(axis=0))
        self._n, self._k = _span(rows), _span(cols)
        part = nonzero[:, cols]
        block = self.weights[self._n][:, self._k]
        self.finite = bool(((block.view(np.uint16) & 0x7C00) != 0x7C00).all())  # exponent all ones: inf, NaN
        self._w = block.astype(np.float64)
        self._w_abs = np.abs(self._w)
        # a selection (every output one product, as a mask's, a fold's or a broadcast's): products of two fp16
        # values are exact in fp32, so each sum is its one product (a zero one +0, as a sum of +-0 products)
        self._pick = None
        if part.size and (part.sum(axis=1) == 1).all():
            k = part.argmax(axis=1)
            self._pick = (cols[k], self._w[np.arange(len(k)), k].astype(np.float32))

    def _exact(self, acts: np.ndarray) -> np.ndarray:
        rows = acts.reshape(-1, acts.shape[-1])
        out = np.zeros((len(rows), len(self.weights)), np.float32)
        if self._pick is not None:
            cols, w = self._pick
            out[:, self._n] = rows[:, cols].astype(np.float32) * w + np.float32(0)
            return out.reshape(*acts.shape[:-1], len(self.weights))
        a = rows[:, self._k].astype(np.float64)
        s = a @ self._w.T
        # |s - exact| <= K u / (1 - K u) * sum|p|; the bound is itself rounded, and so are s -+ err: 4 (K + 1) u
        # covers all three with room to spare
        bound = np.abs(a) @ self._w_abs.T
        err = bound * (4 * (a.shape[-1] + 1) * _U)
        lo, hi = (s - err).astype(np.float32), (s + err).astype(np.float32)
        part = s.astype(np.float32)
        zero = bound == 0  # every product is +-0
        unsure = ~(((lo == hi) & ((lo > 0) | (hi < 0))) | zero)
        if unsure.any():  # only those sums are done exactly: a row or two of a column or two
            r, n = (np.flatnonzero(unsure.any(axis=axis)) for axis in (1, 0))
            part[np.ix_(r, n)] = self._split_exact(a[r], self._w[n])
        part[zero] = 0.0
        out[:, self._n] = part
        return out.reshape(*acts.shape[:-1], len(self.weights))

    @staticmethod
    def _split_exact(a: np.ndarray, w: np.ndarray) -> np.ndarray:
        w_hi, w_lo = _split(w)
        a_hi, a_lo = _split(a)
        hh = a_hi @ w_hi.T
        mid = a_hi @ w_lo.T + a_lo @ w_hi.T  # two sums of integers below 2^49: their sum is exact
        ll = a_lo @ w_lo.T
        # hh, mid and ll are exact integers; their sum is rounded once, to fp32
        return _sum_to_fp32(hh * (_SPLIT * _SPLIT), mid * _SPLIT, ll, 1.0 / (_FP16_SCALE * _FP16_SCALE))


def _span(index: np.ndarray):
    """Sorted indices as a slice where they are consecutive (numpy then takes a view)."""
    if len(index) and index[-1] - index[0] == len(index) - 1:
        return slice(int(index[0]), int(index[-1]) + 1)
    return index


def _two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """s + e == a + b exactly, s the rounded sum (Knuth)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _sum_to_fp32(a: np.ndarray, b: np.ndarray, c: np.ndarray, scale: float) -> np.ndarray:
    """(a + b + c) * scale rounded once to fp32, for integer-valued float64 a, b, c.

    The exact sum is carried as a rounded float64 and an exact remainder, then rounded to odd at 53
    bits: with 29 bits to spare, the cast to fp32 then rounds exactly as the exact sum would."""
    s, e1 = _two_sum(a, b)
    t, e2 = _two_sum(s, c)
    t, r = _two_sum(t, e1 + e2)  # the errors are integers below 2^53: their sum is exact
    inexact = r != 0
    if inexact.any():
        away = np.sign(r) == np.sign(t)  # the exact sum lies beyond t, away from zero
        other = np.nextafter(t, np.where(away, np.copysign(np.inf, t), 0.0))
        even = (t.view(np.int64) & 1) == 0
        t = np.where(inexact & even, other, t)  # of the two floats around the sum, take the odd one
    return (t * scale).astype(np.float32)


def mxm_kernel(dtype: str, weights: np.ndarray):
    """The multiply an MXM plane performs once `weights` ([N, K], int8 or fp16) are installed."""
    return Int8Kernel(weights) if dtype == "int8" else Fp16Kernel(weights)


_kernels: weakref.WeakValueDictionary = weakref.WeakValueDictionary()  # id of shared weights -> their kernel


def shared_kernel(kernel: Int8Kernel | Fp16Kernel) -> Int8Kernel | Fp16Kernel:
    """A kernel with the same installed weights as `kernel`, the first one asked for while it is in use: a
    kernel kept for later runs holds its weights and their prepared parts, and every layer's program installs
    the same masks and folds."""
    attr = "w" if isinstance(kernel, Int8Kernel) else "weights"
    weights = shared(getattr(kernel, attr))
    setattr(kernel, attr, weights)  # held by the kernel, so its id stays the key while the kernel lives
    return _kernels.setdefault(id(weights), kernel)
