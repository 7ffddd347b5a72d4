"""The offline student methods: CrossAdapt, its ablations and the baselines, as explicit data.

Each method is a combination of four switches, so ablations differ from CrossAdapt in exactly one.
"""

from __future__ import annotations

from dataclasses import dataclass

from crossadapt.config import DistillConfig, OptimConfig
from crossadapt.errors import ConfigError
from crossadapt.train.engine import Phase


@dataclass(frozen=True)
class MethodSpec:
    """How a student is trained.

    Attributes:
        sample: train on a sample of ratio ``r`` of the retained window (else the whole window).
        teacher: add the teacher's soft labels (KD term) to the label loss.
        projection: initialise the embeddings from the projected teacher tables (else random).
        phased: phase 1 with frozen embeddings, then phase 2 joint (else one joint phase).
    """

    sample: bool
    teacher: bool
    projection: bool
    phased: bool


METHODS: dict[str, MethodSpec] = {
    "scratch": MethodSpec(sample=False, teacher=False, projection=False, phased=False),
    "kd": MethodSpec(sample=False, teacher=True, projection=False, phased=False),
    "crossadapt": MethodSpec(sample=True, teacher=True, projection=True, phased=True),
    "crossadapt_no_projection": MethodSpec(sample=True, teacher=True, projection=False, phased=True),
    "crossadapt_no_phases": MethodSpec(sample=True, teacher=True, projection=True, phased=False),
    "crossadapt_full_window": MethodSpec(sample=False, teacher=True, projection=True, phased=True),
}


def get_method(name: str) -> MethodSpec:
    """The spec of method ``name``; ConfigError listing the valid names otherwise."""
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown method {name!r}; valid methods: {sorted(METHODS)}") from None


def phases_for(spec: MethodSpec, optim: OptimConfig, distill: DistillConfig) -> tuple[Phase, ...]:
    """Training phases: baselines train ``optim.epochs`` at ``optim.lr`` (embeddings at
    ``optim.embed_lr``); CrossAdapt variants use the distillation schedule (phase 1 frozen, phase 2
    joint, or both folded into one joint phase; embeddings, where they train, at ``distill.embed_lr``)."""
    if not (spec.projection or spec.sample or spec.phased):
        return (Phase(epochs=optim.epochs, lr=optim.lr, embed_lr=optim.embed_lr),)
    if spec.phased:
        phases = []
        if distill.phase1_epochs > 0:
            phases.append(Phase(epochs=distill.phase1_epochs, lr=distill.phase1_lr, freeze_embeddings=True))
        if distill.phase2_epochs > 0:
            phases.append(Phase(epochs=distill.phase2_epochs, lr=distill.phase2_lr, embed_lr=distill.embed_lr))
        return tuple(phases)
    # One joint phase as long as both together, at the fresh-network rate of phase 1.
    return (Phase(epochs=distill.phase1_epochs + distill.phase2_epochs, lr=distill.phase1_lr,
                  embed_lr=distill.embed_lr),)
