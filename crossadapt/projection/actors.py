"""Distributed projection: a pool of Ray actors, each owning a contiguous row range of the teacher table.

Each actor reads *its own* rows from the checkpoint (``torch.load(mmap=True)``, slice, clone), so
no process ever holds the whole table; peak memory per actor is its shard plus ``O(d^2)`` (Gram
path) or shard plus ``shard_rows x (d_s + oversample)`` (randomized path, the local Q of TSQR).

Protocol (driver = :func:`project_distributed`), per field whose dimension shrinks:

- ``gram``: every actor returns its partial float64 Grams for the fields it overlaps (``d x d``
  each); the driver sums them, runs ``eigh`` and gets ``V``.
- ``rsvd``: ``power_iters + 1`` rounds of: actors compute ``Y_i = E_i Z`` and its local QR, return
  the small R's; the driver stacks them (TSQR second level), sends each actor its slice of ``Q2``;
  actors return ``E_i^T Q_i``; the driver sums to ``W = E^T Q``, re-orthonormalises into the next
  ``Z``, and after the last round takes the small SVD of ``W``.

Then the per-field ``P`` go out once through ``ray.put`` and every actor projects its rows, returns
them (or writes them into a shared ``.npy`` that is renamed into place only when all are done), and
returns its partial energies and the sampled rows the reports need. All math is in
:mod:`crossadapt.projection.math`, so the result equals :func:`project_embedding_state` up to
float rounding (1e-5 and far better in practice).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import ray
import torch
from torch import Tensor

from crossadapt.atomic import atomic_path
from crossadapt.config import ProjectionConfig
from crossadapt.errors import CheckpointError, ConfigError, DataError
from crossadapt.ray_init import cpu_share
from crossadapt.projection.math import (
    DEFAULT_CHUNK_ROWS,
    DEFAULT_SAMPLE_ROWS,
    NUMERIC_KEY,
    TABLE_KEY,
    FieldRange,
    GramAccumulator,
    ProjectionResult,
    apply_projection,
    iter_projected_blocks,
    as_table,
    basis_from_gram,
    check_field_ranges,
    choose_method,
    expansion_matrix,
    make_report,
    next_sketch,
    project_numeric,
    rsvd_finish,
    rsvd_sketch_cols,
    sample_indices,
    sketch_blocks,
    sketch_matrix,
    split_blocks,
    squared_norm,
    table_energies,
    tsqr_combine,
    back_project_blocks,
)

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

    A plain class (usable and testable without Ray); :data:`ProjectionActor` is its Ray actor.
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

    def _blocks(self, name: str) -> list[Tensor]:
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
        """First half of a randomized round: keep the local Q's of ``E_i Z``, return their R's."""
        out = {}
        for name, Z in Zs.items():
            if name in self.segments:
                qs, rs = sketch_blocks(self._blocks(name), Z, self.chunk_rows)
                self._local_qs[name] = qs
                out[name] = rs
        return out

    def back_project(self, slices: Mapping[str, Sequence[Tensor]]) -> dict[str, Tensor]:
        """Second half: ``E_i^T Q_i`` (d x l) per field, with ``Q_i = local Q @ slice of Q2``."""
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


def _distributed_rsvd(actors: list, names: list[str], d_t: int, d_s: int, cfg: ProjectionConfig) -> dict[str, tuple[Tensor, Tensor]]:
    """Randomized SVD of every named field across the actors (see the module docstring)."""
    Z0 = sketch_matrix(d_t, rsvd_sketch_cols(d_t, d_s, cfg.oversample), cfg.seed)
    Zs = {name: Z0 for name in names}  # same seeded Omega as the single-process path
    Ws: dict[str, Tensor] = {}
    for it in range(cfg.power_iters + 1):
        z_ref = ray.put(Zs)
        rs = ray.get([a.sketch.remote(z_ref) for a in actors])
        to_send: list[dict[str, list[Tensor]]] = [{} for _ in actors]
        for name in names:
            owners = [(i, r[name]) for i, r in enumerate(rs) if name in r]
            slices, _ = tsqr_combine([x for _, lst in owners for x in lst])
            pos = 0
            for i, lst in owners:
                to_send[i][name] = slices[pos : pos + len(lst)]
                pos += len(lst)
        parts = ray.get([a.back_project.remote(to_send[i]) for i, a in enumerate(actors)])
        for name in names:
            # Summed in actor order, so the result does not depend on which actor answered first.
            Ws[name] = sum(p[name] for p in parts if name in p)
        if it < cfg.power_iters:
            Zs = {name: next_sketch(Ws[name]) for name in names}
    return {name: rsvd_finish(Ws[name], d_s) for name in names}


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
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> ProjectionResult:
    """Project the teacher's embedding on ``num_actors`` Ray actors; same result as
    :func:`crossadapt.projection.math.project_embedding_state`.

    Args:
        source: teacher checkpoint path (each actor reads its rows itself; ``embedding.numeric`` is
            read from it when ``numeric`` is None) or the table tensor (sliced by the driver).
        field_ranges: ``[(name, start, end)]`` rows of each field.
        d_s: the student's dimension.
        cfg: projection config (method, oversample, power_iters, rsvd_min_dim, seed, num_actors).
        num_actors: actors (contiguous row ranges); default ``cfg.num_actors``; at most one per row.
        numeric: ``embedding.numeric`` (F_num x d_t); tiny, projected on the driver.
        out_path: if given, the projected table is written to this ``.npy`` (atomically: a temp
            file beside it that every actor fills in place, renamed when all are done) and
            ``result.table`` is a copy-on-write memory map of it. Must be on storage every actor
            can reach (always true on one machine).
        num_cpus: CPU share per actor (0.5: 2-4 actors fit on a 2-core machine).
        actors: an existing pool of :data:`ProjectionActor` handles to reuse (the first
            ``num_actors`` of them, default all); they are re-loaded, not killed. Without it a
            pool is started and killed on return.

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
    path = source if isinstance(source, (str, os.PathLike)) else None
    if path is not None:
        mapped = open_checkpoint_tensor(path, key)  # memory-mapped: reading the shape reads no rows
        n, d_t = mapped.shape
        dtype = mapped.dtype
        del mapped
        if numeric is None:
            num_t = open_checkpoint_tensor(path, numeric_key, required=False)
            numeric = None if num_t is None else num_t.clone()
        table = None
    else:
        table = as_table(source, key)
        n, d_t = table.shape
        dtype = table.dtype
    ranges = check_field_ranges(field_ranges, n)
    bounds = _row_bounds(n, min(num_actors, n))

    def shard_source(lo: int, hi: int) -> Any:
        return path if path is not None else table[lo:hi].clone()

    owned = actors is None
    if owned:
        num_cpus = _fit_cpus(len(bounds), num_cpus)
        actors = [
            ProjectionActor.options(num_cpus=num_cpus).remote(shard_source(lo, hi), lo, hi, ranges, key=key, chunk_rows=chunk_rows)
            for lo, hi in bounds
        ]
    else:
        actors = list(actors)[: len(bounds)]
        ray.get([a.load.remote(shard_source(lo, hi), lo, hi, ranges, key=key) for a, (lo, hi) in zip(actors, bounds)])
    try:
        methods = {name: choose_method(d_t, d_s, cfg) for name, _, _ in ranges}
        for name, start, end in ranges:
            log.info("projection %s: method=%s d_t=%d -> d_s=%d rows=%d (%d actors)",
                     name, methods[name], d_t, d_s, end - start, len(actors))
        bases: dict[str, Tensor] = {}
        sigmas: dict[str, Tensor] = {}
        gram_names = [nm for nm, m in methods.items() if m == "gram"]
        rsvd_names = [nm for nm, m in methods.items() if m == "rsvd"]
        traces: dict[str, float] = {}
        if gram_names:
            parts = ray.get([a.partial_grams.remote(gram_names) for a in actors])
            for name in gram_names:
                acc = GramAccumulator(d_t)
                for p in parts:  # actor order: deterministic sum
                    if name in p:
                        acc.merge(*p[name])
                bases[name], sigmas[name] = basis_from_gram(acc.gram, d_s)
                traces[name] = float(torch.trace(acc.gram))
        if rsvd_names:
            for name, (V, s) in _distributed_rsvd(actors, rsvd_names, d_t, d_s, cfg).items():
                bases[name], sigmas[name] = V, s
        for name, m in methods.items():
            if m == "copy":
                bases[name] = torch.eye(d_t, dtype=torch.float64)
            elif m == "qr_expand":
                bases[name] = expansion_matrix(d_t, d_s, cfg.seed)

        samples = {name: sample_indices(end - start, name, cfg.seed, sample_rows) for name, start, end in ranges}
        b_ref, s_ref = ray.put(bases), ray.put(samples)  # broadcast once, not once per actor
        norms = [nm for nm in methods if nm not in gram_names]  # Gram fields: energies from the Gram
        if out_path is not None:
            with atomic_path(out_path) as tmp:
                np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, d_s)).flush()
                outs = ray.get([a.apply.remote(b_ref, s_ref, str(tmp), norms) for a in actors])
            # "c": copy-on-write, so torch gets a writable array without touching the file.
            out_table = torch.from_numpy(np.load(out_path, mmap_mode="c"))
        else:
            outs = ray.get([a.apply.remote(b_ref, s_ref, None, norms) for a in actors])
            out_table = torch.from_numpy(np.concatenate([o["rows"] for o in outs], axis=0))
    finally:
        if owned:
            for a in actors:
                ray.kill(a)
        else:  # a reused pool keeps running: drop the shards it holds
            try:
                ray.get([a.load.remote(torch.empty(0, d_t), 0, 0, []) for a in actors])
            except Exception as e:  # never mask the error that brought us here
                log.warning("projection: could not release the shards of the reused pool (%s)", e)

    res = ProjectionResult(table=out_table, numeric=None)
    for name, start, end in ranges:
        m = samples[name].shape[0]
        before = torch.empty(m, d_t, dtype=dtype)
        after = torch.empty(m, d_s, dtype=torch.float32)
        e_before = e_after = 0.0
        for o in outs:
            if name in o["energy"]:
                eb, ea = o["energy"][name]
                e_before, e_after = e_before + eb, e_after + ea
            if name in o["samples"]:
                pos, sb, sa = o["samples"][name]
                before[pos], after[pos] = sb, sa
        info: dict[str, Any] = {"method": methods[name], "d_t": d_t, "d_s": d_s, "rows": end - start}
        if name in sigmas:
            info["singular_values"] = [float(s) for s in sigmas[name]]
        if name in traces:
            info["gram_trace"] = traces[name]
            e_before, e_after = table_energies(info, None, None)
        res.reports[name] = make_report(info, before, after, e_before, e_after)
        res.matrices[name] = bases[name].to(torch.float32)
    res.numeric = project_numeric(numeric, d_t, d_s, cfg, res, sample_rows=sample_rows)
    return res
