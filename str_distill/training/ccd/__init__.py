"""CCD: character-to-character self-distillation pretraining of the ViT encoder on unlabeled text images.

>>> from str_distill.training.ccd import CCD, CCDConfig
>>> from str_distill import get_config
>>> ccd = CCD(get_config("siga-vit-t"), CCDConfig(out_dim=1024))  # doctest: +SKIP
>>> loss, logs = ccd(images)  # images (B, 3, 32, 128) in [0, 1]  # doctest: +SKIP
"""

from __future__ import annotations

from .heads import DINOHead, SegHead
from .masks import kmeans_text_mask
from .model import CCD, CCDConfig, CCDNet, dino_loss, mean_cosine, target_entropies
from .regions import character_regions, label_components, paired_regions, pool_regions, warp, warp_regions
from .views import ViewConfig, affine_to_theta, make_views, photometric, random_affine

__all__ = [
    "CCD",
    "CCDConfig",
    "CCDNet",
    "DINOHead",
    "SegHead",
    "ViewConfig",
    "affine_to_theta",
    "character_regions",
    "dino_loss",
    "kmeans_text_mask",
    "label_components",
    "make_views",
    "mean_cosine",
    "paired_regions",
    "photometric",
    "pool_regions",
    "random_affine",
    "target_entropies",
    "warp",
    "warp_regions",
]
