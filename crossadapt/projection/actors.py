"""Distributed projection: a pool of Ray actors, each owning a contiguous row range of the teacher table.

Each actor reads *its own* rows from the checkpoint (``torch.load(mmap=True)``, slice, clone), so
no process ever holds the whole table; peak memory per actor is its shard plus ``O(d^2)`` (Gram
path) or shard plus ``shard_rows x (d_s + oversample)`` (randomized path, the local Q of TSQR).
The numeric vectors (a few rows) are one more shard, held by the driver itself.

Protocol (driver = :func:`project_distributed`), when the dimension shrinks:

- ``gram``: every shard returns its partial float64 Grams for the fields it overlaps (``d x d``
  each); the driver sums them per field, then over all fields for a shared basis (the same sums,
  in the same order, as :func:`crossadapt.projection.math.fit_bases`), runs ``eigh`` and gets ``V``.
- ``rsvd``: per basis group (a field, or ``ALL_FIELDS`` for a shared basis: every row of every
  shard), ``power_iters + 1`` rounds of: shards compute ``Y_i = E_i Z`` and its local QR, return the
  small R's; the driver stacks them (TSQR second level), sends each shard its slice of ``Q2``;
  shards return ``E_i^T Q_i``; the driver sums to ``W = E^T Q``, re-orthonormalises into the next
  ``Z``, and after the last round takes the small SVD of ``W``.

Then the per-field ``P`` go out once through ``ray.put`` and every actor projects its rows, returns
them (or writes them into a shared ``.npy`` that is renamed into place only when all are done), and
returns its partial energies and the sampled rows the reports need; the driver builds the reports
(:func:`crossadapt.projection.report.build_reports`). All math is in :mod:`crossadapt.projection`,
so the result equals :func:`~crossadapt.projection.math.project_embedding_state` up to float
rounding (the sums are cut at other rows).
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import ray
import torch
from torch import Tensor

from crossadapt.atomic import atomic_path
from crossadapt.config import ProjectionConfig
from crossadapt.errors import CheckpointError, ConfigError, DataError
from crossadapt.projection.bases import (
    ALL_FIELDS,
    FittedBases,
    bases_from_grams,
    bases_from_groups,
    basis_groups,
    check_basis,
    choose_method,
    fixed_bases,
)
from crossadapt.projection.blocks import DEFAULT_CHUNK_ROWS, as_table, split_blocks, squared_norm
from crossadapt.projection.gram import GramAccumulator
from crossadapt.projection.math import (
    NUMERIC_KEY,
    NUMERIC_NAME,
    TABLE_KEY,
    FieldRange,
    ProjectionResult,
    apply_projection,
    check_field_ranges,
    check_numeric,
    float32_matrices,
    iter_projected_blocks,
)
from crossadapt.projection.report import DEFAULT_CROSS_ROWS, DEFAULT_SAMPLE_ROWS, build_reports, sample_indices
from crossadapt.projection.rsvd import (
    back_project_blocks,
    next_sketch,
    rsvd_finish,
    rsvd_sketch_cols,
    sketch_blocks,
    sketch_matrix,
    tsqr_combine,
)
from crossadapt.ray_init import cpu_share

log = logging.getLogger(__name__)

#: Default CPU share of one actor: the work is BLAS on a shard, small enough that 2-4 actors
#: sharing a 2-core machine is fine, and a whole CPU each would block the pool on small clusters.
DEFAULT_ACTOR_CPUS = 0.5


def open_checkpoint_tensor(path: str | os.PathLike, key: str = TABLE_KEY, required: bool = True) -> Tensor | None:
    """Tensor ``key`` of a checkpoint file, memory-mapped (nothing is read until it is sliced).

    Accepts ``{"state_dict": {key: ...}, ...}`` (the CrossAdapt checkpoint layout) or a bare state
    dict. Loads with ``weights_only=True``: a checkpoint is data, never code.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: checkpoint not found")
    try:
        obj = torch.load(p, mmap=True, weights_only=True, map_location="cpu")
    except Exception as e:  # torch raises RuntimeError/UnpicklingError/... for broken files
        raise CheckpointError(f"{p}: not a readable torch checkpoint ({type(e).__name__}: {e})") from e
    sd = obj.get("state_dict") if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping) else obj
    if not isinstance(sd, Mapping) or key not in sd:
        if not required:
            return None
        raise CheckpointError(f"{p}: no {key!r} in the checkpoint's state_dict")
    t = sd[key]
    if not isinstance(t, Tensor) or t.dim() != 2:
        raise CheckpointError(f"{p}: {key!r} must be a 2-D tensor, got {getattr(t, 'shape', type(t).__name__)}")
    return t


