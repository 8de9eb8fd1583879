"""The fast executor agrees with the cycle-accurate one bit for bit and cycle for cycle.

On the examples, on the full-chip matmul benchmark, and on generated programs: random pipelines on
tsp-mini (READ -> VXM/SXM/MXM/MEM/C2C -> WRITE, with REPEAT, latch chaining, fp16 and int8 matmuls with
accumulation, weight swaps under running ACCs, GATHER/SCATTER, CONFIG changes under running CASTs),
placed one after another in time so that their timing is valid by construction, sharing SRAM, MXM and
latch state. Every MEM slice starts random and is compared whole at the end.
"""

from __future__ import annotations

import importlib.util
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openlpu.chip import numerics as nx
from openlpu.chip.asm import assemble, load
from openlpu.chip.builder import Builder
from openlpu.chip.isa import ISA
from openlpu.chip.operands import Ref
from openlpu.chip.program import Instr
from openlpu.chip.spec import get_chip
from openlpu.errors import UserError
from openlpu.sim import exact, fast
from openlpu.sim.plan import STATE_ACCESS
from openlpu.sim.timeline import TIMING_ONLY
from openlpu.sim.verify import check

EXAMPLES = ["add", "matmul_int8", "matmul_fp16", "gather", "transpose"]
# random SRAM bytes make NaN and inf operands and overflowing casts on purpose
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def assert_same(program, check_first: bool = True):
    a = exact.run(program, check=check_first)
    b = fast.run(program, check=check_first)
    assert (b.cycles, b.vector_instructions, b.busy) == (a.cycles, a.vector_instructions, a.busy)
    assert b.outputs.keys() == a.outputs.keys()
    for name, value in a.outputs.items():
        assert b.outputs[name].dtype == value.dtype and b.outputs[name].shape == value.shape, name
        assert b.outputs[name].tobytes() == value.tobytes(), name
    return a, b


@pytest.mark.parametrize("name", EXAMPLES)
def test_examples_agree(examples_dir, name):
    assert_same(load(examples_dir / f"{name}.s"))


