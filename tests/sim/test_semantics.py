"""Every instruction's semantics against numpy, run through the cycle-accurate executor on tsp-mini.

References are written here independently of openlpu.chip.numerics: integers in exact Python
arithmetic, floats in float64 rounded once to the target type, the fp16 MXM with exact fractions.
"""

import dataclasses
import math
from fractions import Fraction

import numpy as np
import pytest
from chipkit import EAST, MINI, MXM_AT, NP, SXM_AT, VXM_AT, WEST, Kit, earliest, loopback, vxm
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from openlpu.chip import numerics as nx
from openlpu.chip.asm import assemble
from openlpu.chip.isa import ISA
from openlpu.errors import UserError
from openlpu.sim.exact import run
from openlpu.sim.verify import check

LANES = MINI.lanes
INTS = ("int8", "int16", "int32")
FLOATS = ("fp16", "fp32")
FEW = settings(max_examples=15, deadline=None, derandomize=True)


def bounds(dt):
    info = np.iinfo(NP[dt])
    return int(info.min), int(info.max)


def fit(values, dt, saturate):
    """Exact integers (an object array) -> dt, wrapping modulo 2^bits or saturating."""
    lo, hi = bounds(dt)
    if saturate:
        out = [min(max(v, lo), hi) for v in values.ravel()]
    else:
        out = [(v - lo) % (hi - lo + 1) + lo for v in values.ravel()]
    return np.array(out, dtype=NP[dt]).reshape(values.shape)


def same(got, expected):
    """Bit-identical, except that any NaN matches any NaN."""
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.dtype == expected.dtype, (got.dtype, expected.dtype)
    if got.dtype.kind == "f":
        nan = np.isnan(expected)
        assert np.array_equal(np.isnan(got), nan)
        bits = {2: np.uint16, 4: np.uint32}[got.dtype.itemsize]
        assert np.array_equal(got.view(bits)[~nan], expected.view(bits)[~nan]), (got, expected)
    else:
        assert np.array_equal(got, expected), (got, expected)


def rows(values, dt):
    """A flat list of values -> [rows, lanes] of dt, padded with ones."""
    flat = list(values) + [1] * (-len(values) % LANES)
    return np.array(flat, dtype=NP[dt]).reshape(-1, LANES)


def vectors(dt, shape=(2, LANES)):
    """Random arrays of dt; floats from random bit patterns, so NaN, inf and subnormals all occur."""
    if dt in FLOATS:
        bits = np.uint16 if dt == "fp16" else np.uint32
        return hnp.arrays(bits, shape).map(lambda a: a.view(NP[dt]))
    return hnp.arrays(NP[dt], shape)


def run_vxm(op, dt, a, b=None, **kw):
    """vxm() takes up to 4 rows at a time (the staging slices also store the result)."""
    parts = [vxm(op, dt, a[i:i + 4], None if b is None else b[i:i + 4], **kw) for i in range(0, len(a), 4)]
    return np.concatenate(parts)


# ---------------------------------------------------------------- VXM binary

EDGE = {
    "int8": [-128, -127, -1, 0, 1, 126, 127, 64],
    "int16": [-32768, -32767, -1, 0, 1, 32766, 32767, 256],
    "int32": [-(2**31), -(2**31) + 1, -1, 0, 1, 2**31 - 2, 2**31 - 1, 65536],
    "fp16": [0.0, -0.0, 2.0**-24, 2.0**-14, 1.0, -1.0, 1 + 2.0**-10, 2048.0, 65504.0, -65504.0,
             np.inf, -np.inf, np.nan, 0.1, 3.0, 16.0],
    "fp32": [0.0, -0.0, 2.0**-149, 2.0**-126, 1.0, -1.0, 1 + 2.0**-23, 2.0**24, 3.4028234663852886e38,
             -3.4028234663852886e38, np.inf, -np.inf, np.nan, 0.1, 3.0, 16.0],
}
BINARY = ["ADD", "ADD.SAT", "SUB", "SUB.SAT", "MUL", "MUL.SAT", "MAX", "MIN"]
PY_BINARY = {"ADD": lambda x, y: x + y, "SUB": lambda x, y: x - y, "MUL": lambda x, y: x * y,
             "MAX": np.maximum, "MIN": np.minimum}


def binary_ref(op, a, b, dt):
    base, sat = op.split(".")[0], op.endswith(".SAT")
    if dt in INTS:
        return fit(PY_BINARY[base](a.astype(object), b.astype(object)), dt, sat)
    with np.errstate(all="ignore"):  # fp16/fp32: exact (or innocuously double-rounded) in float64, rounded once
        return PY_BINARY[base](a.astype(np.float64), b.astype(np.float64)).astype(NP[dt])


def edge_pairs(dt):
    values = EDGE[dt]
    pairs = [(x, y) for x in values for y in values]
    return rows([x for x, _ in pairs], dt), rows([y for _, y in pairs], dt)


@pytest.mark.parametrize("dt", INTS + FLOATS)
@pytest.mark.parametrize("op", BINARY)
def test_binary_ops_on_every_pair_of_edge_values(op, dt):
    a, b = edge_pairs(dt)
    same(run_vxm(op, dt, a, b), binary_ref(op, a, b, dt))


@pytest.mark.parametrize("dt", INTS + FLOATS)
@FEW
@given(data=st.data())
def test_binary_ops_on_random_vectors(dt, data):
    op = data.draw(st.sampled_from(BINARY))
    a = data.draw(vectors(dt))
    b = data.draw(vectors(dt))
    same(vxm(op, dt, a, b), binary_ref(op, a, b, dt))


