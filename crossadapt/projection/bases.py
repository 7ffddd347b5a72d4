"""Which ``P`` (d_t x d_s) each table gets: the method, the basis sharing, and the fitted matrices.

- ``d_s == d_t``: the identity (a copy); ``d_s > d_t``: one seeded ``Q`` with orthonormal rows for
  every table, so every inner product, within and across fields, is kept exactly.
- ``d_s < d_t``: uncentred PCA, ``P = V`` (top ``d_s`` right singular vectors), either

  - ``shared``: one ``V`` for all tables, from the Gram summed over all of them (exact path) or one
    sketch over all their rows (randomized path): the PCA of the stacked table. Cross-field inner
    products ``e_f^T e_g`` become ``e_f^T V V^T e_g``, the best rank-``d_s`` approximation of the
    stacked table's inner products, at some cost within fields whose energy lies off the shared
    top directions;
  - ``per_field``: one ``V`` per table, the best for each table's own inner products, but the bases
    (and their independent sign fixes) are unrelated, so cross-field inner products are scrambled.

The fitting itself is :mod:`crossadapt.projection.gram` or :mod:`crossadapt.projection.rsvd`;
this module turns per-table Grams or per-group randomized results into a :class:`FittedBases`,
the same way for the single-process and the distributed path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor

from crossadapt.config import ProjectionConfig
from crossadapt.errors import ConfigError
from crossadapt.projection.blocks import F64
from crossadapt.projection.gram import basis_from_gram, energies_from_gram
from crossadapt.projection.orthonormal import expansion_matrix

#: Name of the one group of a shared basis (a table name can never be it: see check_field_ranges).
ALL_FIELDS = "__all__"
BASES = ("shared", "per_field")
METHODS = ("auto", "gram", "rsvd")


def choose_method(d_t: int, d_s: int, cfg: ProjectionConfig) -> str:
    """``"copy"``, ``"qr_expand"``, ``"gram"`` or ``"rsvd"`` for a ``d_t -> d_s`` projection.

    ``cfg.method == "auto"`` takes ``gram`` below ``cfg.rsvd_min_dim`` (the d x d eigh is cheap and
    exact there) and ``rsvd`` from it on.
    """
    if d_s < 1:
        raise ConfigError(f"projection: student dimension d_s must be >= 1, got {d_s}")
    if d_s == d_t:
        return "copy"
    if d_s > d_t:
        return "qr_expand"
    if cfg.method == "auto":
        return "gram" if d_t < cfg.rsvd_min_dim else "rsvd"
    if cfg.method not in METHODS:
        raise ConfigError(f"projection.method: must be one of {list(METHODS)}, got {cfg.method!r}")
    return cfg.method


def check_basis(cfg: ProjectionConfig) -> str:
    """``cfg.basis``, or a ConfigError naming the key (a config built in code skips the YAML check)."""
    if cfg.basis not in BASES:
        raise ConfigError(f"projection.basis: must be one of {list(BASES)}, got {cfg.basis!r}")
    return cfg.basis


def basis_groups(names: Sequence[str], basis: str) -> dict[str, list[str]]:
    """Tables that share one ``P``: ``{ALL_FIELDS: names}`` (shared) or ``{name: [name]}`` (per field)."""
    return {ALL_FIELDS: list(names)} if basis == "shared" else {n: [n] for n in names}


@dataclass
class FittedBases:
    """The ``P`` of every table of one projection.

    Attributes:
        method: ``copy``, ``qr_expand``, ``gram`` or ``rsvd``.
        basis: ``shared`` or ``per_field`` (copy and expansion use one matrix: ``shared``).
        d_t, d_s: the dimensions.
        groups: group name -> the tables sharing its ``P``.
        matrices: table name -> ``P`` (d_t x d_s) float64.
        sigmas: group name -> the singular values of its stacked tables (PCA only).
        energies: table name -> ``(||E||^2, ||E P||^2)`` when known from its Gram (no pass needed).
    """

    method: str
    basis: str
    d_t: int
    d_s: int
    groups: dict[str, list[str]]
    matrices: dict[str, Tensor]
    sigmas: dict[str, Tensor] = field(default_factory=dict)
    energies: dict[str, tuple[float, float]] = field(default_factory=dict)

    def _group_of(self, name: str) -> str:
        return next(g for g, members in self.groups.items() if name in members)

    def info(self, name: str, rows: int) -> dict[str, Any]:
        """Method, basis, d_t, d_s, rows of table ``name`` [+ its own singular values when its
        basis is its own: a shared basis's belong to the summary]."""
        out: dict[str, Any] = {"method": self.method, "basis": self.basis, "d_t": self.d_t, "d_s": self.d_s,
                               "rows": int(rows)}
        g = self._group_of(name)
        if g in self.sigmas and len(self.groups[g]) == 1:
            out["singular_values"] = [float(s) for s in self.sigmas[g]]
        return out

    def summary_info(self) -> dict[str, Any]:
        """Method, basis, d_t, d_s [+ the singular values of the stacked table for a shared PCA basis]."""
        out: dict[str, Any] = {"method": self.method, "basis": self.basis, "d_t": self.d_t, "d_s": self.d_s}
        if self.basis == "shared" and ALL_FIELDS in self.sigmas:
            out["singular_values"] = [float(s) for s in self.sigmas[ALL_FIELDS]]
        return out

    def energy(self, name: str, norm_before: Callable[[], float], norm_after: Callable[[], float]) -> tuple[float, float]:
        """``(||E||^2, ||E_s||^2)`` of table ``name`` with as few passes as the method allows.

        Gram path: from the Gram, no pass at all. Copy and orthonormal expansion keep every norm
        (``Q Q^T = I``): one pass. Randomized SVD: two passes. ``norm_before`` / ``norm_after``
        are the callables that make (or return) those passes.
        """
        if name in self.energies:
            return self.energies[name]
        before = float(norm_before())
        return (before, before) if self.method in ("copy", "qr_expand") else (before, float(norm_after()))


def fixed_bases(method: str, names: Sequence[str], d_t: int, d_s: int, seed: int) -> FittedBases:
    """Copy (identity) or orthonormal expansion: one matrix for every table, no data needed."""
    P = torch.eye(d_t, dtype=F64) if method == "copy" else expansion_matrix(d_t, d_s, seed)
    return FittedBases(method, "shared", d_t, d_s, basis_groups(names, "shared"), {n: P for n in names})


def bases_from_grams(grams: Mapping[str, Tensor], d_s: int, basis: str) -> FittedBases:
    """PCA bases from every table's Gram (float64, d_t x d_t), summed over each group in the given
    order (a deterministic sum: the same order in every process). Energies come from the Grams."""
    names = list(grams)
    d_t = int(next(iter(grams.values())).shape[0])
    groups = basis_groups(names, basis)
    fb = FittedBases("gram", basis, d_t, d_s, groups, {})
    for g, members in groups.items():
        G = grams[members[0]].to(F64)
        if len(members) > 1:
            G = G.clone()
            for m in members[1:]:
                G += grams[m].to(F64)
        V, fb.sigmas[g] = basis_from_gram(G, d_s)
        for m in members:
            fb.matrices[m] = V
            if len(members) == 1:  # its own basis: ||E V||^2 = sum of its top sigma^2
                fb.energies[m] = (float(torch.trace(G)), float(sum(float(s) * float(s) for s in fb.sigmas[g])))
            else:
                fb.energies[m] = energies_from_gram(grams[m], V)
    return fb


def bases_from_groups(method: str, basis: str, groups: dict[str, list[str]], found: Mapping[str, tuple[Tensor, Tensor]],
                      d_t: int, d_s: int) -> FittedBases:
    """:class:`FittedBases` from ``found[group] = (V, sigma)`` (randomized path)."""
    fb = FittedBases(method, basis, d_t, d_s, groups, {})
    for g, members in groups.items():
        V, fb.sigmas[g] = found[g]
        for m in members:
            fb.matrices[m] = V
    return fb
