"""Where the inputs of a chunk of vectors come from: values other batches committed, fetched with numpy.

Built once per program by openlpu.sim.plan from the statically resolved reads, called at every run with
the `Store` of committed values. `reads()` says which vectors a fetch takes: [(writer batch, its rows,
positions in the read)]. A stream read takes byte planes (a vector of width w reads w streams,
each plane possibly from another writer, as `ChipState.read` assembles them); a latch or link read
takes the writer's payload as it is, with its own dtype.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from openlpu.chip import numerics as nx


@dataclass
class Resolution:
    """Every read and write event of a program (openlpu.sim.plan), and for each the write it sees."""

    batches: list  # the program's batches
    vb: np.ndarray  # vector -> its batch
    before: np.ndarray  # event -> the write event it sees (a read) or -1
    vec: np.ndarray  # event -> its vector
    grp: np.ndarray  # event -> output group (a write) or input (a read)
    plane: np.ndarray  # event -> byte plane within the group


class Store:
    """Committed values per batch: its output groups ([vectors, lanes] each) and its typed payload."""

    def __init__(self, nbatches: int):
        self.outs: list = [None] * nbatches
        self.typed: list = [None] * nbatches


def _bytes(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).view(np.uint8).reshape(*a.shape, a.dtype.itemsize)


def _rows(rows: np.ndarray):
    """Consecutive rows as a slice (numpy then returns a view), others as an index array."""
    if len(rows) and (len(rows) == 1 or (np.diff(rows) == 1).all()):
        return slice(int(rows[0]), int(rows[0]) + len(rows))
    return rows


ALL = slice(None)  # every vector of a read


class Fetch:
    """A fetch's `reads()` are [(writer batch, its rows, positions in the read)]; `sources` the writers."""

    def reads(self) -> list:
        raise NotImplementedError

    @cached_property
    def sources(self) -> tuple[int, ...]:
        return tuple(dict.fromkeys(w for w, _, _ in self.reads()))


class Zero(Fetch):
    """Nothing reached the reader: zeros."""

    def __init__(self, m: int, dtype: str, lanes: int):
        self.shape, self.dtype = (m, lanes), nx.DTYPES[dtype]

    def __call__(self, store: Store) -> np.ndarray:
        return np.zeros(self.shape, self.dtype)

    def reads(self) -> list:
        return []


class Rows(Fetch):
    """Whole elements of one output group of one batch (the common case: a stream read as written)."""

    def __init__(self, batch: int, group: int, rows, view):
        self.batch, self.group, self.rows, self.view = batch, group, rows, view

    def __call__(self, store: Store) -> np.ndarray:
        a = store.outs[self.batch][self.group][self.rows]
        return a if self.view is None else a.view(self.view)

    def reads(self) -> list:
        return [(self.batch, self.rows, ALL)]


class Planes(Fetch):
    """Byte planes off..off+w-1 of one output group of one batch (e.g. one byte of an int32 result)."""

    def __init__(self, batch: int, group: int, rows, off: int, dtype: str):
        self.batch, self.group, self.rows = batch, group, rows
        self.off, self.w, self.dtype = off, nx.width(dtype), nx.DTYPES[dtype]

    def __call__(self, store: Store) -> np.ndarray:
        planes = _bytes(store.outs[self.batch][self.group])[self.rows, :, self.off:self.off + self.w]
        if self.w == 1:
            return planes[..., 0].view(self.dtype)
        return np.ascontiguousarray(planes).view(self.dtype)[..., 0]

    def reads(self) -> list:
        return [(self.batch, self.rows, ALL)]


class Assembled(Fetch):
    """Any mix: byte plane by byte plane, vector by vector, from several writers (zeros where none)."""

    def __init__(self, m: int, dtype: str, lanes: int, pieces: list):
        self.shape, self.dtype, self.pieces = (m, lanes, nx.width(dtype)), nx.DTYPES[dtype], pieces

    def __call__(self, store: Store) -> np.ndarray:
        out = np.zeros(self.shape, np.uint8)
        for batch, group, src_plane, plane, rows, at in self.pieces:
            out[at, :, plane] = _bytes(store.outs[batch][group])[rows, :, src_plane]
        return out.view(self.dtype)[..., 0]

    def reads(self) -> list:
        return [(batch, rows, at) for batch, _, _, _, rows, at in self.pieces]