@pytest.mark.parametrize("dt, a, b, op, expected", [
    ("int8", 127, 1, "ADD", -128), ("int8", 127, 1, "ADD.SAT", 127),
    ("int8", -128, 1, "SUB", 127), ("int8", -128, 1, "SUB.SAT", -128),
    ("int8", 16, 16, "MUL", 0), ("int8", -16, 16, "MUL.SAT", -128),
    ("int16", 32767, 32767, "ADD", -2), ("int16", 300, 300, "MUL.SAT", 32767),
    ("int32", 2**31 - 1, 1, "ADD", -(2**31)), ("int32", 65536, 65536, "MUL", 0),
    ("int32", -(2**31), 1, "SUB.SAT", -(2**31)), ("int32", 65536, -65536, "MUL.SAT", -(2**31)),
    ("fp16", 2048.0, 1.0, "ADD", 2048.0),  # 2049 is a tie between fp16 neighbours: to even
    ("fp16", 2048.0, 3.0, "ADD", 2052.0),  # 2051 is a tie: to even 2052
    ("fp16", 65504.0, 16.0, "ADD", np.inf),  # 65520 ties 65504/65536: to even, which overflows
    ("fp16", 65504.0, 15.0, "ADD", 65504.0),
    ("fp16", 1 + 2.0**-10, 1 + 2.0**-10, "MUL", 1 + 2.0**-9),  # 1 + 2^-9 + 2^-20 rounds down
    ("fp32", 2.0**24, 1.0, "ADD", 2.0**24), ("fp32", 3.4028234663852886e38, 2.0, "MUL", np.inf),
])
def test_wrap_saturate_and_round_once_golden_values(dt, a, b, op, expected):
    got = vxm(op, dt, np.full((1, LANES), a, NP[dt]), np.full((1, LANES), b, NP[dt]))
    same(got, np.full((1, LANES), expected, NP[dt]))


# ---------------------------------------------------------------- VXM unary

def unary_ref(op, a, dt):
    base, sat = op.split(".")[0], op.endswith(".SAT")
    if dt in INTS:
        x = a.astype(object)
        r = {"NEG": lambda: -x, "ABS": lambda: np.abs(x), "RELU": lambda: np.maximum(x, 0), "MOV": lambda: x}[base]()
        return fit(r, dt, sat)
    x = a.astype(np.float64)
    with np.errstate(all="ignore"):
        r = {"NEG": lambda: -x, "ABS": lambda: np.abs(x), "RELU": lambda: np.maximum(x, 0.0), "MOV": lambda: x,
             "EXP": lambda: np.exp(x), "TANH": lambda: np.tanh(x), "RSQRT": lambda: _rsqrt(x, dt)}[base]()
        return r.astype(NP[dt])


UNARY = ["NEG", "NEG.SAT", "ABS", "ABS.SAT", "RELU", "MOV"]
TRANSCENDENTAL = ["EXP", "TANH", "RSQRT"]


def _rsqrt(x, dtype):
    """rsqrt saturates at zero to the largest finite value (docs/assembly.md)."""
    big = np.finfo(np.float16 if dtype == "fp16" else np.float32).max
    with np.errstate(divide="ignore"):
        return np.where(x == 0, big, 1.0 / np.sqrt(x))


@pytest.mark.parametrize("dt", INTS + FLOATS)
@pytest.mark.parametrize("op", UNARY)
def test_unary_ops_on_edge_values(op, dt):
    a = rows(EDGE[dt], dt)
    same(run_vxm(op, dt, a), unary_ref(op, a, dt))


@pytest.mark.parametrize("dt", FLOATS)
@pytest.mark.parametrize("op", TRANSCENDENTAL)
def test_transcendentals_on_edge_and_ordinary_values(op, dt):
    a = rows(EDGE[dt] + [-20.0, -2.5, -0.5, 0.5, 2.5, 12.0, 4.0, 1e-3], dt)
    same(run_vxm(op, dt, a), unary_ref(op, a, dt))


@pytest.mark.parametrize("dt", INTS + FLOATS)
@FEW
@given(data=st.data())
def test_unary_ops_on_random_vectors(dt, data):
    op = data.draw(st.sampled_from(UNARY + (TRANSCENDENTAL if dt in FLOATS else [])))
    a = data.draw(vectors(dt))
    same(vxm(op, dt, a), unary_ref(op, a, dt))


@pytest.mark.parametrize("dt, op, a, expected", [
    ("int8", "NEG", -128, -128), ("int8", "NEG.SAT", -128, 127),
    ("int8", "ABS", -128, -128), ("int8", "ABS.SAT", -128, 127),
    ("int16", "ABS", -32768, -32768), ("int16", "ABS.SAT", -32768, 32767),
    ("int32", "NEG", -(2**31), -(2**31)), ("int32", "NEG.SAT", -(2**31), 2**31 - 1),
    ("int8", "RELU", -5, 0), ("fp16", "RELU", -3.0, 0.0),
    ("fp16", "EXP", 0.0, 1.0), ("fp16", "EXP", 12.0, np.inf), ("fp16", "EXP", -20.0, 0.0),
    ("fp32", "RSQRT", 4.0, 0.5), ("fp16", "RSQRT", 0.0, 65504.0), ("fp32", "RSQRT", -1.0, np.nan),
    ("fp32", "TANH", 0.0, 0.0), ("fp16", "TANH", 20.0, 1.0),
])
def test_unary_golden_values(dt, op, a, expected):
    same(vxm(op, dt, np.full((1, LANES), a, NP[dt])), np.full((1, LANES), expected, NP[dt]))


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("op, dt, a, b", [("ADD", "fp32", 3e38, 3e38), ("SUB", "fp16", np.inf, np.inf),
                                          ("MUL", "fp16", 0.0, np.inf), ("EXP", "fp16", 12.0, None)])
