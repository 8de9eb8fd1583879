"""The instruction table: every instruction defined once (unit, operands, timing, semantics).

The assembler, disassembler, executors, verifier and scheduler all read `ISA`. An entry's timing:
an instruction issued at cycle t (at superlane 0) reads its input streams at t + d_skew and writes
its results (to streams, latches, SRAM or unit state) at t + d_func; a result written at cycle w at
position p is visible at p at cycle w and one slice further downstream each cycle after.

Semantics are two functions: `read(state, ex, inputs) -> payload` runs at the read cycle, and
`commit(state, ex, payload) -> outputs` at the write cycle, so state written by one instruction is
seen by another exactly when the timing says. `state` is the chip state of an executor (see
openlpu.sim.state); `ex.args` holds the operands of this (possibly repeated) issue. The fast executor
(openlpu.sim.fast) calls the same functions on a batch of n issues at once: inputs and payloads then
carry a leading axis of n vectors and the operands a REPEAT advances (addresses, rows, slots, buffers)
are arrays of n values; every function below gives each vector the bits it would get alone.

Published latencies are few: Notify's 35 cycles (ISCA20). The rest are `assumed` in LATENCY below,
each with its reason; they are chosen once here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from openlpu.chip import numerics as nx
from openlpu.chip.operands import Operand, Ref, choice, dtype, ints, stream
from openlpu.chip.operands import name as name_operand
from openlpu.errors import UserError

# (d_skew, d_func, source). Unpublished figures are marked assumed, with the reason.
LATENCY: dict[str, tuple[int, int, str]] = {
    "mem.read": (0, 2, "assumed: one cycle of SRAM access, one to drive the stream register"),
    "mem.write": (0, 1, "assumed: the stream value is latched at issue and committed next cycle"),
    "mem.gather": (0, 3, "assumed: a read plus one cycle to take per-lane addresses from a stream"),
    "mem.scatter": (0, 1, "assumed: as Write"),
    "vxm.simple": (0, 2, "assumed: one ALU pass plus the stream drive"),
    "vxm.mul": (0, 3, "assumed: a multiplier stage more than add"),
    "vxm.cast": (0, 2, "assumed: as a simple ALU op"),
    "vxm.large": (0, 6, "assumed: exp/tanh/rsqrt run on the large ALUs (GROQAPI) over several stages"),
    "mxm.lw": (0, 1, "assumed: one row per stream per cycle into the weight buffer"),
    "mxm.iw": (0, 20, "assumed: installing crosses the plane's 20 supercells (GROQAPI: clearing takes 20)"),
    "mxm.abc": (0, 1, "assumed: latch one vector into the activation buffer"),
    "mxm.acc": (0, 22, "assumed: 20 supercells of the plane plus accumulate and drive"),
    "sxm.cross": (0, 24, "assumed: data bound for a superlane south of its source waits out the "
                         "20-cycle issue stagger"),
    "sxm.local": (0, 4, "assumed: remaps within a superlane need no stagger wait"),
    "sxm.transpose": (0, 6, "assumed: a 16x16 byte transpose within each superlane"),
    "c2c.send": (0, 1, "assumed: the vector leaves at the next cycle; the link adds its own latency"),
    "c2c.receive": (0, 2, "assumed: as a MEM read from the receive buffer"),
    "c2c.deskew": (0, 16, "assumed: one link-clock alignment round"),
    "icu.notify": (0, 35, "ISCA20: Sync/Notify chip-wide barrier = 35 cycles"),
    "icu.ifetch": (0, 20, "assumed: 640 bytes from MEM to the queue, one stagger pass"),
    "icu.config": (0, 1, "assumed: a register write"),
    "icu.none": (0, 0, "no data effect"),
}

@dataclass(frozen=True)
class OpDef:
    name: str
    unit: str
    operands: tuple[Operand, ...]
    timing: str  # key of LATENCY
    doc: str
    io: Callable[[dict], tuple[list, list]] = lambda a: ([], [])  # ([(Ref, dtype)], [(Ref, dtype)])
    read: Callable | None = None
    commit: Callable | None = None
    # operand -> advance per repetition: a number, or the name of the operand that holds it
    repeat_step: dict[str, int | str] = field(default_factory=dict)
    occupancy: Callable[[dict], int] = lambda a: 1  # cycles the queue/unit is busy

    @property
    def d_skew(self) -> int:
        return LATENCY[self.timing][0]

    @property
    def d_func(self) -> int:
        return LATENCY[self.timing][1]

    @property
    def timing_source(self) -> str:
        return LATENCY[self.timing][2]

    def step(self, args: dict, r) -> dict:
        """The operands of repetition r (0 = the original issue); r may be an array of repetitions."""
        if not self.repeat_step or (isinstance(r, int) and not r):
            return args
        out = dict(args)
        for key, inc in self.repeat_step.items():
            if isinstance(inc, str):
                inc = args[inc]
            value = out[key]
            if isinstance(value, Ref):
                if value.kind == "b":
                    out[key] = Ref("b", value.index + inc * r)
            elif value is not None:
                out[key] = value + inc * r
        return out


ISA: dict[str, OpDef] = {}


def _define(op: OpDef) -> None:
    assert op.name not in ISA, op.name
    assert op.d_func >= op.d_skew, op.name
    ISA[op.name] = op


def _group(ref: Ref | None, dt: str) -> list:
    return [] if ref is None else [(ref, dt)]


# ---------------------------------------------------------------- ICU
for _name, _ops, _timing, _doc, _occ in [
    ("NOP", (ints("n", 1),), "icu.none", "do nothing for n cycles (16-bit repeat count)",
     lambda a: a["n"]),
    ("REPEAT", (ints("n", 1), ints("d", 1)), "icu.none",
     "issue the previous instruction n more times, d cycles apart (repeat r at its cycle + r*d), "
     "advancing its address operands; must come right after it",
     lambda a: a["n"] * a["d"]),
    ("SYNC", (), "icu.none", "park this queue until the next NOTIFY reaches it", lambda a: 1),
    ("NOTIFY", (), "icu.notify", "release every parked queue; reaches them 35 cycles later", lambda a: 1),
    ("IFETCH", (), "icu.ifetch", "fetch the next 640 bytes of this queue's instructions", lambda a: 1),
]:
    _define(OpDef(_name, "ICU", _ops, _timing, _doc, occupancy=_occ))


def _config_commit(st, ex, payload):
    st.config[ex.args["key"]] = ex.args["value"]
    return []


CONFIG_KEYS = {"vxm.round": ("nearest", "zero")}
_define(OpDef("CONFIG", "ICU", (choice("key", *CONFIG_KEYS), name_operand("value")), "icu.config",
              "set a chip configuration register (vxm.round = nearest | zero)",
              read=lambda st, ex, inputs: None, commit=_config_commit))

# ---------------------------------------------------------------- MEM


def _mem_read(st, ex, inputs):
    return st.mem[ex.slice][ex.args["addr"]].copy()


def _mem_write_commit(st, ex, payload):
    st.mem[ex.slice][ex.args["addr"]] = payload
    return []


def _gather(st, ex, inputs):
    addrs = inputs[0].astype(np.int64) % st.chip.mem_addresses
    return st.mem[ex.slice][addrs, np.arange(st.chip.lanes)]


def _scatter_commit(st, ex, payload):
    addrs, values = payload
    st.mem[ex.slice][addrs.astype(np.int64) % st.chip.mem_addresses, np.arange(st.chip.lanes)] = values
    return []


_define(OpDef("READ", "MEM", (ints("addr", 0), stream("dst")), "mem.read",
              "read the vector at addr onto stream dst",
              io=lambda a: ([], [(a["dst"], "int8")]), read=_mem_read,
              commit=lambda st, ex, p: [p.view(np.int8)], repeat_step={"addr": 1}))
_define(OpDef("WRITE", "MEM", (ints("addr", 0), stream("src")), "mem.write",
              "write the vector on stream src to addr",
              io=lambda a: ([(a["src"], "int8")], []), read=lambda st, ex, inputs: inputs[0].view(np.uint8),
              commit=_mem_write_commit, repeat_step={"addr": 1}))
_define(OpDef("GATHER", "MEM", (stream("addrs"), stream("dst")), "mem.gather",
              "each lane reads its own address, taken from the int16 stream pair addrs",
              io=lambda a: ([(a["addrs"], "int16")], [(a["dst"], "int8")]),
              read=_gather, commit=lambda st, ex, p: [p.view(np.int8)]))
_define(OpDef("SCATTER", "MEM", (stream("addrs"), stream("src")), "mem.scatter",
              "each lane writes src to its own address, taken from the int16 stream pair addrs",
              io=lambda a: ([(a["addrs"], "int16"), (a["src"], "int8")], []),
              read=lambda st, ex, inputs: (inputs[0], inputs[1].view(np.uint8)), commit=_scatter_commit))

# ---------------------------------------------------------------- VXM
_VXM_SRC = ("alu",)
_VXM_DST = ("-",)


def _vxm_commit(st, ex, payload):
    st.alu[ex.unit] = payload
    return [payload] if ex.args["dst"] is not None else []


def _binary(op: str, saturate: bool):
    def read(st, ex, inputs):
        return nx.binary(op, inputs[0], inputs[1], ex.args["dtype"], saturate)
    return read


def _unary(op: str, saturate: bool):
    def read(st, ex, inputs):
        return nx.unary(op, inputs[0], ex.args["dtype"], saturate)
    return read


for _op, _timing in [("add", "vxm.simple"), ("sub", "vxm.simple"), ("mul", "vxm.mul"),
                     ("max", "vxm.simple"), ("min", "vxm.simple")]:
    for _sat in ((False, True) if _op in ("add", "sub", "mul") else (False,)):
        _define(OpDef(
            _op.upper() + (".SAT" if _sat else ""), "VXM",
            (dtype(), stream("a", *_VXM_SRC), stream("b", *_VXM_SRC), stream("dst", *_VXM_DST)), _timing,
            (f"dst = {_op}(a, b) elementwise" if _op in ("max", "min") else
             f"dst = a {_op} b elementwise" + (", integers saturate" if _sat else ", integers wrap")),
            io=lambda a: ([(a["a"], a["dtype"]), (a["b"], a["dtype"])], _group(a["dst"], a["dtype"])),
            read=_binary(_op, _sat), commit=_vxm_commit))

for _op, _timing, _sats in [("neg", "vxm.simple", (False, True)), ("abs", "vxm.simple", (False, True)),
                            ("relu", "vxm.simple", (False,)), ("mov", "vxm.simple", (False,)),
                            ("exp", "vxm.large", (False,)), ("tanh", "vxm.large", (False,)),
                            ("rsqrt", "vxm.large", (False,))]:
    for _sat in _sats:
        _define(OpDef(
            _op.upper() + (".SAT" if _sat else ""), "VXM",
            (dtype(), stream("a", *_VXM_SRC), stream("dst", *_VXM_DST)), _timing,
            f"dst = {_op}(a) elementwise" + (", integers saturate" if _sat else ""),
            io=lambda a: ([(a["a"], a["dtype"])], _group(a["dst"], a["dtype"])),
            read=_unary(_op, _sat), commit=_vxm_commit))


def _cast(st, ex, inputs):
    return nx.cast(inputs[0], ex.args["from"], ex.args["to"], st.config.get("vxm.round", "nearest"))


_define(OpDef("CAST", "VXM", (dtype("from"), dtype("to"), stream("a", *_VXM_SRC), stream("dst", *_VXM_DST)),
              "vxm.cast", "convert a from one dtype to another (float->int rounds per vxm.round, saturates)",
              io=lambda a: ([(a["a"], a["from"])], _group(a["dst"], a["to"])), read=_cast, commit=_vxm_commit))

# ---------------------------------------------------------------- MXM
_ACC_DTYPE = {"int8": "int32", "fp16": "fp32"}


def _lw_read(st, ex, inputs):
    # the inputs stacked on a new second-last axis (concatenating rows is faster than np.stack's strided copy)
    return np.concatenate(inputs, axis=-1).reshape(*inputs[0].shape[:-1], len(inputs), -1).view(np.uint8)


def _lw_commit(st, ex, payload):
    # payload is [count, lanes], or [vectors, count, lanes] with one row operand per vector
    rows = np.add.outer(ex.args["row"], np.arange(payload.shape[-2]))
    st.mxm[ex.unit].buffer[rows] = payload
    return []


def _iw_read(st, ex, inputs):
    plane = ex.unit
    if ex.args["dtype"] == "int8":
        return "int8", st.mxm[plane].buffer.view(np.int8).copy()
    lo, hi = st.mxm[plane].buffer, st.mxm[plane + 1].buffer
    return "fp16", nx.from_planes([lo, hi], "fp16")  # a new array: later loads into the buffers leave it be


def _iw_commit(st, ex, payload):
    mode, weights = payload
    st.mxm[ex.unit].mode, st.mxm[ex.unit].kernel = mode, nx.mxm_kernel(mode, weights)
    return []


def _abc_commit(st, ex, payload):
    index, act = ex.args["buf"].index, st.mxm[ex.unit].act
    if np.ndim(index):  # a batch of vectors, one buffer each
        act.update(zip(np.asarray(index).tolist(), payload, strict=True))
    else:
        act[index] = payload
    return []


def _act(plane, index) -> np.ndarray:
    """The activation buffer `index` of a plane, or a stack of them for an array of indices."""
    if np.ndim(index):
        return np.stack([plane.act[i] for i in np.asarray(index).tolist()])
    return plane.act[index]


def _acc_read(st, ex, inputs):
    plane = st.mxm[ex.unit]
    dt = ex.args["dtype"]
    if plane.mode != dt:
        raise UserError(
            f"ACC {dt} on MXM plane {ex.unit} at cycle {ex.cycle}, but the installed weights are "
            f"{plane.mode or 'none'}: issue IW {dt} first."
        )
    src = ex.args["src"]
    return plane.kernel(_act(plane, src.index) if src.kind == "b" else inputs[0])


def _acc_commit(st, ex, product):
    plane = st.mxm[ex.unit]
    slot = ex.args["slot"]
    acc = plane.accumulators(_ACC_DTYPE[ex.args["dtype"]])
    if ex.args["mode"] == "acc":
        with np.errstate(over="ignore"):
            product = acc[slot] + product  # int32 wraps, fp32 rounds once
    acc[slot] = product
    return [product] if ex.args["dst"] is not None else []


def _acc_io(a):
    src = a["src"]
    ins = [] if src.kind == "b" else [(src, a["dtype"])]
    return ins, _group(a["dst"], _ACC_DTYPE[a["dtype"]])


_MXM_DT = ("int8", "fp16")
_define(OpDef("LW", "MXM", (stream("src"), ints("count", 1), ints("row", 0)), "mxm.lw",
              "load `count` weight rows from streams src..src+count-1 into buffer rows row..",
              io=lambda a: ([(Ref(a["src"].kind, a["src"].index + i), "int8") for i in range(a["count"])], []),
              read=_lw_read, commit=_lw_commit,
              repeat_step={"row": "count"}))
_define(OpDef("IW", "MXM", (choice("dtype", *_MXM_DT),), "mxm.iw",
              "install the weight buffer into the array (fp16 joins this even plane's buffer, low bytes, "
              "with the next plane's, high bytes)", read=_iw_read, commit=_iw_commit))
_define(OpDef("ABC", "MXM", (choice("dtype", *_MXM_DT), stream("src"), stream("buf", "b")), "mxm.abc",
              "activation buffer control: latch the vector on src into activation buffer buf",
              io=lambda a: ([(a["src"], a["dtype"])], []), read=lambda st, ex, inputs: inputs[0],
              commit=_abc_commit, repeat_step={"buf": 1}))
_define(OpDef("ACC", "MXM", (choice("dtype", *_MXM_DT), stream("src", "b"), stream("dst", "-"),
                             ints("slot", 0), choice("mode", "set", "acc")), "mxm.acc",
              "multiply src by the installed weights (A.W^T), set or add into accumulator slot, emit to dst",
              io=_acc_io, read=_acc_read, commit=_acc_commit, repeat_step={"slot": 1, "src": 1},
              occupancy=lambda a: 2 if a["dtype"] == "fp16" else 1))

# ---------------------------------------------------------------- SXM


def _shift(st, ex, inputs):
    x = inputs[0]
    n = max(-x.shape[-1], min(x.shape[-1], ex.args["n"]))  # shifting past every lane leaves zeros
    out = np.zeros_like(x)
    if n >= 0:
        out[..., n:] = x[..., :x.shape[-1] - n]
    else:
        out[..., :n] = x[..., -n:]
    return out


def _permute(st, ex, inputs):
    return inputs[0][..., st.maps[ex.args["map"]]]


def _distribute(st, ex, inputs):
    x = inputs[0]
    sub = x.reshape(*x.shape[:-1], -1, 16)
    return sub[..., st.maps[ex.args["map"]]].reshape(x.shape)


def _rotate(st, ex, inputs):
    n = ex.args["n"]
    return [np.roll(v, -j, axis=-1) for v in inputs for j in range(n)]


def _transpose(st, ex, inputs):
    block = np.stack(inputs)  # [16 streams, ..., lanes]
    sub = block.reshape(16, *block.shape[1:-1], -1, 16)  # [stream, ..., superlane, lane]
    sub = np.swapaxes(sub, 0, -1)
    return list(sub.reshape(16, *block.shape[1:]))


def _many(refs_from: Ref, count: int) -> list:
    return [(Ref(refs_from.kind, refs_from.index + i), "int8") for i in range(count)]


for _name, _ops, _timing, _doc, _read in [
    ("SHIFT", (dtype(), ints("n"), stream("src"), stream("dst")), "sxm.cross",
     "shift lanes by n (positive: toward higher lanes), filling with zeros", _shift),
    ("PERMUTE", (dtype(), name_operand("map"), stream("src"), stream("dst")), "sxm.cross",
     "dst[i] = src[map[i]] over all lanes (map is a bijection)", _permute),
    ("DISTRIBUTE", (dtype(), name_operand("map"), stream("src"), stream("dst")), "sxm.local",
     "dst[16s+i] = src[16s+map[i]] within each superlane s (map has 16 entries)", _distribute),
]:
    _define(OpDef(_name, "SXM", _ops, _timing, _doc,
                  io=lambda a: ([(a["src"], a["dtype"])], [(a["dst"], a["dtype"])]),
                  read=_read, commit=lambda st, ex, p: [p]))

_define(OpDef("ROTATE", "SXM", (ints("n", 3, 4), stream("src"), stream("dst")), "sxm.local",
              "n input byte streams -> n*n output streams: dst[i*n+j] = src[i] rotated down by j lanes",
              io=lambda a: (_many(a["src"], a["n"]), _many(a["dst"], a["n"] ** 2)),
              read=_rotate, commit=lambda st, ex, p: p))
_define(OpDef("TRANSPOSE", "SXM", (stream("src"), stream("dst")), "sxm.transpose",
              "16 byte streams src..src+15: transpose each 16x16 block of (stream, lane) per superlane",
              io=lambda a: (_many(a["src"], 16), _many(a["dst"], 16)),
              read=_transpose, commit=lambda st, ex, p: p))


# ---------------------------------------------------------------- C2C


def _send_commit(st, ex, payload):
    st.link_send(ex.args["link"], ex.wcycle, payload)
    return []


def _receive(st, ex, inputs):
    return st.link_receive(ex.args["link"], ex.rcycle)


def _deskew_commit(st, ex, payload):
    st.deskewed.add(ex.args["link"])
    return []


_define(OpDef("SEND", "C2C", (ints("link", 0), stream("src")), "c2c.send",
              "send the vector on src over C2C link `link` (a loopback on a single chip)",
              io=lambda a: ([(a["src"], "int8")], []), read=lambda st, ex, inputs: inputs[0],
              commit=_send_commit))
_define(OpDef("RECEIVE", "C2C", (ints("link", 0), stream("dst")), "c2c.receive",
              "take the oldest vector that has arrived on link `link` onto dst",
              io=lambda a: ([], [(a["dst"], "int8")]), read=_receive, commit=lambda st, ex, p: [p]))
_define(OpDef("DESKEW", "C2C", (ints("link", 0),), "c2c.deskew",
              "align the link's clock; required before SEND or RECEIVE on it",
              read=lambda st, ex, inputs: None, commit=_deskew_commit))


def queue_kind(op: OpDef) -> str | None:
    """Which kind of queue may issue `op` (None: any queue; ICU instructions run everywhere)."""
    if op.unit == "ICU":
        return None
    if op.unit == "MXM":
        return "MXM.w" if op.name in ("LW", "IW") else "MXM.a"
    return "SXM" if op.unit == "C2C" else op.unit