class Stacked(Fetch):
    """Each byte plane whole from one byte-wide output group (a value read from SRAM, a plane a slice)."""

    def __init__(self, dtype: str, planes: list):
        self.dtype, self.planes = nx.DTYPES[dtype], planes  # per plane: (batch, group, rows)

    def __call__(self, store: Store) -> np.ndarray:
        outs = store.outs
        return np.stack([outs[b][g][rows] for b, g, rows in self.planes], axis=-1).view(self.dtype)[..., 0]

    def reads(self) -> list:
        return [(b, rows, ALL) for b, _, rows in self.planes]


class Typed(Fetch):
    """Payload rows of one batch (an ALU latch, a C2C link), in the dtype they were computed in."""

    def __init__(self, batch: int, rows):
        self.batch, self.rows = batch, rows

    def __call__(self, store: Store) -> np.ndarray:
        return store.typed[self.batch][self.rows]

    def reads(self) -> list:
        return [(self.batch, self.rows, ALL)]


class TypedAssembled(Fetch):
    """Payload rows of several batches of one dtype, zeros where nothing was written."""

    def __init__(self, m: int, dtype: np.dtype, lanes: int, pieces: list):
        self.shape, self.dtype, self.pieces = (m, lanes), dtype, pieces

    def __call__(self, store: Store) -> np.ndarray:
        out = np.zeros(self.shape, self.dtype)
        for batch, rows, at in self.pieces:
            out[at] = store.typed[batch][rows]
        return out

    def reads(self) -> list:
        return self.pieces


class PerVector(Fetch):
    """Payloads of different dtypes: no one array holds them, so the reader runs vector by vector."""

    def __init__(self, sources: list, dtype: str, lanes: int):
        self.each = sources  # per vector: (batch, row) or None
        self.zero = np.zeros(lanes, nx.DTYPES[dtype])

    def one(self, store: Store, j: int) -> np.ndarray:
        s = self.each[j]
        return self.zero if s is None else store.typed[s[0]][s[1]]

    def reads(self) -> list:
        return [(s[0], s[1], j) for j, s in enumerate(self.each) if s is not None]


def typed_dtype(b) -> np.dtype:
    """The dtype of a batch's typed payload: a VXM result (what its latch holds) or a SEND's vector."""
    if b.op.name == "SEND":
        return nx.DTYPES["int8"]
    return nx.DTYPES[b.base["to"] if b.op.name == "CAST" else b.base["dtype"]]


def make_stream_fetch(res: Resolution, start: int, n: int, lo: int, hi: int, dtype: str, lanes: int):
    """The fetch of one stream input for vectors lo..hi-1 of a batch of n, its read events from `start`."""
    w, m = nx.width(dtype), hi - lo
    src = res.before[start:start + w * n].reshape(w, n)[:, lo:hi]
    valid = src >= 0
    if not valid.any():
        return Zero(m, dtype, lanes)
    sv = np.where(valid, res.vec[src], -1)  # writing vector, its output group and byte plane
    so = np.where(valid, res.grp[src], -1)
    sp = np.where(valid, res.plane[src], -1)
    wb = np.where(valid, res.vb[sv], -1)
    if (valid.all() and (wb == wb[0, 0]).all() and (so == so[0, 0]).all() and (sv == sv[0]).all()
            and (sp == sp[0, 0] + np.arange(w)[:, None]).all()):
        b = res.batches[int(wb[0, 0])]
        return _simple(b, int(so[0, 0]), int(sp[0, 0]), _rows(sv[0] - b.v0), dtype)
    if valid.all() and all(nx.width(res.batches[b].outs[g][1]) == 1 and (wb[p] == b).all() and (so[p] == g).all()
                           for p, b, g in zip(range(w), wb[:, 0].tolist(), so[:, 0].tolist(), strict=True)):
        return Stacked(dtype, [(b, g, _rows(sv[p] - res.batches[b].v0))
                               for p, b, g in zip(range(w), wb[:, 0].tolist(), so[:, 0].tolist(), strict=True)])
    pieces = []
    for p in range(w):
        code = (wb[p] * 64 + so[p]) * 8 + sp[p]
        for c in np.unique(code[valid[p]]).tolist():
            at = np.flatnonzero(valid[p] & (code == c))
            b = res.batches[int(wb[p][at[0]])]
            pieces.append((b.id, int(so[p][at[0]]), int(sp[p][at[0]]), p, _rows(sv[p][at] - b.v0), _rows(at)))
    return Assembled(m, dtype, lanes, pieces)