def test_overflow_and_nan_are_results_not_numpy_warnings(op, dt, a, b):
    """inf and NaN are defined results of chip arithmetic; a user running a program sees no warnings."""
    full = np.full((1, LANES), a, NP[dt])
    vxm(op, dt, full, None if b is None else np.full((1, LANES), b, NP[dt]))


@pytest.mark.parametrize("op", TRANSCENDENTAL)
def test_transcendentals_on_integers_are_a_user_error(op):
    with pytest.raises(UserError, match="cast"):
        vxm(op, "int16", np.ones((1, LANES), np.int16))


# ---------------------------------------------------------------- CAST

def cast_ref(a, src, dst, mode="nearest"):
    out = []
    for v in a.ravel().tolist():
        if dst in FLOATS:
            out.append(v)  # numpy rounds the exact value (int or float64) once, below
        elif src in INTS:
            lo, hi = bounds(dst)
            out.append(min(max(v, lo), hi))
        else:
            lo, hi = bounds(dst)
            if math.isnan(v):
                out.append(0)
            elif math.isinf(v):
                out.append(hi if v > 0 else lo)
            else:
                out.append(min(max(round(v) if mode == "nearest" else math.trunc(v), lo), hi))
    if dst in FLOATS:
        with np.errstate(over="ignore"):
            return np.array(out, np.float64).astype(NP[dst]).reshape(a.shape)
    return np.array(out, NP[dst]).reshape(a.shape)


CAST_VALUES = {
    "int8": [-128, -127, -1, 0, 1, 127, 100, -100],
    "int16": [-32768, -129, -128, 127, 128, 255, 256, 32767, 300, -300, 0, 1],
    "int32": [-(2**31), 2**31 - 1, -32769, 32768, 65504, 65519, 65520, 16777217, 2049, 129, -129, 0],
    "fp16": [0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.7, -2.7, 127.5, 128.0, -128.5, -129.0, 255.5, 300.0,
             65504.0, -65504.0, np.inf, -np.inf, np.nan, -0.0, 2.0**-24, 0.49951171875],
    "fp32": [0.5, 1.5, 2.5, -0.5, -2.5, 2.7, -2.7, 127.5, 128.0, -128.5, 32767.5, 32768.0, -32768.5,
             2147483520.0, 2147483648.0, -2147483648.0, -2147483904.0, 65519.0, 65520.0, 1 + 2.0**-11,
             np.inf, -np.inf, np.nan, 3e38, 1e-30, 16777217.0],
}
PAIRS = [(s, d) for s in INTS + FLOATS for d in INTS + FLOATS]


@pytest.mark.parametrize("src, dst", PAIRS)
def test_cast_between_every_pair_of_dtypes(src, dst):
    a = rows(CAST_VALUES[src], src)
    same(run_vxm("CAST", src, a, to=dst), cast_ref(a, src, dst))


@pytest.mark.parametrize("src, dst", [(s, d) for s in FLOATS for d in INTS])
def test_config_round_zero_truncates_float_to_int(src, dst):
    a = rows(CAST_VALUES[src], src)
    same(run_vxm("CAST", src, a, to=dst, config="zero"), cast_ref(a, src, dst, mode="zero"))


@pytest.mark.parametrize("src, dst", [("fp32", "int32"), ("fp16", "int8"), ("int32", "fp16"), ("fp32", "fp16")])
@FEW
@given(data=st.data())
def test_cast_random_vectors(src, dst, data):
    a = data.draw(vectors(src))
    same(vxm("CAST", src, a, to=dst), cast_ref(a, src, dst))


def test_cast_golden_values():
    got = vxm("CAST", "fp32", rows([0.5, 1.5, 2.5, -2.5, 300.0, -1e9, np.nan, np.inf], "fp32"), to="int8")
    assert got[0, :8].tolist() == [0, 2, 2, -2, 127, -128, 0, 127]
    got = vxm("CAST", "int32", rows([65519, 65520, 2049, 16777217], "int32"), to="fp16")
    assert got[0, :4].tolist() == [65504.0, np.inf, 2048.0, np.inf]
    got = vxm("CAST", "int32", rows([16777217, 2**31 - 1], "int32"), to="fp32")
    assert got[0, :2].tolist() == [16777216.0, 2147483648.0]


@pytest.mark.parametrize("config_cycle, expected", [(VXM_AT - 1, 2), (VXM_AT, 3)])
def test_config_takes_effect_when_it_commits(config_cycle, expected):
    """CONFIG issued at t changes the rounding of a CAST that reads at t + d_func(CONFIG) or later."""
    assert ISA["CONFIG"].d_func == 1
    kit = Kit()
    kit.load("a", np.full((1, LANES), 2.75, np.float32), "fp32", WEST, "e0", "VXM", VXM_AT)
    kit.emit("VXM.1", config_cycle, "CONFIG", "vxm.round", "zero")
    kit.emit("VXM.0", VXM_AT, "CAST", "fp32", "int8", "e0", "e4")
    kit.store("out", "int8", 1, EAST, "e4", "VXM", VXM_AT + ISA["CAST"].d_func)
    assert kit.run().outputs["out"][0].tolist() == [expected] * LANES