def _chip_matmul(examples_dir):
    """benchmarks/chip_matmul.py, a script rather than a package module."""
    spec = importlib.util.spec_from_file_location("chip_matmul", examples_dir.parent / "benchmarks" / "chip_matmul.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_full_chip_matmul_benchmark_agrees_and_is_right(examples_dir):
    program = _chip_matmul(examples_dir).build(rows=24)
    _, r = assert_same(program, check_first=False)
    for plane in range(4):
        x = program.initial_value(program.tensors[f"x{plane}"]).astype(np.int64)
        w = np.empty((320, 320), np.int64)
        for i in range(16):
            w[i::16] = program.initial_value(program.tensors[f"w{plane}_{i}"])
        assert np.array_equal(r.outputs[f"z{plane}"], (x @ w.T).astype(np.int32))


def test_new_inputs_give_the_new_answer_without_a_new_analysis(examples_dir):
    program = load(examples_dir / "matmul_int8.s")
    first = fast.run(program)
    plan = fast.plan_for(program)
    rng = np.random.default_rng(5)
    x = rng.integers(-128, 128, (8, 320)).astype(np.int8)
    program.set_input("x", x)
    again = fast.run(program)
    assert fast.plan_for(program) is plan
    w = np.empty((320, 320), np.int64)
    for i in range(8):
        w[i::8] = program.initial_value(program.tensors[f"w{i}"])
    assert np.array_equal(again.outputs["z"], (x.astype(np.int64) @ w.T).astype(np.int32))
    assert not np.array_equal(again.outputs["z"], first.outputs["z"])
    assert again.outputs["z"].tobytes() == exact.run(program).outputs["z"].tobytes()


def test_a_changed_program_is_analysed_again():
    b = Builder("tsp-mini")
    b.tensor("x", "int8", 1, "MEM_E0", 0, init="iota")
    b.tensor("z", "int8", 1, "MEM_E1", 0, output=True)
    b.emit("MEM_E0", 0, "READ", 0, "e0")
    b.emit("MEM_E1", 3, "WRITE", 0, "e0")
    program = b.build()
    assert np.array_equal(fast.run(program).outputs["z"], program.initial_value(program.tensors["x"]))
    first = fast.plan_for(program)
    program.queues["MEM_E0"][0] = Instr("READ", (0, Ref("e", 0)), 1)  # one cycle later, and so the WRITE
    program.queues["MEM_E1"][0] = Instr("WRITE", (0, Ref("e", 0)), 4)
    assert fast.plan_for(program) is not first
    assert_same(program)


def test_a_running_sum_in_a_latch_runs_vector_by_vector_and_is_right():
    """ADD x + alu0 on ALU 0 reads what its own previous repetition wrote: the batch must be split."""
    b = Builder("tsp-mini")
    lanes = b.chip.lanes
    x = np.arange(6 * lanes).reshape(6, lanes) % 7 - 3
    west, east = ("MEM_W0", "MEM_W1", "MEM_W2", "MEM_W3"), ("MEM_E0", "MEM_E1", "MEM_E2", "MEM_E3")
    b.tensor("x", "int32", 6, west, 0)
    b.tensor("z", "int32", 5, east, 0, output=True)
    arrive = 2 + max(b.hops(s, "VXM") for s in west)
    for i, s in enumerate(west):  # row r at the VXM in cycle arrive + 2r
        b.emit(s, arrive - 2 - b.hops(s, "VXM"), "READ", 0, f"e{i}")
        b.repeat(s, 5, 2)
    b.emit("VXM.0", arrive, "MOV", "int32", "e0", "-")  # the latch holds row 0 from cycle arrive + 2
    b.emit("VXM.0", arrive + 2, "ADD", "int32", "e0", "alu0", "e4")  # row r + the previous sum
    b.repeat("VXM.0", 4, 2)
    for i, s in enumerate(east):
        b.emit(s, arrive + 4 + b.hops("VXM", s), "WRITE", 0, f"e{4 + i}")
        b.repeat(s, 4, 2)
    program = b.build()
    program.set_input("x", x)
    _, r = assert_same(program)
    assert np.array_equal(r.outputs["z"], np.cumsum(x, axis=0)[1:].astype(np.int32))
    plan = fast.plan_for(program)
    assert len(plan.chunks) > len(plan.batches)  # the ADD batch was split into single vectors


@pytest.mark.parametrize("second, fetch", [("int8", "TypedAssembled"), ("fp16", "PerVector")])
def test_a_repeat_reading_a_latch_two_instructions_wrote(second, fetch):
    """ALU 2 reads ALU 1's latch twice: first the int8 MOV's result, then the `second` MOV's, each in
    the dtype it was computed in (a latch holds a value, not bytes), converted by MOV int32."""
    b = Builder("tsp-mini")
    lanes = b.chip.lanes
    x = (np.arange(lanes) - 16).astype(np.int8)
    y = ((np.arange(lanes) - 10) * (0.75 if second == "fp16" else 1)).astype(nx.DTYPES[second])
    b.tensor("x", "int8", 1, "MEM_W0", 0)
    b.tensor("y", second, 1, ("MEM_W1", "MEM_W2")[:nx.width(second)], 0)
    b.tensor("z", "int32", 2, ("MEM_E0", "MEM_E1", "MEM_E2", "MEM_E3"), 0, output=True)
    b.emit("MEM_W0", 7, "READ", 0, "e0")  # x at the VXM in cycle 10
    b.emit("MEM_W1", 7, "READ", 0, "e2")  # y at the VXM in cycle 11
    if second == "fp16":
        b.emit("MEM_W2", 6, "READ", 0, "e3")
    b.emit("VXM.1", 10, "MOV", "int8", "e0", "-")  # latch 1 = x from cycle 12
    b.emit("VXM.1", 11, "MOV", second, "e2", "-")  # latch 1 = y from cycle 13
    b.emit("VXM.2", 12, "MOV", "int32", "alu1", "e4")
    b.repeat("VXM.2", 1, 1)  # reads latch 1 in cycles 12 and 13
    for i, s in enumerate(("MEM_E0", "MEM_E1", "MEM_E2", "MEM_E3")):
        b.emit(s, 14 + b.hops("VXM", s), "WRITE", 0, f"e{4 + i}")
        b.repeat(s, 1, 1)
    program = b.build()
    program.set_input("x", x[None])
    program.set_input("y", y[None])
    _, r = assert_same(program)
    assert np.array_equal(r.outputs["z"], np.stack([x, np.trunc(y.astype(np.float64))]).astype(np.int32))
    plan = fast.plan_for(program)
    reader = next(c for c in plan.chunks if c.batch.queue == "VXM.2")
    assert type(reader.fetches[0]).__name__ == fetch


@pytest.mark.parametrize("text", ["", ".queue SXM_W.0\n    DESKEW 0\n    NOP 3\n    DESKEW 1\n"])
def test_programs_that_compute_nothing(text):
    assert_same(assemble(".chip tsp-mini\n" + text))


def test_every_instruction_declares_the_state_it_touches():
    executed = {name for name in ISA if name not in TIMING_ONLY}
    assert set(STATE_ACCESS) == executed


def test_errors_of_unchecked_programs_are_the_exact_executors():
    program = assemble("""
.chip tsp-mini
.queue SXM_W.0
    DESKEW 0
    @20 RECEIVE 0, e0
""")
    with pytest.raises(UserError) as a:
        exact.run(program, check=False)
    with pytest.raises(UserError) as b:
        fast.run(program, check=False)
    assert str(a.value) == str(b.value)


def test_fp16_matmul_of_a_batch_with_non_finite_rows_equals_one_row_at_a_time():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((32, 32)).astype(np.float16)
    acts = rng.standard_normal((6, 32)).astype(np.float16)
    acts[1, 3], acts[4, 0] = np.inf, np.nan
    kernel = nx.mxm_kernel("fp16", w)
    batch = kernel(acts)
    assert batch.tobytes() == np.stack([kernel(a) for a in acts]).tobytes()


# ---------------------------------------------------------------- generated programs

MINI = get_chip("tsp-mini")
MEMS = [s for s in MINI.floorplan if s.startswith("MEM")]
POS = MINI.position
VXM_UNITS = 4  # few units, so that latches are reused across pipelines
BINARY = ["ADD", "ADD.SAT", "SUB", "SUB.SAT", "MUL", "MUL.SAT", "MAX", "MIN"]
UNARY = ["NEG", "NEG.SAT", "ABS", "ABS.SAT", "RELU", "MOV"]
FLOAT_ONLY = ["EXP", "TANH", "RSQRT"]


def _d(op: str) -> int:
    return ISA[op].d_func


class Gen:
    """Draws pipelines, each in its own window of cycles after the previous one's last commit."""

    def __init__(self, data):
        self.data = data
        self.rnd = random.Random(data.draw(st.integers(0, 2**32 - 1)))  # uniform choices from one seed
        self.b = Builder(MINI)
        self.t = 0
        self.latches: set[int] = set()
        self.kernels: dict[int, str] = {}
        self.deskewed: set[int] = set()
        seed = self.num(0, 1000)
        for i, s in enumerate(MEMS):
            self.b.tensor(f"m_{s}", "int8", MINI.mem_addresses, s, 0, init=f"random({seed + i})", output=True)

    # ---- drawing ----
    def num(self, lo: int, hi: int) -> int:
        return self.rnd.randint(lo, hi)

    def pick(self, seq):
        return self.rnd.choice(list(seq))

    def flag(self) -> bool:
        return self.rnd.random() < 0.5

    # ---- one window ----
    def begin(self) -> None:
        self.start = self.end = self.t
        self.free = list(MEMS)
        self.used: dict[str, set[int]] = {"e": set(), "w": set()}

    def finish(self) -> None:
        self.t = self.end + len(MINI.floorplan) + 1  # stream values of this window have left the chip

    def till(self, cycle: int) -> None:
        self.end = max(self.end, cycle)

    def take(self, k: int, side: str | None = None) -> list[str] | None:
        pool = [s for s in self.free if side is None or s.startswith(f"MEM_{side}")]
        if len(pool) < k:
            return None
        chosen = []
        for _ in range(k):
            s = self.pick(pool)
            pool.remove(s)
            chosen.append(s)
        for s in chosen:
            self.free.remove(s)
        return chosen

    def streams(self, kind: str, width: int) -> int:
        groups = [i for i in range(0, MINI.streams_per_direction - width + 1, width)
                  if not self.used[kind] & set(range(i, i + width))]
        i = self.pick(groups)
        self.used[kind] |= set(range(i, i + width))
        return i

    @staticmethod
    def toward(src: str, dst: str) -> str:
        return "e" if POS[dst] > POS[src] else "w"

    def arrival(self, slices, at: str) -> int:
        """A cycle by which READs issued in this window can have reached `at`."""
        return self.start + ISA["READ"].d_func + max(abs(POS[s] - POS[at]) for s in slices) + self.num(0, 2)

    def load(self, slices, kind: str, index: int, at: str, cycle: int, n: int, d: int) -> None:
        """READ byte plane p from slices[p] onto stream index+p so that row r is at `at` in cycle + r*d."""
        for p, s in enumerate(slices):
            issue = cycle - ISA["READ"].d_func - abs(POS[s] - POS[at])
            assert issue >= self.start
            self.b.emit(s, issue, "READ", self.num(0, MINI.mem_addresses - n), Ref(kind, index + p))
            self.b.repeat(s, n - 1, d)
            self.till(issue + n * d)

    def store(self, slices, kind: str, index: int, at: str, cycle: int, n: int, d: int) -> None:
        """WRITE byte plane p of the group on stream index+p, at `at` in cycle + r*d, into slices[p]."""
        for p, s in enumerate(slices):
            issue = cycle + abs(POS[s] - POS[at])
            self.b.emit(s, issue, "WRITE", self.num(0, MINI.mem_addresses - n), Ref(kind, index + p))
            self.b.repeat(s, n - 1, d)
            self.till(issue + n * d + 1)

    def operand(self, width: int, at: str, side: str | None = None):
        slices = self.take(width, side or self.pick("WE"))
        if slices is None:
            return None
        kind = self.toward(slices[0], at)
        return slices, kind, self.streams(kind, width)

    def result(self, width: int, at: str):
        """Slices for a result leaving `at` (all on one side of it) and the stream group it takes."""
        sides = [s for s in "WE" if sum(1 for x in self.free if x.startswith(f"MEM_{s}")) >= width]
        slices = self.take(width, self.pick(sides))
        kind = self.toward(at, slices[0])
        return slices, kind, self.streams(kind, width)

    # ---- pipelines ----
    def vxm(self) -> None:
        """READ -> VXM op (maybe chained through a latch, maybe reading an old latch) -> WRITE."""
        dt = self.pick(nx.DTYPES)
        w = nx.width(dt)
        n, d = self.num(1, 6), self.num(1, 3)
        unit = self.num(0, VXM_UNITS - 1)
        kind = self.pick(["binary", "unary", "cast"])
        a = self.operand(w, "VXM")
        src_a = Ref(a[1], a[2])
        operands = [a]
        if kind == "binary":
            op = self.pick(BINARY)
            b = None if self.latches and self.flag() else self.operand(w, "VXM")
            if b is not None:
                operands.append(b)
                src_b = Ref(b[1], b[2])
            elif self.latches:  # a latch, maybe this unit's own: each repetition reads the previous one
                src_b = Ref("alu", self.pick(sorted(self.latches)))
            else:
                src_b = src_a
            args, out_dt = (dt, src_a, src_b), dt
        elif kind == "unary":
            op = self.pick(UNARY + (FLOAT_ONLY if dt in nx.FLOAT_DTYPES else []))
            args, out_dt = (dt, src_a), dt
        else:
            op, out_dt = "CAST", self.pick(nx.DTYPES)
            args = (dt, out_dt, src_a)
        cycle = self.arrival([s for o in operands for s in o[0]], "VXM")
        for o in operands:
            self.load(*o, "VXM", cycle, n, d)
        if kind == "cast" and self.flag():  # the rounding mode changes in the window, maybe under the CAST
            self.b.emit("VXM.15", self.num(self.start, cycle + n * d + 2), "CONFIG", "vxm.round",
                        self.pick(["nearest", "zero"]))
        ready = cycle + _d(op)
        if self.flag():  # chain: a second unit reads this one's latch, converting as its own dtype says
            self.b.emit(f"VXM.{unit}", cycle, op, *args, None)
            self.b.repeat(f"VXM.{unit}", n - 1, d)
            self.latches.add(unit)
            unit2 = (unit + 1 + self.num(0, VXM_UNITS - 2)) % VXM_UNITS
            out_dt = self.pick(nx.DTYPES)
            op = self.pick(UNARY + (FLOAT_ONLY if out_dt in nx.FLOAT_DTYPES else []))
            cycle, unit, args = ready + self.num(0, 2), unit2, (out_dt, Ref("alu", unit))
            ready = cycle + _d(op)
        out = self.result(nx.width(out_dt), "VXM")
        self.b.emit(f"VXM.{unit}", cycle, op, *args, Ref(out[1], out[2]))
        self.b.repeat(f"VXM.{unit}", n - 1, d)
        self.latches.add(unit)
        self.store(*out, "VXM", ready, n, d)
        self.finish()

    def sxm(self) -> None:
        """READ -> SHIFT / PERMUTE / DISTRIBUTE / ROTATE (-> TRANSPOSE) -> WRITE, at either switch."""
        at = self.pick(["SXM_W", "SXM_E"])
        units = [f"{at}.{u}" for u in range(MINI.sxm_units_per_hemisphere)]
        queue = self.pick(units)
        op = self.pick(["SHIFT", "PERMUTE", "DISTRIBUTE", "ROTATE", "TRANSPOSE"])
        n = self.num(1, 4)
        d = 7 if op == "TRANSPOSE" else self.num(1, 3)  # 7: a repetition's ROTATE never meets a TRANSPOSE
        lanes = MINI.lanes
        if op in ("SHIFT", "PERMUTE", "DISTRIBUTE"):
            dt = self.pick(nx.DTYPES)
            w = nx.width(dt)
            src = self.operand(w, at, side=None)
            cycle = self.arrival(src[0], at)
            self.load(*src, at, cycle, n, d)
            out = self.result(w, at)
            if op == "SHIFT":
                extra = (self.num(-lanes - 2, lanes),)  # SHIFT by more than +lanes crashes both executors
            else:
                name = f"map{len(self.b.program.maps)}"
                size = lanes if op == "PERMUTE" else 16
                values = self.rnd.sample(range(size), size) if op == "PERMUTE" else \
                    [self.num(0, 15) for _ in range(16)]
                self.b.program.maps[name] = tuple(values)
                extra = (name,)
            self.b.emit(queue, cycle, op, dt, *extra, Ref(src[1], src[2]), Ref(out[1], out[2]))
            self.b.repeat(queue, n - 1, d)
            self.store(*out, at, cycle + _d(op), n, d)
            return self.finish()
        k = 4 if op == "TRANSPOSE" else self.pick([3, 4])
        slices = self.take(k)
        kind = "e" if at == "SXM_E" else "w"
        back = "w" if kind == "e" else "e"
        cycle = self.arrival(slices, at)
        first, base = self.streams(kind, k), self.streams(back, k * k)
        for i, s in enumerate(slices):
            self.load([s], kind, first + i, at, cycle, n, d)
        self.b.emit(queue, cycle, "ROTATE", k, Ref(kind, first), Ref(back, base))
        self.b.repeat(queue, n - 1, d)
        ready = cycle + _d("ROTATE")
        if op == "TRANSPOSE":
            other = self.pick([u for u in units if u != queue])
            self.b.emit(other, ready, "TRANSPOSE", Ref(back, base), Ref(back, base))
            self.b.repeat(other, n - 1, d)
            ready += _d("TRANSPOSE")
        for s in self.take(self.num(1, 4)):
            self.store([s], back, base + self.num(0, k * k - 1), at, ready, n, d)
        self.finish()

    def mxm(self) -> None:
        """(READ -> LW -> IW) then READ [-> ABC] -> ACC set/acc [-> WRITE], maybe swapping weights under it."""
        dt = self.pick(["int8", "fp16"])
        plane = self.pick([0, 2] if dt == "fp16" else range(MINI.mxm_planes))
        at = MINI.plane_slice(plane)
        kind_in = "w" if at == "MXM_W" else "e"
        swap = dt == "int8" and self.flag()
        cycle = self.start
        if self.kernels.get(plane) != dt or swap or self.flag():
            cycle = self.weights(plane, dt, at, kind_in, count=self.pick([1, 2] if swap or dt == "fp16" else [1, 2, 4]))
        w = nx.width(dt)
        n = 40 if swap else self.num(1, 6)
        d = ISA["ACC"].occupancy({"dtype": dt}) + (0 if swap else self.num(0, 1))
        src = self.take(w, side=None)
        arrive = max(cycle, self.arrival(src, at))
        index = self.streams(kind_in, w)
        self.load(src, kind_in, index, at, arrive, n, d)
        acc_at = arrive
        if not swap and self.flag():  # through activation buffers
            buf = self.num(0, MINI.mxm_act_buffers - n)
            self.b.emit(f"MXM{plane}.a", arrive, "ABC", dt, Ref(kind_in, index), Ref("b", buf))
            self.b.repeat(f"MXM{plane}.a", n - 1, d)
            acc_at = arrive + 1 + (n - 1) * d
            src_ref = Ref("b", buf)
        else:
            src_ref = Ref(kind_in, index)
        slot = self.num(0, MINI.mxm_acc_slots - n)
        emit_out = self.flag() or swap
        out = None
        if emit_out:
            out_kind = "e" if at == "MXM_W" else "w"
            out = (out_kind, self.streams(out_kind, 4))
        self.b.emit(f"MXM{plane}.a", acc_at, "ACC", dt, src_ref, Ref(*out) if out else None, slot,
                    self.pick(["set", "acc"]))
        self.b.repeat(f"MXM{plane}.a", n - 1, d)
        self.till(acc_at + n * d + _d("ACC"))
        if swap:  # load and install other weights while the ACCs run: later ones use them
            self.weights(plane, dt, at, "w" if at == "MXM_W" else "e", count=2, at_least=acc_at + 1)
        if out:  # some consecutive byte planes of the int32 / fp32 results
            k = self.num(1, 4)
            self.store(self.take(k), out[0], out[1] + self.num(0, 4 - k), at, acc_at + _d("ACC"), n, d)
        self.finish()

    def weights(self, plane: int, dt: str, at: str, kind: str, count: int, at_least: int = 0) -> int:
        """Load a weight matrix (count rows a cycle per plane byte) and install it; returns when it is in."""
        rows = MINI.mxm_size // count
        planes = (plane, plane + 1) if dt == "fp16" else (plane,)
        groups = []
        slices_all = []
        for _ in planes:
            slices = self.take(count)
            index = self.streams(kind, count)
            groups.append((slices, index))
            slices_all += slices
        lw = max(at_least, self.arrival(slices_all, at))
        for p, (slices, index) in zip(planes, groups, strict=True):
            for i, s in enumerate(slices):
                self.load([s], kind, index + i, at, lw, rows, 1)
            self.b.emit(f"MXM{p}.w", lw, "LW", Ref(kind, index), count, 0)
            self.b.repeat(f"MXM{p}.w", rows - 1, 1)
        self.b.emit(f"MXM{plane}.w", lw + rows, "IW", dt)
        self.kernels[plane] = dt
        installed = lw + rows + _d("IW")
        self.till(installed)
        return installed

    def memory(self) -> None:
        """GATHER rows by per-lane addresses from a stream, or SCATTER a stream to them."""
        op = self.pick(["GATHER", "SCATTER"])
        n, d = self.num(1, 6), self.num(1, 3)
        table = self.take(1)[0]
        kind = self.pick("ew")
        upstream = [s for s in self.free if (POS[s] < POS[table]) == (kind == "e")]
        if len(upstream) < 3:
            kind = "w" if kind == "e" else "e"
            upstream = [s for s in self.free if (POS[s] < POS[table]) == (kind == "e")]
        addrs = [self.pick(upstream)]
        addrs.append(self.pick([s for s in upstream if s != addrs[0]]))
        for s in addrs:
            self.free.remove(s)
        index = self.streams(kind, 2)
        value = self.pick([s for s in upstream if s not in addrs])
        cycle = self.arrival(addrs + [value], table)
        self.load(addrs, kind, index, table, cycle, n, d)
        if op == "GATHER":
            out = self.result(1, table)
            self.b.emit(table, cycle, "GATHER", Ref(kind, index), Ref(out[1], out[2]))
            self.b.repeat(table, n - 1, d)
            self.store(*out, table, cycle + _d("GATHER"), n, d)
        else:
            self.free.remove(value)
            vindex = self.streams(kind, 1)
            self.load([value], kind, vindex, table, cycle, n, d)
            self.b.emit(table, cycle, "SCATTER", Ref(kind, index), Ref(kind, vindex))
            self.b.repeat(table, n - 1, d)
            self.till(cycle + n * d + 1)
        self.finish()

    def c2c(self) -> None:
        """READ -> SEND on a loopback link -> RECEIVE -> WRITE."""
        at = self.pick(["SXM_W", "SXM_E"])
        half = MINI.c2c_links // 2
        link = self.pick(range(half) if at == "SXM_W" else range(half, MINI.c2c_links))
        units = self.rnd.sample(range(MINI.sxm_units_per_hemisphere), 3)
        n, d = self.num(1, 5), self.num(1, 3)
        ready = self.start
        if link not in self.deskewed or self.flag():
            self.b.emit(f"{at}.{units[0]}", self.start, "DESKEW", link)
            self.deskewed.add(link)
            ready = self.start + _d("DESKEW")
        src = self.operand(1, at)
        send = max(ready, self.arrival(src[0], at))
        self.load(*src, at, send, n, d)
        self.b.emit(f"{at}.{units[1]}", send, "SEND", link, Ref(src[1], src[2]))
        self.b.repeat(f"{at}.{units[1]}", n - 1, d)
        receive = send + _d("SEND") + MINI.c2c_loopback_cycles + self.num(0, 3)
        out = self.result(1, at)
        self.b.emit(f"{at}.{units[2]}", receive, "RECEIVE", link, Ref(out[1], out[2]))
        self.b.repeat(f"{at}.{units[2]}", n - 1, d)
        self.store(*out, at, receive + _d("RECEIVE"), n, d)
        self.finish()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_generated_programs_agree(data):
    gen = Gen(data)
    for _ in range(gen.num(1, 5)):
        gen.begin()
        getattr(gen, gen.pick(["vxm", "sxm", "mxm", "memory", "c2c"]))()
    program = gen.b.build()
    assert check(program) == []  # valid by construction
    assert_same(program)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_generated_programs_agree_run_after_run_with_some_slices_changed(data):
    """Later runs skip the work that depends only on slices that stay the same (openlpu.sim.fold); new
    contents for the others at every run."""
    gen = Gen(data)
    for _ in range(gen.num(1, 5)):
        gen.begin()
        getattr(gen, gen.pick(["vxm", "sxm", "mxm", "memory", "c2c"]))()
    program = gen.b.build()
    rng = np.random.default_rng(gen.num(0, 1000))
    varying = [s for s in MEMS if gen.flag()]
    for _ in range(4):
        for s in varying:
            program.set_input(f"m_{s}", rng.integers(-128, 128, (MINI.mem_addresses, MINI.lanes)))
        assert_same(program)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mistimed_programs_agree_whenever_the_exact_executor_runs_them(data):
    """Unverified timing: reads of empty or stale streams and latches, values overwritten before they
    are read or written twice in one cycle; receives before sends, ACCs before their weights or from
    empty buffers raise the exact executor's error."""
    gen = Gen(data)
    for _ in range(gen.num(1, 5)):
        gen.begin()
        getattr(gen, gen.pick(["vxm", "sxm", "mxm", "memory", "c2c"]))()
    program = gen.b.build()
    for instrs in program.queues.values():
        for i, ins in enumerate(instrs):
            if gen.flag() and gen.flag():
                instrs[i] = Instr(ins.op, ins.args, max(0, ins.cycle + gen.num(-4, 4)))
    try:
        exact.run(program, check=False)
    except Exception as err:  # noqa: BLE001 - whatever the exact executor raises first, the fast one raises
        with pytest.raises(type(err)) as caught:
            fast.run(program, check=False)
        assert str(caught.value) == str(err)
        return
    assert_same(program, check_first=False)