def read_checkpoint_rows(path: str | os.PathLike, lo: int, hi: int, key: str = TABLE_KEY) -> Tensor:
    """Rows ``[lo, hi)`` of tensor ``key`` of a checkpoint, as an owned copy (only those pages are read)."""
    t = open_checkpoint_tensor(path, key)
    if not 0 <= lo <= hi <= t.shape[0]:
        raise CheckpointError(f"{path}: rows [{lo}, {hi}) out of range for {key!r} with {t.shape[0]} rows")
    return t[lo:hi].clone()


class ProjectionShard:
    """Rows ``[lo, hi)`` of the teacher table and the per-field work on them.

    A plain class (usable and testable without Ray); :data:`ProjectionActor` is its Ray actor. The
    driver of :func:`project_distributed` also holds one in-process for the numeric vectors.
    Built with a ``source`` it loads at once; built empty it waits for :meth:`load`, which also
    lets one pool of actors serve several projections (tests, sweeps) without restarting.

    Args:
        source: checkpoint path (the shard reads its own rows, memory-mapped) or a tensor holding
            exactly rows ``[lo, hi)``; ``None``: load later.
        lo, hi: global row range owned.
        field_ranges: ``[(name, start, end)]`` of the whole table (fields outside the range are ignored).
        key: state-dict key of the table in the checkpoint.
    """

    def __init__(
        self,
        source: str | os.PathLike | Tensor | np.ndarray | None = None,
        lo: int = 0,
        hi: int = 0,
        field_ranges: Sequence[FieldRange] = (),
        *,
        key: str = TABLE_KEY,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
    ) -> None:
        self.chunk_rows = int(chunk_rows)
        self.lo = self.hi = 0
        self.rows = torch.empty(0, 0)
        self.segments: dict[str, tuple[int, int, int]] = {}
        self._local_qs: dict[str, list[Tensor]] = {}
        if source is not None:
            self.load(source, lo, hi, field_ranges, key=key)

    def load(
        self,
        source: str | os.PathLike | Tensor | np.ndarray,
        lo: int,
        hi: int,
        field_ranges: Sequence[FieldRange],
        *,
        key: str = TABLE_KEY,
    ) -> dict[str, Any]:
        """(Re)load rows ``[lo, hi)`` from ``source``, dropping whatever was held; returns :meth:`describe`."""
        self.rows = torch.empty(0, 0)  # free the previous shard before reading the next
        self._local_qs = {}
        self.lo, self.hi = int(lo), int(hi)
        if isinstance(source, (str, os.PathLike)):
            self.rows = read_checkpoint_rows(source, self.lo, self.hi, key)
        else:
            self.rows = as_table(source, f"{key} rows [{lo}, {hi})")
            if self.rows.shape[0] != self.hi - self.lo:
                raise DataError(f"{key}: shard [{lo}, {hi}) got {self.rows.shape[0]} rows")
        # name -> (local start, local end, offset of the local start inside the field)
        self.segments = {}
        for name, start, end in field_ranges:
            a, b = max(start, self.lo), min(end, self.hi)
            if a < b:
                self.segments[name] = (a - self.lo, b - self.lo, a - start)
        return self.describe()

    def _owns(self, name: str) -> bool:
        """Whether this shard holds rows of field ``name`` (``ALL_FIELDS``: of any field)."""
        return name in self.segments or (name == ALL_FIELDS and bool(self.segments))

    def _blocks(self, name: str) -> list[Tensor]:
        """Row blocks of field ``name``; ``ALL_FIELDS`` (a shared basis): of every field's rows here."""
        if name == ALL_FIELDS:  # fields cover the table contiguously, so their rows here are all rows
            return split_blocks(self.rows, self.chunk_rows)
        a, b, _ = self.segments[name]
        return split_blocks(self.rows[a:b], self.chunk_rows)

    def describe(self) -> dict[str, Any]:
        """Row range, dimension and the fields this shard overlaps (for logs and tests)."""
        return {"lo": self.lo, "hi": self.hi, "dim": int(self.rows.shape[1]), "fields": sorted(self.segments)}

    def partial_grams(self, names: Sequence[str]) -> dict[str, tuple[Tensor, int]]:
        """``{name: (E_i^T E_i float64 (d x d), rows)}`` for the named fields this shard overlaps."""
        out = {}
        for name in names:
            if name in self.segments:
                acc = GramAccumulator(self.rows.shape[1], self.chunk_rows)
                for blk in self._blocks(name):
                    acc.add(blk)
                out[name] = (acc.gram, acc.rows)
        return out

    def sketch(self, Zs: Mapping[str, Tensor]) -> dict[str, list[Tensor]]:
        """First half of a randomized round: keep the local Q's of ``E_i Z``, return their R's.

        Keys of ``Zs`` are basis groups: a field name, or ``ALL_FIELDS`` for a shared basis."""
        out = {}
        for name, Z in Zs.items():
            if self._owns(name):
                qs, rs = sketch_blocks(self._blocks(name), Z, self.chunk_rows)
                self._local_qs[name] = qs
                out[name] = rs
        return out

    def back_project(self, slices: Mapping[str, Sequence[Tensor]]) -> dict[str, Tensor]:
        """Second half: ``E_i^T Q_i`` (d x l) per group, with ``Q_i = local Q @ slice of Q2``."""
        out = {}
        for name, sl in slices.items():
            qs = self._local_qs.pop(name)  # drop the n_i x l block as soon as it is used
            out[name] = back_project_blocks(self._blocks(name), qs, sl, self.chunk_rows)
        return out

    def apply(
        self,
        bases: Mapping[str, Tensor],
        samples: Mapping[str, Tensor],
        out_path: str | None = None,
        norms: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """Project the shard's rows with each field's ``P`` (float64, d_t x d_s).

        Returns ``{"rows": (hi - lo, d_s) float32 array, or None when written to out_path,
        "energy": {name: (||E||^2, ||E_s||^2)}, "samples": {name: (positions, rows before, rows
        after)}}`` where ``samples[name]`` are the field-relative indices requested that fall in
        this shard. ``out_path``: an existing ``.npy`` of the full table's shape; rows ``[lo, hi)``
        are written into its pages block by block, so no projected copy of the shard is ever held
        (the driver renames the file into place once every shard is done). ``norms``: the fields
        whose energies are wanted (default all; the driver knows them for Gram fields already).
        """
        if out_path is not None:
            return self._apply_to_file(bases, samples, out_path, norms)
        d_s = next(iter(bases.values())).shape[1]
        out = torch.empty(self.rows.shape[0], d_s, dtype=torch.float32)
        energy, picked = {}, {}
        for name, (a, b, off) in self.segments.items():
            E, Es = self.rows[a:b], out[a:b]
            apply_projection(E, bases[name], self.chunk_rows, out=Es)
            if norms is None or name in norms:
                energy[name] = (squared_norm(E, self.chunk_rows), squared_norm(Es, self.chunk_rows))
            local = self._sampled(samples, name, picked)
            if local is not None:
                picked[name] += (Es[local].clone(),)
        # numpy, not a tensor: Ray moves it into the object store without another pickled copy
        return {"rows": out.numpy(), "energy": energy, "samples": picked}

    def _sampled(self, samples: Mapping[str, Tensor], name: str, picked: dict) -> Tensor | None:
        """Local rows of ``name``'s sampled indices in this shard; ``picked[name] = (positions, rows before)``."""
        idx = samples.get(name)
        if idx is None:
            return None
        a, b, off = self.segments[name]
        pos = torch.nonzero((idx >= off) & (idx < off + (b - a))).flatten()
        local = idx[pos] - off
        picked[name] = (pos, self.rows[a:b][local].clone())
        return local

    def _apply_to_file(self, bases: Mapping[str, Tensor], samples: Mapping[str, Tensor], out_path: str,
                       norms: Sequence[str] | None) -> dict[str, Any]:
        """:meth:`apply` writing rows ``[lo, hi)`` into the ``.npy`` at ``out_path`` block by block
        (``pwrite`` of one reused block buffer: no projected copy of the shard is ever held)."""
        header = np.load(out_path, mmap_mode="r")
        offset, d_s = header.offset, header.shape[1]
        del header
        energy, picked, wanted = {}, {}, {}
        fd = os.open(out_path, os.O_WRONLY)
        try:
            for name, (a, b, off) in self.segments.items():
                E, after = self.rows[a:b], 0.0
                base = offset + (self.lo + a) * d_s * 4
                for i, blk in iter_projected_blocks(E, bases[name], self.chunk_rows):
                    data = memoryview(blk.numpy()).cast("B")
                    done = 0
                    while done < len(data):  # pwrite may write less than asked
                        done += os.pwrite(fd, data[done:], base + i * d_s * 4 + done)
                    if norms is None or name in norms:
                        after += float(blk.to(torch.float64).square().sum())
                if norms is None or name in norms:
                    energy[name] = (squared_norm(E, self.chunk_rows), after)
                local = self._sampled(samples, name, picked)
                if local is not None:
                    wanted[name] = local + (self.lo + a)
            os.fsync(fd)  # on disk before the driver renames the file into place
        finally:
            os.close(fd)
        if wanted:  # the sampled rows exactly as written, read back (a few pages)
            table = np.load(out_path, mmap_mode="r")
            for name, rows in wanted.items():
                picked[name] += (torch.from_numpy(np.array(table[rows.numpy()])),)
            del table
        return {"rows": None, "energy": energy, "samples": picked}


#: The Ray actor of :class:`ProjectionShard` (``num_cpus`` can be changed with ``.options``).
ProjectionActor = ray.remote(num_cpus=DEFAULT_ACTOR_CPUS)(ProjectionShard)


def _gather(shards: Sequence[Any], method: str, args: Callable[[int, bool], tuple]) -> list[Any]:
    """``method`` called on every shard, results in shard order. A shard is a Ray actor handle or
    an in-process :class:`ProjectionShard`; ``args(i, remote)`` gives shard ``i``'s arguments
    (object refs for actors, the objects themselves in process). The actors' calls are sent
    first, so they run while the in-process one does."""
    refs = {i: getattr(s, method).remote(*args(i, True)) for i, s in enumerate(shards) if not isinstance(s, ProjectionShard)}
    done = {i: getattr(s, method)(*args(i, False)) for i, s in enumerate(shards) if isinstance(s, ProjectionShard)}
    done.update(zip(refs, ray.get(list(refs.values()))))
    return [done[i] for i in range(len(shards))]


def _broadcast(obj: Any) -> Callable[[bool], Any]:
    """``obj`` for in-process shards and one ``ray.put`` reference of it for every actor."""
    ref = ray.put(obj)
    return lambda remote: ref if remote else obj


def _fit_cpus(num_actors: int, num_cpus: float) -> float:
    """CPU share per actor, shrunk to what the cluster has free now.

    Actors that cannot be placed wait forever (a 2-CPU machine with other actors alive); the work is
    BLAS on a shard, so a smaller scheduling share only changes placement, not the result.
    """
    free = ray.available_resources().get("CPU", 0.0)
    if num_actors * num_cpus <= free + 1e-9:
        return num_cpus
    shrunk = cpu_share(free, num_actors)
    log.warning("projection: %d actors x %g CPU exceed the %g CPU free: using %g CPU per actor",
                num_actors, num_cpus, free, shrunk)
    return shrunk


def _row_bounds(n: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous, near-equal row ranges covering ``[0, n)``."""
    cuts = [i * n // parts for i in range(parts + 1)]
    return [(cuts[i], cuts[i + 1]) for i in range(parts)]


def _distributed_rsvd(shards: list, groups: list[str], d_t: int, d_s: int, cfg: ProjectionConfig) -> dict[str, tuple[Tensor, Tensor]]:
    """Randomized SVD of every basis group across the shards (see the module docstring)."""
    Z0 = sketch_matrix(d_t, rsvd_sketch_cols(d_t, d_s, cfg.oversample), cfg.seed)
    Zs = {g: Z0 for g in groups}  # same seeded Omega as the single-process path
    Ws: dict[str, Tensor] = {}
    for it in range(cfg.power_iters + 1):
        z = _broadcast(Zs)
        rs = _gather(shards, "sketch", lambda i, remote: (z(remote),))
        to_send: list[dict[str, list[Tensor]]] = [{} for _ in shards]
        for g in groups:
            owners = [(i, r[g]) for i, r in enumerate(rs) if g in r]
            slices, _ = tsqr_combine([x for _, lst in owners for x in lst])
            pos = 0
            for i, lst in owners:
                to_send[i][g] = slices[pos : pos + len(lst)]
                pos += len(lst)
        parts = _gather(shards, "back_project", lambda i, remote: (to_send[i],))
        for g in groups:
            # Summed in shard order, so the result does not depend on which actor answered first.
            Ws[g] = sum(p[g] for p in parts if g in p)
        if it < cfg.power_iters:
            Zs = {g: next_sketch(Ws[g]) for g in groups}
    return {g: rsvd_finish(Ws[g], d_s) for g in groups}


def _fit_distributed(shards: list, names: list[str], d_t: int, d_s: int, cfg: ProjectionConfig) -> FittedBases:
    """The bases of every table from the shards: the distributed twin of ``math.fit_bases``."""
    method, basis = choose_method(d_t, d_s, cfg), check_basis(cfg)
    log.info("projection: method=%s basis=%s d_t=%d -> d_s=%d, %d tables on %d shards", method,
             basis if method in ("gram", "rsvd") else "shared", d_t, d_s, len(names), len(shards))
    if method in ("copy", "qr_expand"):
        return fixed_bases(method, names, d_t, d_s, cfg.seed)
    if method == "gram":
        parts = _gather(shards, "partial_grams", lambda i, remote: (names,))
        grams = {}
        for name in names:
            acc = GramAccumulator(d_t)
            for p in parts:  # shard order: a deterministic sum
                if name in p:
                    acc.merge(*p[name])
            grams[name] = acc.gram
        return bases_from_grams(grams, d_s, basis)
    groups = basis_groups(names, basis)
    return bases_from_groups(method, basis, groups, _distributed_rsvd(shards, list(groups), d_t, d_s, cfg), d_t, d_s)


@dataclass
class _Source:
    """Where the teacher table is: a checkpoint ``path`` (actors read their rows) or a ``table``."""

    path: str | os.PathLike | None
    table: Tensor | None
    n: int
    d_t: int
    numeric: Tensor | None

    def shard(self, lo: int, hi: int) -> Any:
        return self.path if self.path is not None else self.table[lo:hi].clone()


def _open_source(source: Any, key: str, numeric_key: str, numeric: Any) -> _Source:
    """Shape of the teacher table (a checkpoint is memory-mapped: no row is read) and its numeric vectors."""
    if isinstance(source, (str, os.PathLike)):
        mapped = open_checkpoint_tensor(source, key)  # reading the shape reads no rows
        n, d_t = mapped.shape
        del mapped
        if numeric is None:
            num_t = open_checkpoint_tensor(source, numeric_key, required=False)
            numeric = None if num_t is None else num_t.clone()
        return _Source(source, None, int(n), int(d_t), check_numeric(numeric, int(d_t)))
    table = as_table(source, key)
    return _Source(None, table, int(table.shape[0]), int(table.shape[1]), check_numeric(numeric, int(table.shape[1])))


@contextmanager
def _actor_pool(src: _Source, bounds: list[tuple[int, int]], ranges: list[FieldRange], actors: Sequence[Any] | None,
                num_cpus: float, key: str, chunk_rows: int) -> Iterator[list]:
    """Actors holding rows ``bounds[i]`` each: started (and killed after) or, given a pool, re-loaded
    (and emptied after, left running)."""
    owned = actors is None
    if owned:
        num_cpus = _fit_cpus(len(bounds), num_cpus)
        pool = [ProjectionActor.options(num_cpus=num_cpus).remote(src.shard(lo, hi), lo, hi, ranges, key=key,
                                                                  chunk_rows=chunk_rows) for lo, hi in bounds]
    else:
        pool = list(actors)[: len(bounds)]
        ray.get([a.load.remote(src.shard(lo, hi), lo, hi, ranges, key=key) for a, (lo, hi) in zip(pool, bounds)])
    try:
        yield pool
    finally:
        if owned:
            for a in pool:
                ray.kill(a)
        else:  # a reused pool keeps running: drop the shards it holds
            try:
                ray.get([a.load.remote(torch.empty(0, src.d_t), 0, 0, []) for a in pool])
            except Exception as e:  # never mask the error that brought us here
                log.warning("projection: could not release the shards of the reused pool (%s)", e)


def _apply_distributed(pool: list, local: ProjectionShard | None, fb: FittedBases, samples: dict[str, Tensor],
                       out_path: str | os.PathLike | None, n: int) -> tuple[Tensor, list[dict[str, Any]]]:
    """Every shard projects its rows (actors into ``out_path`` when given); ``(table, shard outputs)``."""
    bases, picks = _broadcast(fb.matrices), _broadcast(samples)  # sent once, not once per actor
    norms = [nm for nm in fb.matrices if nm not in fb.energies]  # Gram tables: energies from the Gram
    shards = pool + ([local] if local is not None else [])

    def args(tmp: str | None) -> Callable[[int, bool], tuple]:
        return lambda i, remote: (bases(remote), picks(remote), tmp if remote else None, norms)

    if out_path is None:
        outs = _gather(shards, "apply", args(None))
        return torch.from_numpy(np.concatenate([o["rows"] for o in outs[: len(pool)]], axis=0)), outs
    with atomic_path(out_path) as tmp:
        np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, fb.d_s)).flush()
        outs = _gather(shards, "apply", args(str(tmp)))
    # "c": copy-on-write, so torch gets a writable array without touching the file.
    return torch.from_numpy(np.load(out_path, mmap_mode="c")), outs


def _merge_shard_outputs(outs: list[dict[str, Any]], fb: FittedBases, samples: dict[str, Tensor]
                         ) -> tuple[dict[str, tuple[Tensor, Tensor]], dict[str, tuple[float, float]]]:
    """The sampled rows (before, after) and energies of every table, put together from the shards."""
    rows, energies = {}, {}
    for name, idx in samples.items():
        before = after = None
        e_before = e_after = 0.0
        for o in outs:  # shard order: a deterministic sum
            if name in o["energy"]:
                eb, ea = o["energy"][name]
                e_before, e_after = e_before + eb, e_after + ea
            if name in o["samples"]:
                pos, sb, sa = o["samples"][name]
                if before is None:
                    before = torch.empty(idx.shape[0], fb.d_t, dtype=sb.dtype)
                    after = torch.empty(idx.shape[0], fb.d_s, dtype=torch.float32)
                before[pos], after[pos] = sb, sa
        rows[name] = (before, after)
        energies[name] = fb.energy(name, lambda: e_before, lambda: e_after)
    return rows, energies


def project_distributed(
    source: str | os.PathLike | Tensor | np.ndarray,
    field_ranges: Sequence[Sequence[Any]],
    d_s: int,
    cfg: ProjectionConfig | None = None,
    num_actors: int | None = None,
    *,
    numeric: Tensor | np.ndarray | None = None,
    out_path: str | os.PathLike | None = None,
    num_cpus: float = DEFAULT_ACTOR_CPUS,
    actors: Sequence[Any] | None = None,
    key: str = TABLE_KEY,
    numeric_key: str = NUMERIC_KEY,
    sample_rows: int = DEFAULT_SAMPLE_ROWS,
    cross_rows: int = DEFAULT_CROSS_ROWS,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> ProjectionResult:
    """Project the teacher's embedding on ``num_actors`` Ray actors; same result as
    :func:`crossadapt.projection.math.project_embedding_state`.

    Args:
        source: teacher checkpoint path (each actor reads its rows itself; ``embedding.numeric`` is
            read from it when ``numeric`` is None) or the table tensor (sliced by the driver).
        field_ranges: ``[(name, start, end)]`` rows of each field.
        d_s: the student's dimension.
        cfg: projection config (method, basis, oversample, power_iters, rsvd_min_dim, seed, num_actors).
        num_actors: actors (contiguous row ranges); default ``cfg.num_actors``; at most one per row.
        numeric: ``embedding.numeric`` (F_num x d_t); tiny, held by the driver as one more shard.
        out_path: if given, the projected table is written to this ``.npy`` (atomically: a temp
            file beside it that every actor fills in place, renamed when all are done) and
            ``result.table`` is a copy-on-write memory map of it. Must be on storage every actor
            can reach (always true on one machine).
        num_cpus: CPU share per actor (0.5: 2-4 actors fit on a 2-core machine).
        actors: an existing pool of :data:`ProjectionActor` handles to reuse (the first
            ``num_actors`` of them, default all); they are re-loaded, not killed. Without it a
            pool is started and killed on return.
        sample_rows, cross_rows: rows of the within-field and the pooled cross-field reports.

    Ray must be initialised (``crossadapt.ray_init.init_ray``).

    Example:
        >>> res = project_distributed("runs/teacher/model.pt", teacher.embedding.field_ranges(), 32,
        ...                           cfg.projection, num_actors=4)
    """
    cfg = cfg or ProjectionConfig()
    if num_actors is None:
        num_actors = len(actors) if actors is not None else cfg.num_actors
    num_actors = int(num_actors)
    if actors is not None and len(actors) < num_actors:
        raise ConfigError(f"projection: {num_actors} actors asked for, the given pool has {len(actors)}")
    if num_actors < 1:
        raise ConfigError(f"projection.num_actors: must be >= 1, got {num_actors}")
    src = _open_source(source, key, numeric_key, numeric)
    ranges = check_field_ranges(field_ranges, src.n)
    rows = {name: end - start for name, start, end in ranges}
    local = None  # the numeric vectors: a shard in this process
    if src.numeric is not None and src.numeric.shape[0] > 0:
        rows[NUMERIC_NAME] = int(src.numeric.shape[0])
        local = ProjectionShard(src.numeric, 0, rows[NUMERIC_NAME], [(NUMERIC_NAME, 0, rows[NUMERIC_NAME])],
                                key=numeric_key, chunk_rows=chunk_rows)
    samples = {name: sample_indices(m, name, cfg.seed, sample_rows) for name, m in rows.items()}
    with _actor_pool(src, _row_bounds(src.n, min(num_actors, src.n)), ranges, actors, num_cpus, key, chunk_rows) as pool:
        fb = _fit_distributed(pool + ([local] if local is not None else []), list(rows), src.d_t, d_s, cfg)
        table, outs = _apply_distributed(pool, local, fb, samples, out_path, src.n)
    numeric_out = None if src.numeric is None else torch.empty(0, d_s, dtype=torch.float32)
    if local is not None:
        numeric_out = torch.from_numpy(outs[-1]["rows"])
    picked, energies = _merge_shard_outputs(outs, fb, samples)
    infos = {name: fb.info(name, m) for name, m in rows.items()}
    reports, summary = build_reports(infos, picked, energies, fb.summary_info(), seed=cfg.seed, cross_rows=cross_rows)
    return ProjectionResult(table=table, numeric=numeric_out, reports=reports, matrices=float32_matrices(fb),
                            summary=summary)