# ---------------------------------------------------------------- ALU chaining


def test_alu_chaining_through_a_latch():
    """ALU 0 adds into its latch only (dst -); ALU 1 squares the latch: (a + b)^2, both wrapping int32."""
    rng = np.random.default_rng(0)
    a = rng.integers(-(2**31), 2**31, (3, LANES)).astype(np.int32)
    b = rng.integers(-(2**31), 2**31, (3, LANES)).astype(np.int32)
    kit = Kit()
    kit.load("a", a, "int32", WEST, "e0", "VXM", VXM_AT)
    kit.load("b", b, "int32", EAST, "w0", "VXM", VXM_AT)
    kit.emit("VXM.0", VXM_AT, "ADD", "int32", "e0", "w0", None)
    kit.repeat("VXM.0", 2)
    chained = VXM_AT + ISA["ADD"].d_func  # the latch holds row r from this cycle + r
    kit.emit("VXM.1", chained, "MUL", "int32", "alu0", "alu0", "e4")
    kit.repeat("VXM.1", 2)
    kit.store("out", "int32", 3, EAST, "e4", "VXM", chained + ISA["MUL"].d_func)
    s = fit(a.astype(object) + b.astype(object), "int32", False)
    same(kit.run().outputs["out"], fit(s.astype(object) ** 2, "int32", False))


# ---------------------------------------------------------------- stream motion and MEM


def test_a_value_passes_every_slice_downstream_one_hop_per_cycle_and_reading_does_not_consume():
    x = np.arange(LANES, dtype=np.int8)[None] - 7
    kit = Kit()
    kit.load("x", x, "int8", ["MEM_W0"], "e3", "MEM_W0", 2)  # READ in cycle 0, at MEM_W0 in cycle 2
    for k, s in enumerate(EAST):
        kit.store(f"y{k}", "int8", 1, [s], "e3", "MEM_W0", 2)  # each slice k + 2 hops on
    out = kit.run().outputs
    assert [kit.b.program.queues[s][0].cycle for s in EAST] == [4, 5, 6, 7]
    for k in range(4):
        assert np.array_equal(out[f"y{k}"], x)


@pytest.mark.parametrize("late", [-1, 1])
def test_without_the_verifier_a_mistimed_write_gets_whatever_is_there(late):
    x = np.full((1, LANES), 9, np.int8)
    kit = Kit()
    kit.load("x", x, "int8", ["MEM_W0"], "e0", "MEM_W0", 2)
    kit.store("y", "int8", 1, ["MEM_E1"], "e0", "MEM_W0", 2 + late)
    program = kit.program()
    assert [v.kind for v in check(program)] == ["stream-early"]
    assert not run(program, check=False).outputs["y"].any()


@pytest.mark.parametrize("every", [1, 3])
def test_read_and_write_repeat_advance_addresses(every):
    x = np.random.default_rng(1).integers(-128, 128, (5, LANES)).astype(np.int8)
    kit = Kit()
    kit.load("x", x, "int8", ["MEM_W1"], "e2", "MEM_W1", 2, every=every, addr=3)
    kit.store("y", "int8", 5, ["MEM_E2"], "e2", "MEM_W1", 2, every=every, addr=100)
    kit.b.tensor("around", "int8", 7, ["MEM_E2"], 99, output=True)  # addresses 99..105 of the same slice
    out = kit.run().outputs
    assert np.array_equal(out["y"], x)
    assert np.array_equal(out["around"][1:6], x)  # the stored rows are exactly 100..104
    assert not out["around"][0].any() and not out["around"][6].any()


def _gather_kit(addrs):
    kit = Kit()
    kit.load("addrs", addrs, "int16", ["MEM_W0", "MEM_W1"], "e0", "MEM_E1", 10)
    return kit


def test_gather_reads_one_address_per_lane():
    rng = np.random.default_rng(2)
    n = MINI.mem_addresses
    table = rng.integers(-128, 128, (16, LANES)).astype(np.int8)
    top = rng.integers(-128, 128, (1, LANES)).astype(np.int8)  # the slice's last address, n - 1
    addrs = rng.integers(0, 16, (1, LANES)).astype(np.int16)
    addrs[0, :4] = [-1, 2 * n - 1, n + 3, 15]  # per-lane addresses are taken modulo the slice's n
    kit = _gather_kit(addrs)
    kit.b.tensor("table", "int8", 16, ["MEM_E1"], 0)
    kit.b.tensor("top", "int8", 1, ["MEM_E1"], n - 1)
    kit.inputs.update(table=table, top=top)
    kit.emit("MEM_E1", 10, "GATHER", "e0", "w2")
    kit.store("out", "int8", 1, ["MEM_E0"], "w2", "MEM_E1", 10 + ISA["GATHER"].d_func)
    got = kit.run().outputs["out"][0]
    sram = np.zeros((n, LANES), np.int8)
    sram[:16], sram[n - 1] = table, top[0]
    assert np.array_equal(got, sram[addrs[0].astype(np.int64) % n, np.arange(LANES)])
    assert got[:3].tolist() == [top[0, 0], top[0, 1], table[3, 2]]