def _simple(b, group: int, off: int, rows, dtype: str):
    """Rows of a writer's output group read as written, or some of its byte planes."""
    written = b.outs[group][1]
    if off == 0 and nx.width(written) == nx.width(dtype):
        return Rows(b.id, group, rows, None if written == dtype else nx.DTYPES[dtype])
    return Planes(b.id, group, rows, off, dtype)


def whole_stream_fetches(res: Resolution, reads: list[tuple[int, int, str]]) -> list:
    """make_stream_fetch of whole batches, many at once: `reads` are (first event, n, dtype). Those that read
    consecutive vectors of one writer's output group, planes in order, are found in numpy and made here;
    None for the others."""
    if not reads:
        return []
    first, ns, widths = (np.array(c, np.int64) for c in
                         zip(*[(s, n, nx.width(dt)) for s, n, dt in reads], strict=True))
    sizes = ns * widths
    offs = np.cumsum(sizes) - sizes
    k = np.arange(int(sizes.sum())) - np.repeat(offs, sizes)  # plane * n + vector, within each read
    n = np.repeat(ns, sizes)
    src, head = res.before[np.repeat(first, sizes) + k], np.repeat(res.before[first], sizes)
    ok = (src >= 0) & (head >= 0)
    sv, hv = res.vec[src], res.vec[head]
    ok &= ((res.vb[sv] == res.vb[hv]) & (res.grp[src] == res.grp[head]) & (res.plane[src] == res.plane[head] + k // n)
           & (sv == hv + k % n))
    out = []
    for (_, m, dt), good, h in zip(reads, np.logical_and.reduceat(ok, offs).tolist(), res.before[first].tolist(),
                                   strict=True):
        if not good:
            out.append(None)
            continue
        v = int(res.vec[h])
        b = res.batches[int(res.vb[v])]
        out.append(_simple(b, int(res.grp[h]), int(res.plane[h]), slice(v - b.v0, v - b.v0 + m), dt))
    return out


def make_typed_fetch(res: Resolution, sv: np.ndarray, dtype: str, lanes: int):
    """The fetch of payloads written by vectors `sv` (-1: none, read as zeros of `dtype`)."""
    valid = sv >= 0
    if not valid.any():
        return Zero(len(sv), dtype, lanes)
    wb = np.where(valid, res.vb[np.maximum(sv, 0)], -1)
    writers = np.unique(wb[valid]).tolist()
    dtypes = {typed_dtype(res.batches[b]) for b in writers} | ({nx.DTYPES[dtype]} if not valid.all() else set())
    if len(dtypes) > 1:
        each = [None if s < 0 else (b, s - res.batches[b].v0) for s, b in zip(sv.tolist(), wb.tolist(), strict=True)]
        return PerVector(each, dtype, lanes)
    if valid.all() and len(writers) == 1:
        return Typed(writers[0], _rows(sv - res.batches[writers[0]].v0))
    pieces = []
    for b in writers:
        at = np.flatnonzero(wb == b)
        pieces.append((b, _rows(sv[at] - res.batches[b].v0), _rows(at)))
    return TypedAssembled(len(sv), dtypes.pop(), lanes, pieces)


def make_latch_fetch(res: Resolution, start: int, n: int, lo: int, hi: int, dtype: str, lanes: int):
    src = res.before[start:start + n][lo:hi]
    return make_typed_fetch(res, np.where(src >= 0, res.vec[src], -1), dtype, lanes)


def make_link_fetch(res: Resolution, senders: np.ndarray, lanes: int):
    return make_typed_fetch(res, senders, "int8", lanes)
