"""The tensor IR: a graph of 2-D tensor ops that users build with numpy-like calls.

    g = Graph()
    x = g.input("x", (1, 4096), "fp16")
    w = g.constant("w", weights)                 # resident in SRAM
    g.output("y", g.relu(g.matmul(x, w)))
    prog = openlpu.compile(g, chip="tsp-v1")

Every op has its reference semantics here, in numpy, with the chip's numerics (`evaluate`): a compiled
program must give exactly these bits. Composite ops (silu, gelu, ...) are built from primitive ones, so
their reference is the composition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from openlpu.chip import numerics as nx
from openlpu.chip.numerics import FLOAT_DTYPES
from openlpu.errors import UserError

ALIASES = {"float16": "fp16", "float32": "fp32", "half": "fp16", "float": "fp32"}
UNARY = ("neg", "abs", "relu", "exp", "tanh", "rsqrt", "mov")
BINARY = ("add", "sub", "mul", "max", "min")
ELEMENTWISE = frozenset(UNARY + BINARY + ("cast",))


def canonical_dtype(dtype) -> str:
    if isinstance(dtype, np.dtype) or (isinstance(dtype, type) and issubclass(dtype, np.generic)):
        dtype = {np.dtype(v): k for k, v in nx.DTYPES.items()}.get(np.dtype(dtype), str(np.dtype(dtype)))
    name = ALIASES.get(str(dtype), str(dtype))
    if name not in nx.DTYPES:
        raise UserError(f"unsupported dtype {dtype!r}: use one of {', '.join(nx.DTYPES)} (or float16/float32).")
    return name


@dataclass(eq=False)
class Node:
    """One tensor of the graph: the op that makes it, its inputs, shape [rows, cols] and dtype."""

    op: str
    inputs: tuple[Node, ...]
    shape: tuple[int, int]
    dtype: str
    name: str
    attrs: dict = field(default_factory=dict)
    value: np.ndarray | None = None  # constants only

    def __repr__(self) -> str:
        return f"{self.name}:{self.op}{list(self.shape)}:{self.dtype}"

    @property
    def rows(self) -> int:
        return self.shape[0]

    @property
    def cols(self) -> int:
        return self.shape[1]


def _shape2(shape) -> tuple[int, int]:
    shape = tuple(int(s) for s in (shape if isinstance(shape, (tuple, list)) else (shape,)))
    if len(shape) == 1:
        shape = (1, shape[0])
    if len(shape) != 2 or min(shape) < 1:
        raise UserError(f"shape {shape} is not supported: tensors are 2-D [rows, cols] with both at least 1.")
    return shape


class Graph:
    def __init__(self):
        self.nodes: list[Node] = []
        self.outputs: dict[str, Node] = {}
        self._names: set[str] = set()
        self._consts: dict[str, Node] = {}  # shared constants of the composite ops
        self._kernels: dict[tuple[int, int], list] = {}  # prepared MXM tiles of constant weights (evaluate)
        self.state_values: dict[str, np.ndarray] = {}  # state tensors' contents between evaluations

    # ---- building ----
    def _add(self, op, inputs, shape, dtype, name=None, **attrs) -> Node:
        name = name or f"{op}{len(self.nodes)}"
        if name.startswith("__"):
            raise UserError(f"tensor name {name!r} starts with '__', which the compiler keeps for itself: rename it.")
        if name in self._names:
            raise UserError(f"the graph already has a tensor named {name!r}: choose another name.")
        self._names.add(name)
        node = Node(op, tuple(inputs), shape, dtype, name, attrs)
        self.nodes.append(node)
        return node

    def input(self, name: str, shape, dtype) -> Node:
        return self._add("input", (), _shape2(shape), canonical_dtype(dtype), name)

    def constant(self, name: str, value, dtype=None) -> Node:
        arr = np.asarray(value)
        if arr.ndim == 1:
            arr = arr[None, :]
        dt = canonical_dtype(dtype if dtype is not None else arr.dtype)
        node = self._add("constant", (), _shape2(arr.shape), dt, name)
        node.value = arr.astype(nx.DTYPES[dt])
        if node.shape == (1, 1):
            node.attrs["replicated"] = True  # stored as a full vector (compile), so any lane holds it
        return node

    def state(self, name: str, shape, dtype) -> Node:
        """A tensor that lives in SRAM across runs of the compiled program (a KV cache): placed once, zero at
        first, never reloaded. Its readers see its contents at the start of a run; `write_rows` changes it
        for the runs after."""
        return self._add("state", (), _shape2(shape), canonical_dtype(dtype), name)

    def write_rows(self, state: Node, value: Node, position: Node, name=None) -> Node:
        """Write value's rows into rows position.. of `state`, position an input [1, 1] int32 given per run. The
        write lands after every reader of the state in the run (readers see the old rows). On the chip the
        addresses are computed from the position and each vector is written by MEM SCATTER."""
        if state.op != "state":
            raise UserError(f"write_rows writes a state tensor; {state.name} is a {state.op}: make it with g.state.")
        if any(n.op == "write_rows" and n.inputs[0] is state for n in self.nodes):
            raise UserError(f"state {state.name} is already written in this graph: write it once per run.")
        if value.dtype != state.dtype or value.cols != state.cols or value.rows > state.rows:
            raise UserError(f"write_rows {value.name}{list(value.shape)}:{value.dtype} into {state.name}"
                            f"{list(state.shape)}:{state.dtype}: give rows of the state's columns and dtype.")
        if position.op != "input" or position.shape != (1, 1) or position.dtype != "int32":
            raise UserError(f"write_rows position {position.name} must be an input [1, 1] of int32.")
        rep = self.row_max(position)  # the position in every lane, for the address vectors
        return self._add("write_rows", (state, self._clean(value), rep), state.shape, state.dtype, name,
                         position=position.name)

    def output(self, name: str, node: Node) -> Node:
        if name in self.outputs:
            raise UserError(f"output {name!r} is defined twice.")
        self.outputs[name] = node
        return node

    def matmul(self, a: Node, b: Node, name=None) -> Node:
        """[M, K] x [K, N]: int8 -> int32 or fp16 -> fp32, each 320-long K tile summed exactly, rounded once."""
        return self._mxm("matmul", a, b, a.cols == b.rows, (a.rows, b.cols), name)

    def matmul_nt(self, a: Node, b: Node, name=None) -> Node:
        """[M, K] x [N, K]^T, the MXM's native form (GroqAPI: A . B^T): b's rows are the weight rows, so a
        computed b (keys of attention, say) can be installed straight from SRAM."""
        return self._mxm("matmul_nt", a, b, a.cols == b.cols, (a.rows, b.rows), name)

    def _clean(self, a: Node) -> Node:
        """The identity, for the reference; on the chip it zeroes the lanes past the last column of a partial
        tile. Elementwise ops can turn those padding lanes into inf (rsqrt(0), exp of a shifted 0), and the
        MXM multiplies them by zero weights: 0 * inf = NaN. Inputs, constants and MXM results are clean, and so
        is state (zero at first, written with clean rows)."""
        if a.dtype not in FLOAT_DTYPES or a.op in ("input", "constant", "matmul", "matmul_nt", "row_sum", "clean",
                                                   "state"):
            return a
        return self._add("clean", (a,), a.shape, a.dtype)

    def _mxm(self, op: str, a: Node, b: Node, fits: bool, shape: tuple[int, int], name) -> Node:
        a, b = self._clean(a), self._clean(b)
        if not fits:
            raise UserError(f"{op} {a.name}{list(a.shape)} x {b.name}{list(b.shape)}: the inner dimensions differ.")
        if a.dtype != b.dtype or a.dtype not in ("int8", "fp16"):
            raise UserError(f"{op} needs two int8 or two fp16 operands; got {a.dtype} and {b.dtype}: cast them first.")
        return self._add(op, (a, b), shape, "int32" if a.dtype == "int8" else "fp32", name)

    def transpose(self, a: Node, name=None) -> Node:
        """[R, C] -> [C, R] on the MXM: an identity times a^T (exact for int8 and fp16)."""
        if a.dtype not in ("int8", "fp16"):
            raise UserError(f"transpose takes int8 or fp16; {a.name} is {a.dtype}: cast it first.")
        eye = self._consts.get(f"eye_{a.dtype}_{a.cols}")
        if eye is None:
            eye = self._consts[f"eye_{a.dtype}_{a.cols}"] = self.constant(f"eye_{a.dtype}_{a.cols}", np.eye(a.cols),
                                                                            a.dtype)
        return self.cast(self.matmul_nt(eye, a), a.dtype, name=name)

    def _elementwise(self, op: str, *args, name=None, dtype=None) -> Node:
        """Operands of one shape, or broadcast: a row [1, cols], a scalar [1, 1] or a column [rows, 1]."""
        nodes = [a for a in args if isinstance(a, Node)]
        base = nodes[0]
        dt = dtype or base.dtype
        shape = (max(a.rows for a in nodes), max(a.cols for a in nodes))
        ins = []
        for a in args:
            if not isinstance(a, Node):
                a = self.scalar(a, base.dtype)
            if a.dtype != base.dtype:
                raise UserError(f"{op}: {base.name} is {base.dtype} but {a.name} is {a.dtype}: cast one first.")
            if a.shape not in (shape, (1, shape[1]), (1, 1), (shape[0], 1)):
                raise UserError(f"{op}: shapes {list(base.shape)} and {list(a.shape)} do not broadcast "
                                f"(a row [1, cols], a column [rows, 1] or a scalar does).")
            if a.cols == 1 and shape[1] > 1 and not a.attrs.get("replicated"):
                a = self._replicate(a)
            ins.append(a)
        node = self._add(op, ins, shape, dt, name)
        if shape[1] == 1 and all(a.attrs.get("replicated") for a in ins):
            node.attrs["replicated"] = True
        return node

    def _replicate(self, a: Node) -> Node:
        """A column [rows, 1] with its value in every lane, so it can broadcast over column tiles."""
        if a.dtype in ("int8", "fp16", "fp32"):
            return self.cast(self.row_sum(a), a.dtype)
        raise UserError(f"a column of {a.dtype} cannot broadcast over columns: cast {a.name} to fp32 first.")

    def scalar(self, value: float, dtype: str) -> Node:
        return self.constant(f"const{len(self.nodes)}", np.array([[value]]), dtype)

    def add(self, a, b, name=None): return self._elementwise("add", a, b, name=name)
    def sub(self, a, b, name=None): return self._elementwise("sub", a, b, name=name)
    def mul(self, a, b, name=None): return self._elementwise("mul", a, b, name=name)
    def maximum(self, a, b, name=None): return self._elementwise("max", a, b, name=name)
    def minimum(self, a, b, name=None): return self._elementwise("min", a, b, name=name)
    def neg(self, a, name=None): return self._elementwise("neg", a, name=name)
    def abs(self, a, name=None): return self._elementwise("abs", a, name=name)
    def relu(self, a, name=None): return self._elementwise("relu", a, name=name)

    def _float_unary(self, op, a, name):
        if a.dtype not in nx.FLOAT_DTYPES:
            raise UserError(f"{op} needs a float tensor; {a.name} is {a.dtype}: cast it to fp32 first.")
        return self._elementwise(op, a, name=name)

    def exp(self, a, name=None): return self._float_unary("exp", a, name)
    def tanh(self, a, name=None): return self._float_unary("tanh", a, name)
    def rsqrt(self, a, name=None): return self._float_unary("rsqrt", a, name)

    def cast(self, a: Node, dtype, name=None) -> Node:
        node = self._add("cast", (a,), a.shape, canonical_dtype(dtype), name)
        if a.attrs.get("replicated"):
            node.attrs["replicated"] = True
        return node

    # ---- reductions and normalisations, built on the MXM ----
    def row_sum(self, a: Node, name=None) -> Node:
        """Each row's sum, [rows, 1]. The VXM has no cross-lane add; the MXM multiplies by a ones matrix,
        which leaves the sum in every lane, so the result broadcasts over columns for free. int8 -> int32,
        fp16 -> fp32. fp32 is cut into three fp16 limbs at scales 2^32, 2^16 and 1, each summed on the MXM:
        about fp32 precision for |x| < 2.8e14 (fp16's 65504 x 2^32)."""
        if a.dtype in ("int8", "fp16"):
            node = self._add("row_sum", (self._clean(a),), (a.rows, 1), "int32" if a.dtype == "int8" else "fp32",
                             name)
            node.attrs["replicated"] = True
            return node
        if a.dtype != "fp32":
            raise UserError(f"row_sum takes int8, fp16 or fp32; {a.name} is {a.dtype}: cast it first.")
        total, rest = None, a
        for scale in (2.0**32, 2.0**16, 1.0):
            limb = self.cast(self.mul(rest, 1.0 / scale), "fp16")  # powers of two: exact scaling
            part = self.mul(self.row_sum(limb), scale)
            total = part if total is None else self.add(total, part)
            if scale != 1.0:
                rest = self.sub(rest, self.mul(self.cast(limb, "fp32"), scale))
        return self.mov(total, name=name) if name else total

    def mov(self, a: Node, name=None) -> Node:
        return self._elementwise("mov", a, name=name)

    def mean(self, a: Node, name=None) -> Node:
        return self.mul(self.row_sum(a), 1.0 / a.cols, name=name)

    def reciprocal(self, a: Node, name=None) -> Node:
        """1/x as rsqrt(x)^2: the VXM has no divide (x > 0)."""
        r = self.rsqrt(a)
        return self.mul(r, r, name=name)

    def rmsnorm(self, x: Node, weight: Node, eps: float, name=None) -> Node:
        """x / sqrt(mean(x^2) + eps) * weight, in fp32."""
        scale = self.rsqrt(self.add(self.mean(self.mul(x, x)), eps))
        return self.mul(self.mul(x, scale), weight, name=name)

    def layernorm(self, x: Node, weight: Node, bias: Node, eps: float, name=None) -> Node:
        centred = self.sub(x, self.mean(x))
        scale = self.rsqrt(self.add(self.mean(self.mul(centred, centred)), eps))
        return self.add(self.mul(self.mul(centred, scale), weight), bias, name=name)

    def softmax(self, x: Node, name=None) -> Node:
        """exp(x - max(x)) / sum(exp(x - max(x))) per row, in fp32: every exp is at most 1, so any finite x
        stays in row_sum's range."""
        if x.dtype != "fp32":
            raise UserError(f"softmax takes fp32; {x.name} is {x.dtype}: cast it first.")
        e = self.exp(self.sub(x, self.row_max(x)))
        return self.mul(e, self.reciprocal(self.row_sum(e)), name=name)

    def row_max(self, a: Node, name=None) -> Node:
        """Each row's maximum, [rows, 1], in every lane (so it broadcasts over columns). Any dtype."""
        node = self._add("row_max", (a,), (a.rows, 1), a.dtype, name)
        node.attrs["replicated"] = True
        return node

    def argmax(self, a: Node, name=None) -> Node:
        """The column of each row's maximum (the first, as numpy's), [rows, 1] int32; rows need a finite
        maximum. Built on row_max: eq = 1 where x == max (from x - max, which is 0 there and negative
        elsewhere), then the largest (cols - column) among them."""
        if a.dtype == "int32":
            raise UserError(f"argmax of int32 is not supported ({a.name}): x - max can overflow int32; cast it "
                            f"to fp32 (exact below 2^24) first.")
        if a.dtype in ("int8", "int16"):
            x = self.cast(a, "int32")
            eq = self.add(self.maximum(self.sub(x, self.row_max(x)), -1), 1)
        else:
            x = a if a.dtype == "fp32" else self.cast(a, "fp32")
            d = self.sub(x, self.row_max(x))  # 0 at the maximum, else <= -2^-149
            eq = self.cast(self.add(self.maximum(self.mul(self.mul(d, 2.0**100), 2.0**100), -1.0), 1.0), "int32")
        rank = self.constant(f"argmax_rank{len(self.nodes)}", (a.cols - np.arange(a.cols))[None, :], "int32")
        return self.sub(a.cols, self.row_max(self.mul(eq, rank)), name=name)

    def gather(self, table: Node, indices: Node, name=None) -> Node:
        """table[indices[:, 0]]: rows of a table [V, D] (an input or constant, held in one slice group) picked
        by indices [N, 1] (int16 or int32), as an embedding lookup does. On the chip each lane reads its own
        address from a stream (MEM GATHER)."""
        if indices.cols != 1 or indices.dtype not in ("int16", "int32"):
            raise UserError(f"gather indices {indices.name}{list(indices.shape)}:{indices.dtype} must be a column "
                            f"[N, 1] of int16 or int32.")
        if table.op not in ("input", "constant"):
            raise UserError(f"gather table {table.name} is computed; gather reads an input or constant table: "
                            f"make it one.")
        rep = self.row_max(indices if indices.dtype == "int32" else self.cast(indices, "int32"))
        return self._add("gather", (table, rep), (indices.rows, table.cols), table.dtype, name)

    # ---- images: NHWC, one image, pixels as rows [H * W, C] ----
    def conv2d(self, x: Node, weights, image: tuple[int, int], stride: int = 1, padding: int = 0,
               name=None) -> Node:
        """Convolution of x [H*W, Cin] (pixels row-major) by constant weights [KH, KW, Cin, Cout], zero padded:
        [Ho*Wo, Cout], int8 -> int32 or fp16 -> fp32. Lowered to one matmul over an im2col copy in which each
        (kh, kw) piece takes whole column tiles, so the reference is that matmul (conv2d_reference)."""
        w = np.asarray(weights)
        if w.ndim != 4 or w.shape[2] != x.cols:
            raise UserError(f"conv2d weights must be [KH, KW, Cin, Cout] with Cin = {x.cols} ({x.name}'s columns); "
                            f"got shape {list(w.shape)}.")
        if x.dtype not in ("int8", "fp16"):
            raise UserError(f"conv2d takes int8 or fp16; {x.name} is {x.dtype}: cast it first.")
        rows = self._image_rows(x, image, w.shape[:2], stride, padding, "conv2d")
        wnode = self.constant(f"{name or 'conv'}{len(self.nodes)}.w", w.reshape(-1, w.shape[3]), x.dtype)
        out_dtype = "int32" if x.dtype == "int8" else "fp32"
        return self._add("conv2d", (self._clean(x), wnode), (rows, w.shape[3]), out_dtype, name, image=tuple(image),
                         kernel=tuple(w.shape[:2]), stride=stride, padding=padding)

    def max_pool2d(self, x: Node, image: tuple[int, int], kernel: int, stride: int, padding: int = 0,
                   name=None) -> Node:
        """Max over kernel x kernel windows of x [H*W, C], zero padded (as Keras' ZeroPadding2D before its
        MaxPooling2D): [Ho*Wo, C]. A 1x1 kernel with a stride keeps every stride-th pixel."""
        rows = self._image_rows(x, image, (kernel, kernel), stride, padding, "max_pool2d")
        return self._add("max_pool2d", (x,), (rows, x.cols), x.dtype, name, image=tuple(image),
                         kernel=(kernel, kernel), stride=stride, padding=padding)

    def _image_rows(self, x: Node, image, kernel, stride: int, padding: int, op: str) -> int:
        h, w = image
        if h * w != x.rows:
            raise UserError(f"{op}: {x.name} has {x.rows} rows, not the {h}x{w} = {h * w} pixels of the image.")
        ho, wo = (conv_out(h, kernel[0], stride, padding), conv_out(w, kernel[1], stride, padding))
        if min(ho, wo) < 1 or stride < 1 or padding < 0:
            raise UserError(f"{op}: a {kernel[0]}x{kernel[1]} kernel with stride {stride} and padding {padding} "
                            f"leaves no output of a {h}x{w} image.")
        return ho * wo

    # ---- slices and concatenation ----
    def slice(self, a: Node, rows: tuple[int, int] | None = None, cols: tuple[int, int] | None = None,
              name=None) -> Node:
        """a[r0:r1, c0:c1]. On the chip, columns must start on a tile edge (a multiple of the lanes)."""
        r0, r1 = rows or (0, a.rows)
        c0, c1 = cols or (0, a.cols)
        if not (0 <= r0 < r1 <= a.rows and 0 <= c0 < c1 <= a.cols):
            raise UserError(f"slice rows {r0}:{r1}, cols {c0}:{c1} is outside {a.name}{list(a.shape)}.")
        node = self._add("slice", (a,), (r1 - r0, c1 - c0), a.dtype, name, row0=r0, col0=c0)
        if a.attrs.get("replicated"):  # rows of a column in every lane: a slice copies whole vectors
            node.attrs["replicated"] = True
        return node

    def concat(self, parts: list[Node], axis: int, name=None) -> Node:
        """Rows (axis 0) or columns (axis 1) one after another; one dtype. Columns join on tile edges."""
        if not parts or axis not in (0, 1):
            raise UserError("concat takes a non-empty list of tensors and axis 0 (rows) or 1 (columns).")
        other = 1 - axis
        if len({p.dtype for p in parts}) > 1 or len({p.shape[other] for p in parts}) > 1:
            raise UserError(f"concat along axis {axis} needs one dtype and equal "
                            f"{'columns' if axis == 0 else 'rows'}: {[repr(p) for p in parts]}.")
        shape = [parts[0].rows, parts[0].cols]
        shape[axis] = sum(p.shape[axis] for p in parts)
        return self._add("concat", tuple(parts), tuple(shape), parts[0].dtype, name, axis=axis)

    def take_rows(self, a: Node, rows, name=None) -> Node:
        """a[rows] for a fixed list of row numbers (repeats allowed): copies of runs of consecutive rows."""
        rows = tuple(int(r) for r in rows)
        if not rows or min(rows) < 0 or max(rows) >= a.rows:
            raise UserError(f"take_rows needs row numbers in 0..{a.rows - 1} for {a.name}{list(a.shape)}; got "
                            f"{len(rows)} of them{f' from {min(rows)} to {max(rows)}' if rows else ''}.")
        return self._add("take_rows", (a,), (len(rows), a.cols), a.dtype, name, rows=rows)

    def reshape(self, a: Node, shape, name=None) -> Node:
        """numpy's row-major reshape to [rows, cols]. Composed: cut the columns to their gcd g with the new
        columns (slices, stacked as rows and put back in order), then join every cols/g rows (concat)."""
        r2, c2 = _shape2(shape)
        rows, cols = a.shape
        if r2 * c2 != rows * cols:
            raise UserError(f"cannot reshape {a.name}{list(a.shape)} ({rows * cols:,} values) to [{r2}, {c2}] "
                            f"({r2 * c2:,} values).")
        if c2 == cols:
            return self.mov(a, name=name)
        g = math.gcd(cols, c2)
        x = a
        if cols != g:
            k = cols // g
            stacked = self.concat([self.slice(x, cols=(m * g, (m + 1) * g)) for m in range(k)], axis=0)
            x = self.take_rows(stacked, [m * rows + r for r in range(rows) for m in range(k)],
                               name=name if c2 == g else None)
        if c2 != g:
            k = c2 // g
            x = self.concat([self.take_rows(x, range(m, x.rows, k)) for m in range(k)], axis=1, name=name)
        return x

    # ---- lane moves (the SXM) ----
    def swap_pairs(self, a: Node, name=None) -> Node:
        """Exchange columns 2i and 2i+1 (an even number of columns)."""
        if a.cols % 2:
            raise UserError(f"swap_pairs needs an even number of columns; {a.name} has {a.cols}.")
        return self._add("swap_pairs", (a,), a.shape, a.dtype, name)

    def rope(self, x: Node, cos: Node, sin: Node, name=None) -> Node:
        """Rotary embedding on adjacent pairs (llama.cpp's layout, as GGUF stores Q and K):
        out[2i] = x[2i] cos - x[2i+1] sin, out[2i+1] = x[2i+1] cos + x[2i] sin. `cos` and `sin` hold one
        value per column (both members of a pair share it), `sin` with the sign of the pair's position:
        -sin for column 2i, +sin for 2i+1 (rope_tables builds them)."""
        return self.add(self.mul(x, cos), self.mul(self.swap_pairs(x), sin), name=name)

    def sigmoid(self, a, name=None):
        """0.5 * (1 + tanh(x / 2)): the VXM has tanh and no divide."""
        half = self.mul(a, 0.5)
        return self.mul(self.add(self.tanh(half), 1.0), 0.5, name=name)

    def silu(self, a, name=None):
        return self.mul(a, self.sigmoid(a), name=name)

    def gelu(self, a, name=None):
        """The tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
        cube = self.mul(self.mul(a, a), a)
        inner = self.mul(self.add(a, self.mul(cube, 0.044715)), float(np.sqrt(2 / np.pi)))
        return self.mul(self.mul(a, 0.5), self.add(self.tanh(inner), 1.0), name=name)

    # ---- the reference ----
    def consumers(self) -> dict[Node, list[Node]]:
        users: dict[Node, list[Node]] = {n: [] for n in self.nodes}
        for n in self.nodes:
            for i in n.inputs:
                users[i].append(n)
        return users

    @property
    def constant_bytes(self) -> int:
        """Bytes of the graph's constants (weights, tables) as they are stored."""
        return sum(n.value.nbytes for n in self.nodes if n.op == "constant")

    def evaluate(self, inputs: dict[str, np.ndarray], lanes: int = 320,
                 state: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Run the graph in numpy with the chip's numerics (the MXM's K tile is `lanes` long). State tensors
        are read from `state` (by name; zeros when absent) and their writes stored back into it once the run
        is done; without `state` the graph keeps its own across evaluations (`self.state_values`)."""
        state = self.state_values if state is None else state
        check_writes(self)
        values: dict[Node, np.ndarray] = {}
        for n in self.nodes:
            if n.op == "state":
                values[n] = state_value(n, state)
            else:
                values[n] = self._eval(n, values, inputs, lanes)
        for n in self.nodes:
            if n.op == "write_rows":
                state[n.inputs[0].name] = values[n]
        return {name: values[n] for name, n in self.outputs.items()}

    def _eval(self, n: Node, values, inputs, lanes) -> np.ndarray:
        if n.op == "input":
            return check_input(n, inputs)
        if n.op == "write_rows":
            pos = write_position(n, inputs)
            new = values[n.inputs[0]].copy()
            new[pos:pos + n.inputs[1].rows] = values[n.inputs[1]]
            return new
        if n.op == "constant":
            return n.value
        args = [values[i] for i in n.inputs]
        if n.op == "matmul":
            kernels = None
            if n.inputs[1].op == "constant":  # weights: prepare their tiles once per graph and lane count
                key = (id(n.inputs[1]), lanes)
                kernels = self._kernels.get(key)
                if kernels is None:
                    kernels = self._kernels[key] = mxm_kernels(args[1], lanes)
            return matmul_reference(args[0], args[1], lanes, kernels)
        if n.op == "matmul_nt":
            return matmul_reference(args[0], np.ascontiguousarray(args[1].T), lanes)
        if n.op == "row_sum":
            return matmul_reference(args[0], ones_tile(n.inputs[0], lanes), lanes)[:, :1]
        if n.op == "cast":
            return nx.cast(args[0], n.inputs[0].dtype, n.dtype)
        if n.op == "clean":
            return args[0]
        if n.op == "slice":
            return args[0][n.attrs["row0"]:n.attrs["row0"] + n.rows, n.attrs["col0"]:n.attrs["col0"] + n.cols]
        if n.op == "take_rows":
            return args[0][list(n.attrs["rows"])]
        if n.op == "concat":
            return np.concatenate(args, axis=n.attrs["axis"])
        if n.op == "conv2d":
            cols = im2col_reference(args[0], n.attrs, lanes)
            return matmul_reference(cols, conv_weights(args[1], n.attrs, lanes), lanes)
        if n.op == "max_pool2d":
            return pool_reference(im2col_reference(args[0], n.attrs, lanes), n.dtype, n.attrs, lanes)[:, :n.cols]
        if n.op == "row_max":
            return row_max_reference(args[0], lanes)
        if n.op == "gather":
            idx = args[1][:, 0]
            if idx.size and (idx.min() < 0 or idx.max() >= n.inputs[0].rows):
                raise UserError(f"gather {n.name}: index {int(idx.max() if idx.max() >= 0 else idx.min())} is outside "
                                f"the {n.inputs[0].rows} rows of {n.inputs[0].name}.")
            return args[0][idx]
        if n.op == "swap_pairs":
            return args[0].reshape(n.rows, -1, 2)[..., ::-1].reshape(n.shape).copy()
        args = [np.broadcast_to(a, n.shape) for a in args]
        if n.op in BINARY:
            return nx.binary(n.op, args[0], args[1], n.dtype)
        return nx.unary(n.op, args[0], n.dtype)


def rope_tables(positions, head_dim: int, heads: int, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """cos and signed sin tables [len(positions), heads * head_dim] for Graph.rope (fp32)."""
    freqs = theta ** (-np.arange(0, head_dim, 2) / head_dim)
    angles = np.outer(np.asarray(positions, dtype=np.float64), freqs)  # [P, head_dim / 2]
    cos = np.repeat(np.cos(angles), 2, axis=1)
    sin = np.repeat(np.sin(angles), 2, axis=1) * np.tile([-1.0, 1.0], head_dim // 2)
    return np.tile(cos, heads).astype(np.float32), np.tile(sin, heads).astype(np.float32)


def lowest_highest(dtype: str) -> tuple:
    """The dtype's lowest and highest values (-inf and inf for floats)."""
    if dtype in FLOAT_DTYPES:
        return -np.inf, np.inf
    info = np.iinfo(nx.DTYPES[dtype])
    return info.min, info.max


def row_max_reference(x: np.ndarray, lanes: int) -> np.ndarray:
    """row_max as the chip computes it (lower_reduce.py): the padding lanes at the lowest value, tiles folded
    in halves, then the lanes of the last tile rotated and maxed in log steps; lane 0 of the result."""
    rows, cols = x.shape
    dt = {np.dtype(v): k for k, v in nx.DTYPES.items()}[x.dtype]
    n = -(-cols // lanes)
    padded = np.full((rows, n * lanes), lowest_highest(dt)[0], dtype=x.dtype)
    padded[:, :cols] = x
    cur = padded.reshape(rows, n, lanes)
    while n > 1:
        h = -(-n // 2)
        cur = nx.binary("max", cur[:, :h], cur[:, n - h:], dt)
        n = h
    cur = cur[:, 0]
    s = 1
    while s < lanes:
        cur = nx.binary("max", cur, np.roll(cur, -s, axis=1), dt)
        s *= 2
    return cur[:, :1].copy()


def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def im2col_runs(attrs: dict) -> list[list[tuple[int, int, int]]]:
    """Per (kh, kw) piece: runs (input row, output row, pixels) of pixels it copies, consecutive in both
    (whole output rows of a stride-1 kernel; single pixels otherwise). Padding pixels are in no run."""
    (h, w), (kh_n, kw_n), s, p = attrs["image"], attrs["kernel"], attrs["stride"], attrs["padding"]
    ho, wo = conv_out(h, kh_n, s, p), conv_out(w, kw_n, s, p)
    pieces = []
    for kh in range(kh_n):
        for kw in range(kw_n):
            runs = []
            ow = [o for o in range(wo) if 0 <= o * s + kw - p < w]
            for oh in range(ho):
                ih = oh * s + kh - p
                if not (0 <= ih < h and ow):
                    continue
                if s == 1:
                    runs.append((ih * w + ow[0] + kw - p, oh * wo + ow[0], len(ow)))
                else:
                    runs += [(ih * w + o * s + kw - p, oh * wo + o, 1) for o in ow]
            pieces.append(runs)
    return pieces


def im2col_reference(x: np.ndarray, attrs: dict, lanes: int) -> np.ndarray:
    """[Ho*Wo, pieces * tiles * lanes]: piece k (kh, kw) in column tiles [k * tiles, (k + 1) * tiles), zeros
    where the window leaves the image and past the channels."""
    cols = x.shape[1]
    width = -(-cols // lanes) * lanes
    pieces = im2col_runs(attrs)
    (h, w), (kh, kw), s, p = attrs["image"], attrs["kernel"], attrs["stride"], attrs["padding"]
    out = np.zeros((conv_out(h, kh, s, p) * conv_out(w, kw, s, p), len(pieces) * width), dtype=x.dtype)
    for k, runs in enumerate(pieces):
        for src, dst, n in runs:
            out[dst:dst + n, k * width:k * width + cols] = x[src:src + n]
    return out


def conv_weights(w: np.ndarray, attrs: dict, lanes: int) -> np.ndarray:
    """The [KH*KW*Cin, Cout] weights spread to im2col's layout: piece k's rows start at a tile edge."""
    pieces = attrs["kernel"][0] * attrs["kernel"][1]
    cin = w.shape[0] // pieces
    width = -(-cin // lanes) * lanes
    out = np.zeros((pieces * width, w.shape[1]), dtype=w.dtype)
    for k in range(pieces):
        out[k * width:k * width + cin] = w[k * cin:(k + 1) * cin]
    return out


def pool_reference(cols: np.ndarray, dtype: str, attrs: dict, lanes: int) -> np.ndarray:
    """Max over im2col's pieces, folded in halves as the chip does (max is exact; the order fixes signed zeros)."""
    n = attrs["kernel"][0] * attrs["kernel"][1]
    cur = cols.reshape(cols.shape[0], n, -1)
    while n > 1:
        h = -(-n // 2)
        cur = nx.binary("max", cur[:, :h], cur[:, n - h:], dtype)
        n = h
    return cur[:, 0]


def ones_tile(a: Node, lanes: int) -> np.ndarray:
    """The weights of row_sum: ones [cols, lanes] (every output lane gets the row's sum)."""
    return np.ones((a.cols, lanes), dtype=nx.DTYPES[a.dtype])


def check_writes(graph: Graph) -> None:
    """A write_rows is a side effect: nothing may read its result."""
    for n in graph.nodes:
        used = [u for u in n.inputs if u.op == "write_rows"]
        if used:
            raise UserError(f"{n.name} reads write_rows {used[0].name}, which has no value: read the state "
                            f"{used[0].inputs[0].name} in the next run instead.")
    outs = [name for name, n in graph.outputs.items() if n.op == "write_rows"]
    if outs:
        raise UserError(f"output {outs[0]!r} is a write_rows, which has no value: output the rows it writes.")


def state_value(n: Node, state: dict[str, np.ndarray]) -> np.ndarray:
    """A state tensor's contents (zeros before its first write)."""
    value = state.get(n.name)
    if value is None:
        return np.zeros(n.shape, nx.DTYPES[n.dtype])
    arr = np.asarray(value)
    if arr.shape != n.shape:
        raise UserError(f"state {n.name!r} has shape {list(arr.shape)}; the graph expects {list(n.shape)}.")
    return arr.astype(nx.DTYPES[n.dtype])


def write_position(n: Node, inputs: dict) -> int:
    """The run's position of a write_rows, checked to keep its rows inside the state."""
    pos = int(np.asarray(inputs[n.attrs["position"]]).reshape(-1)[0])
    state, rows = n.inputs[0], n.inputs[1].rows
    if not 0 <= pos <= state.rows - rows:
        raise UserError(f"position {pos} of {n.name} puts {rows} rows outside the {state.rows} rows of state "
                        f"{state.name}: give a position in 0..{state.rows - rows}.")
    return pos


def check_input(n: Node, inputs: dict) -> np.ndarray:
    if n.name not in inputs:
        raise UserError(f"input {n.name!r} is missing: pass it as {{{n.name!r}: array of shape {list(n.shape)}}}.")
    arr = np.asarray(inputs[n.name])
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.shape != n.shape:
        raise UserError(f"input {n.name!r} has shape {list(arr.shape)}; the graph expects {list(n.shape)}.")
    return arr.astype(nx.DTYPES[n.dtype])


def mxm_kernels(b: np.ndarray, lanes: int) -> list:
    """The installed weights of each K tile of `lanes` rows of b [K, N]."""
    dtype = "int8" if b.dtype == np.int8 else "fp16"
    return [nx.mxm_kernel(dtype, np.ascontiguousarray(b[k0:k0 + lanes].T)) for k0 in range(0, b.shape[0], lanes)]


def matmul_reference(a: np.ndarray, b: np.ndarray, lanes: int, kernels: list | None = None) -> np.ndarray:
    """What the MXM computes: per K tile of `lanes`, the exact dot rounded once; tiles summed in order.
    `kernels` (from mxm_kernels(b, lanes)) saves preparing constant weights again on every call."""
    acc = None
    for i, kernel in enumerate(kernels or mxm_kernels(b, lanes)):
        k0 = i * lanes
        part = kernel(a[:, k0:k0 + lanes])
        if acc is None:
            acc = part
        else:
            with np.errstate(over="ignore"):
                acc = acc + part
    return acc