def test_scatter_writes_one_address_per_lane():
    rng = np.random.default_rng(3)
    addrs = rng.integers(0, 8, (1, LANES)).astype(np.int16)
    src = rng.integers(-128, 128, (1, LANES)).astype(np.int8)
    kit = _gather_kit(addrs)
    kit.load("src", src, "int8", ["MEM_W2"], "e2", "MEM_E1", 10)
    kit.emit("MEM_E1", 10, "SCATTER", "e0", "e2")
    kit.b.tensor("table", "int8", 8, ["MEM_E1"], 0, output=True)
    got = kit.run().outputs["table"]
    expected = np.zeros((8, LANES), np.int8)
    expected[addrs[0], np.arange(LANES)] = src[0]
    assert np.array_equal(got, expected)


# ---------------------------------------------------------------- MXM

LW_AT = MXM_AT  # weights reach MXM_W from the west slices in this cycle and after
IW_AT = LW_AT + LANES // 4


def _int8_weights(kit, w):
    """W [LANES, LANES]: row 4j+i from slice MEM_Wi, address j, on stream w_i; LW takes 4 rows a cycle."""
    for i, s in enumerate(WEST):
        kit.load(f"w{i}", w[i::4], "int8", [s], f"w{i}", "MXM_W", LW_AT)
    kit.emit("MXM0.w", LW_AT, "LW", "w0", 4, 0)
    kit.repeat("MXM0.w", LANES // 4 - 1)
    kit.emit("MXM0.w", IW_AT, "IW", "int8")
    return IW_AT + ISA["IW"].d_func


def _store_int32_from_plane0(kit, rows, cycle, every=1):
    kit.store("z", "int32", rows, WEST[::-1], "e0", "MXM_W", cycle, every=every)


def test_int8_matmul_is_exact():
    rng = np.random.default_rng(4)
    w = rng.integers(-128, 128, (LANES, LANES)).astype(np.int8)
    x = rng.integers(-128, 128, (3, LANES)).astype(np.int8)
    x[0] = -128  # the extreme products
    w[:, :] = np.where(np.arange(LANES) % 2, w, -128)
    kit = Kit()
    ready = _int8_weights(kit, w)
    kit.load("x", x, "int8", ["MEM_W0"], "w4", "MXM_W", ready, addr=16)
    kit.emit("MXM0.a", ready, "ACC", "int8", "w4", "e0", 0, "set")
    kit.repeat("MXM0.a", 2)
    _store_int32_from_plane0(kit, 3, ready + ISA["ACC"].d_func)
    expected = x.astype(object) @ w.T.astype(object)
    assert np.array_equal(kit.run().outputs["z"], expected.astype(np.int32))


@pytest.mark.parametrize("mode", ["set", "acc"])
def test_acc_sets_or_accumulates_a_slot_reading_activation_buffers(mode):
    """Pass 1 (ABC into b5.., ACC from the buffers) sets slots 2..4; pass 2 sets or adds and emits."""
    rng = np.random.default_rng(5)
    w = rng.integers(-128, 128, (LANES, LANES)).astype(np.int8)
    x1 = rng.integers(-128, 128, (3, LANES)).astype(np.int8)
    x2 = rng.integers(-128, 128, (3, LANES)).astype(np.int8)
    kit = Kit()
    ready = _int8_weights(kit, w)
    kit.load("x1", x1, "int8", ["MEM_W0"], "w4", "MXM_W", ready - 5, addr=16)
    kit.emit("MXM0.a", ready - 5, "ABC", "int8", "w4", "b5")
    kit.repeat("MXM0.a", 2)
    kit.emit("MXM0.a", ready, "ACC", "int8", "b5", None, 2, "set")
    kit.repeat("MXM0.a", 2)
    kit.load("x2", x2, "int8", ["MEM_W1"], "w4", "MXM_W", ready + 4, addr=16)
    kit.emit("MXM0.a", ready + 4, "ACC", "int8", "w4", "e0", 2, mode)
    kit.repeat("MXM0.a", 2)
    _store_int32_from_plane0(kit, 3, ready + 4 + ISA["ACC"].d_func)
    p1, p2 = (x.astype(object) @ w.T.astype(object) for x in (x1, x2))
    expected = p2 if mode == "set" else p1 + p2
    assert np.array_equal(kit.run().outputs["z"], expected.astype(np.int32))


def to_fp32(q: Fraction) -> np.float32:
    """The exact rational q rounded once to fp32, to nearest even (finite results only)."""
    f = np.float32(float(q))
    candidates = [np.nextafter(f, np.float32(-np.inf)), f, np.nextafter(f, np.float32(np.inf))]
    return min(candidates, key=lambda c: (abs(Fraction(float(c)) - q), int(c.view(np.uint32)) & 1))


def fp16_matmul_exact(x, w):
    """[rows, K] fp16 x [N, K] fp16 -> fp32: each sum of exact products rounded once."""
    xf = [[Fraction(float(v)) for v in r] for r in x]
    wf = [[Fraction(float(v)) for v in r] for r in w]
    return np.array([[to_fp32(sum(a * b for a, b in zip(xr, wr, strict=True))) for wr in wf] for xr in xf],
                    np.float32)


def _fp16_matmul(w, xs, modes, via_buffers=False):
    """LW low bytes into plane 0 and high bytes into plane 1, IW fp16, then one ACC pass per x in xs
    (reading the stream, or activation buffers that ABC filled from it beforehand)."""
    kit = Kit()
    kit.load("w", w, "fp16", ["MEM_W0", "MEM_W1"], "w0", "MXM_W", LW_AT)
    for plane, stream in ((0, "w0"), (1, "w1")):
        kit.emit(f"MXM{plane}.w", LW_AT, "LW", stream, 1, 0)
        kit.repeat(f"MXM{plane}.w", LANES - 1)
    kit.emit("MXM0.w", LW_AT + LANES, "IW", "fp16")
    at = LW_AT + LANES + ISA["IW"].d_func
    rows = len(xs[0])
    for k, (x, mode) in enumerate(zip(xs, modes, strict=True)):
        last = k == len(xs) - 1
        src = "w2"
        if via_buffers:  # ABC latches row r into b(8k + r) while the weights install
            abc = LW_AT + LANES + 6 * k
            kit.load(f"x{k}", x, "fp16", ["MEM_W2", "MEM_W3"], "w2", "MXM_W", abc, addr=16 * k)
            kit.emit("MXM0.a", abc, "ABC", "fp16", "w2", f"b{8 * k}")
            kit.repeat("MXM0.a", rows - 1)
            src = f"b{8 * k}"
        else:
            kit.load(f"x{k}", x, "fp16", ["MEM_W2", "MEM_W3"], "w2", "MXM_W", at, every=2, addr=16 * k)
        kit.emit("MXM0.a", at, "ACC", "fp16", src, "e0" if last else None, 0, mode)
        kit.repeat("MXM0.a", rows - 1, 2)
        if last:
            kit.store("z", "fp32", rows, WEST[::-1], "e0", "MXM_W", at + ISA["ACC"].d_func, every=2)
        at += 2 * rows
    return kit.run().outputs["z"]


@pytest.mark.parametrize("via_buffers", [False, True])
def test_fp16_matmul_rounds_each_sum_once_to_fp32(via_buffers):
    rng = np.random.default_rng(6)
    w = rng.standard_normal((LANES, LANES)).astype(np.float16)
    x = rng.standard_normal((2, LANES)).astype(np.float16)
    same(_fp16_matmul(w, [x], ["set"], via_buffers), fp16_matmul_exact(x, w))


def test_fp16_matmul_sum_that_needs_more_than_53_bits_is_rounded_once():
    """256 + 2^-16 + 2^-48 is just above the midpoint of 256 and its fp32 successor 256 + 2^-15.

    Rounding the sum to float64 first drops 2^-48 and leaves an exact tie, which then rounds to even
    (256): a double rounding. One rounding gives 256 + 2^-15.
    """
    w = np.zeros((LANES, LANES), np.float16)
    x = np.zeros((1, LANES), np.float16)
    w[0, :3] = x[0, :3] = [16.0, 2.0**-8, 2.0**-24]
    z = _fp16_matmul(w, [x], ["set"])
    assert z[0, 0] == np.float32(256 + 2.0**-15)


def test_fp16_mxm_kernel_on_sparse_weights_cancellations_and_zeros():
    """The kernel's paths (float64 with an error bound, the exact split near a midpoint, only the nonzero
    rows and columns of the weights) give every sum exactly rounded once, and +0 for sums that are zero."""
    rng = np.random.default_rng(9)
    w = np.zeros((24, 40), np.float16)
    w[2, :3] = [16.0, 2.0**-8, 2.0**-24]  # with x's row 0 below: just above a midpoint, after a double rounding
    w[5] = rng.standard_normal(40)
    w[6, 1:5] = [1.0, -1.0, 3.0, -3.0]  # cancels to zero for x's row 1
    w[11, 7] = 2.0**-14
    w[17, 30:] = rng.standard_normal(10) * 1000
    x = (rng.standard_normal((5, 40)) * 2.0 ** rng.integers(-10, 10, (5, 40))).astype(np.float16)
    x[0, :3] = [16.0, 2.0**-8, 2.0**-24]
    x[1, 1:5] = [7.0, 7.0, 5.0, 5.0]
    x[2] = -0.0
    x[3, ::2] = 0.0
    same(nx.mxm_kernel("fp16", w)(x), fp16_matmul_exact(x, w))


def test_fp16_mxm_kernel_on_a_selection_gives_each_product_exactly():
    """Masks, folds and broadcasts hold one nonzero a row: each sum is one product, exact in fp32 even at the
    ends of fp16's range (subnormal times subnormal, 65504 squared), and +0 where it is zero."""
    rng = np.random.default_rng(4)
    w = np.zeros((40, 24), np.float16)
    picked = rng.integers(0, 24, 30)
    w[np.arange(30), picked] = rng.standard_normal(30) * 2.0 ** rng.integers(-24, 15, 30)
    w[30, 3], w[31, 5], w[32, 0] = 65504.0, 2.0**-24, -1.0  # rows 33..39 stay zero
    x = (rng.standard_normal((6, 24)) * 2.0 ** rng.integers(-24, 15, (6, 24))).astype(np.float16)
    x[0, 3], x[0, 5] = 65504.0, 2.0**-24
    x[1] = -0.0  # products -0 or +0: the sum is +0
    x[2, ::3] = 0.0
    kernel = nx.mxm_kernel("fp16", w)
    got = kernel(x)
    assert kernel._pick is not None  # the selection path, not the general one
    same(got, fp16_matmul_exact(x, w))
    assert not np.signbit(got[1]).any()


@pytest.mark.parametrize("via_buffers", [False, True])
@pytest.mark.parametrize("mode", ["set", "acc"])
def test_fp16_acc_sets_or_accumulates_in_fp32(mode, via_buffers):
    rng = np.random.default_rng(7)
    w = rng.standard_normal((LANES, LANES)).astype(np.float16)
    x1 = (rng.standard_normal((2, LANES)) * 100).astype(np.float16)
    x2 = rng.standard_normal((2, LANES)).astype(np.float16)
    p1, p2 = fp16_matmul_exact(x1, w), fp16_matmul_exact(x2, w)
    expected = p2 if mode == "set" else p1 + p2  # numpy's fp32 add rounds once
    same(_fp16_matmul(w, [x1, x2], ["set", mode], via_buffers), expected)


# ---------------------------------------------------------------- SXM


def _sxm(op, dt, x, *args, chip=MINI, maps=None):
    """Stream x into SXM_W on w0.., run op, store its eastward result from e4.. in the west slices."""
    kit = Kit(chip)
    kit.b.program.maps.update(maps or {})
    x = np.asarray(x, NP[dt]).reshape(-1, LANES)
    kit.load("x", x, dt, WEST, "w0", "SXM_W", SXM_AT)
    kit.emit("SXM_W.0", SXM_AT, op, dt, *args, "w0", "e4")
    kit.store("y", dt, len(x), WEST[::-1], "e4", "SXM_W", SXM_AT + ISA[op].d_func)
    return kit.run().outputs["y"]


@pytest.mark.parametrize("dt", ["int8", "fp16", "int32"])
@pytest.mark.parametrize("n", [0, 1, 5, -1, -7, 31, -31, 32])
def test_shift_moves_lanes_and_fills_zeros(dt, n):
    x = (np.arange(LANES) + 1).astype(NP[dt])[None]
    expected = np.zeros_like(x)
    for k in range(LANES):
        if 0 <= k - n < LANES:
            expected[0, k] = x[0, k - n]
    same(_sxm("SHIFT", dt, x, n), expected)


def test_shift_by_more_than_the_lanes_clears_the_vector():
    x = np.ones((1, LANES), np.int8)
    try:
        got = _sxm("SHIFT", "int8", x, LANES + 8)
    except UserError:
        return  # rejecting the operand is an acceptable answer; a numpy broadcast error is not
    assert not got.any()


@pytest.mark.parametrize("dt", ["int8", "int16", "fp32"])
def test_permute_is_a_lane_gather(dt):
    rng = np.random.default_rng(8)
    perm = rng.permutation(LANES)
    x = rng.integers(-100, 100, (1, LANES)).astype(NP[dt])
    same(_sxm("PERMUTE", dt, x, "p", maps={"p": tuple(int(v) for v in perm)}), x[:, perm])


@pytest.mark.parametrize("dt", ["int8", "fp16"])
def test_distribute_remaps_within_each_superlane(dt):
    m = (3, 3, 0, 15, 14, 1, 2, 2, 9, 8, 7, 6, 5, 4, 13, 12)  # not a bijection: lanes may repeat
    x = np.arange(LANES, dtype=NP[dt])[None] * 3 - 40
    expected = np.array([[x[0, 16 * (k // 16) + m[k % 16]] for k in range(LANES)]], NP[dt])
    same(_sxm("DISTRIBUTE", dt, x, "d", maps={"d": m}), expected)


# TRANSPOSE needs 16 byte streams at one slice in one cycle, and each MEM slice feeds at most one stream
# a cycle there: these tests use a twin of tsp-mini with 16 MEM slices per hemisphere.
WIDE = dataclasses.replace(MINI, name="tsp-mini-16", mem_slices_per_hemisphere=16)
WIDE_WEST = tuple(f"MEM_W{i}" for i in range(16))
WIDE_AT = earliest(WIDE_WEST, "SXM_W", WIDE)


def _sxm_many(op, x, *args):
    """Row i of x from MEM_Wi onto w_i, op at SXM_W, output stream e_k stored by MEM_W(15-k)."""
    kit = Kit(WIDE)
    for i, row in enumerate(x):
        kit.load(f"x{i}", row[None], "int8", [WIDE_WEST[i]], f"w{i}", "SXM_W", WIDE_AT)
    kit.emit("SXM_W.0", WIDE_AT, op, *args, "w0", "e0")
    outs = 16 if op == "TRANSPOSE" else args[0] ** 2
    for k in range(outs):
        kit.store(f"y{k}", "int8", 1, [WIDE_WEST[15 - k]], f"e{k}", "SXM_W", WIDE_AT + ISA[op].d_func)
    out = kit.run().outputs
    return np.stack([out[f"y{k}"][0] for k in range(outs)])


def test_transpose_swaps_stream_and_lane_in_every_superlane():
    x = np.random.default_rng(9).integers(-128, 128, (16, LANES)).astype(np.int8)
    expected = np.empty_like(x)
    for s in range(LANES // 16):
        expected[:, 16 * s:16 * s + 16] = x[:, 16 * s:16 * s + 16].T
    assert np.array_equal(_sxm_many("TRANSPOSE", x), expected)


@pytest.mark.parametrize("n", [3, 4])
def test_rotate_makes_n_squared_rotated_copies(n):
    x = np.random.default_rng(10).integers(-128, 128, (n, LANES)).astype(np.int8)
    expected = np.array([[x[i, (k + j) % LANES] for k in range(LANES)] for i in range(n) for j in range(n)])
    assert np.array_equal(_sxm_many("ROTATE", x, n), expected)


# ---------------------------------------------------------------- C2C


def test_send_receive_over_the_loopback_returns_the_vector():
    send = max(SXM_AT, ISA["DESKEW"].d_func) + 3
    x, arrival, program = loopback(send_at=send)
    assert arrival == send + ISA["SEND"].d_func + MINI.c2c_loopback_cycles  # it leaves the cycle after
    assert check(program) == []
    assert np.array_equal(run(program).outputs["y"], x)


def test_receive_one_cycle_before_the_vector_arrives_fails():
    _, arrival, program = loopback()
    _, _, early = loopback(receive_at=arrival - 1)
    assert check(program) == []
    assert [v.kind for v in check(early)] == ["c2c"]
    with pytest.raises(UserError, match=f"cycle {arrival - 1}"):
        run(early, check=False)


def test_a_link_delivers_vectors_in_the_order_they_were_sent():
    """Two SENDs one cycle apart; RECEIVEs take them oldest first, on time or late."""
    rng = np.random.default_rng(12)
    x, y = rng.integers(-128, 128, (2, 1, LANES)).astype(np.int8)
    kit = Kit()
    kit.emit("SXM_W.1", 0, "DESKEW", 2)
    send = max(SXM_AT, ISA["DESKEW"].d_func)
    kit.load("x", x, "int8", ["MEM_W0"], "w5", "SXM_W", send)
    kit.load("y", y, "int8", ["MEM_W1"], "w5", "SXM_W", send + 1)
    kit.emit("SXM_W.0", send, "SEND", 2, "w5")
    kit.emit("SXM_W.0", send + 1, "SEND", 2, "w5")
    first = send + ISA["SEND"].d_func + MINI.c2c_loopback_cycles  # x arrives; y one cycle later
    kit.emit("SXM_W.1", first, "RECEIVE", 2, "e7")
    kit.emit("SXM_W.1", first + 10, "RECEIVE", 2, "e7")
    kit.store("got_x", "int8", 1, ["MEM_W3"], "e7", "SXM_W", first + ISA["RECEIVE"].d_func)
    kit.store("got_y", "int8", 1, ["MEM_W2"], "e7", "SXM_W", first + 10 + ISA["RECEIVE"].d_func)
    out = kit.run().outputs
    assert np.array_equal(out["got_x"], x) and np.array_equal(out["got_y"], y)


# ---------------------------------------------------------------- ICU: SYNC/NOTIFY, IFETCH

SYNC_PROGRAM = """
.chip tsp-mini
.tensor x int8 1 at MEM_W0:0 = random(3)
.tensor y int8 1 at MEM_E0:128 output
.queue MEM_E0
    NOP 10
    NOTIFY                  # cycle 10: parked queues resume in cycle 45
    SYNC                    # cycle 11: this queue parks too
    NOP 4                   # cycles 45..48
    WRITE 128, e0           # cycle 49: x left MEM_W0 in 47 and is one hop east in 49
.queue MEM_W0
    SYNC                    # cycle 0
    READ 0, e0              # cycle 45
"""


def test_a_queue_parked_at_sync_resumes_35_cycles_after_notify():
    program = assemble(SYNC_PROGRAM)
    read = program.queues["MEM_W0"][1]
    write = program.queues["MEM_E0"][-1]
    assert (read.op, read.cycle) == ("READ", 10 + MINI.notify_cycles)
    assert (write.op, write.cycle) == ("WRITE", 10 + MINI.notify_cycles + 4)
    assert check(program) == []
    r = run(program)
    assert np.array_equal(r.outputs["y"], program.initial_value(program.tensors["x"]))


def test_the_kth_sync_waits_for_the_kth_notify():
    program = assemble("""
.queue MEM_E0
    NOTIFY
    NOP 50
    NOTIFY                  # cycle 51
.queue MEM_W0
    SYNC
    NOP 1                   # released by the first NOTIFY: cycle 35
    SYNC                    # cycle 36
    NOP 1                   # released by the second: cycle 86
""")
    cycles = [i.cycle for i in program.queues["MEM_W0"]]
    assert cycles == [0, MINI.notify_cycles, MINI.notify_cycles + 1, 51 + MINI.notify_cycles]
    assert check(program) == []


def _long_queue(ifetch_at: int | None, length: int) -> str:
    """One queue of `length` instructions: NOPs, an IFETCH at index ifetch_at, and a final READ."""
    body = ["    NOP 1"] * (length - 1) + ["    READ 0, e0"]
    if ifetch_at is not None:
        body[ifetch_at] = "    IFETCH"
    arrives = length - 1 + ISA["READ"].d_func + MINI.position["MEM_E1"] - MINI.position["MEM_W0"]
    return ".queue MEM_W0\n" + "\n".join(body) + f"\n.queue MEM_E1\n    @{arrives} WRITE 0, e0\n"


def test_a_queue_no_longer_than_the_preload_needs_no_ifetch():
    assert check(assemble(_long_queue(None, MINI.queue_preload))) == []


def test_a_queue_longer_than_the_preload_needs_an_ifetch_early_enough():
    n = MINI.queue_preload + 1
    assert [v.kind for v in check(assemble(_long_queue(None, n)))] == ["underrun"]
    # fetched in time: an IFETCH at cycle 0 brings instructions 80.. by cycle d_func(IFETCH) = 20
    assert check(assemble(_long_queue(0, n))) == []
    # too late: an IFETCH at the last preloaded slot (cycle 79) lands in cycle 99, after cycle 80
    late = check(assemble(_long_queue(MINI.queue_preload - 1, n)))
    assert [v.kind for v in late] == ["underrun"]
    assert "cycle 99" in late[0].message
