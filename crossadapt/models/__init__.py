"""The model zoo: one shared feature embedding, named interaction layers, a registry, checkpoints.

Example::

    from crossadapt.config import ModelConfig
    model = build_model(ModelConfig(name="dcnv2", embed_dim=32), feature_map)
    logits = model(ids, dense)  # (B,)
    save_checkpoint("best.pt", model, ModelConfig(name="dcnv2", embed_dim=32), feature_map)
    load_checkpoint("best.pt", expected_feature_map=feature_map).model
"""

from crossadapt.models.checkpoint import LoadedCheckpoint, load_checkpoint, read_checkpoint, save_checkpoint
from crossadapt.models.embedding import FeatureEmbedding
from crossadapt.models.registry import MODEL_REGISTRY, build_model

__all__ = [
    "FeatureEmbedding",
    "LoadedCheckpoint",
    "MODEL_REGISTRY",
    "build_model",
    "load_checkpoint",
    "read_checkpoint",
    "save_checkpoint",
]
