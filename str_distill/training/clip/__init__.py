"""CLIP-OCR distillation (training only): a frozen CLIP teacher and the symmetrical distillation objective.

``str-distill train --distill clip --clip-weights FILE.safetensors [--clip-arch auto|openai|openclip]
[--clip-decoder-layers all-but-last|all]`` calls
:func:`build_objective`. No CLIP weights ship with str-distill or can be downloaded by it: the user points it at a
local file (see ``docs/clip_ocr.md``). The trained recognizer contains no CLIP weights.
"""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING

from .convert import clip_from_state_dict, infer_clip_config, load_clip
from .distill import (
    CLIPDistillHeads,
    CLIPDistillObjective,
    LossWeights,
    clip_image_size,
    lcl_loss,
    proportional_layers,
    reversed_text_layers,
)
from .model import CLIP_MEAN, CLIP_STD, CLIPConfig, CLIPModel
from .text import bytes_to_unicode, char_token_id, spell, unspellable_chars

if TYPE_CHECKING:
    from ...models.model import ViTRecognizer

__all__ = [
    "CLIPConfig",
    "CLIPDistillHeads",
    "CLIPDistillObjective",
    "CLIPModel",
    "CLIP_MEAN",
    "CLIP_STD",
    "LossWeights",
    "build_objective",
    "bytes_to_unicode",
    "char_token_id",
    "clip_from_state_dict",
    "clip_image_size",
    "infer_clip_config",
    "lcl_loss",
    "load_clip",
    "proportional_layers",
    "reversed_text_layers",
    "spell",
    "unspellable_chars",
]

log = logging.getLogger(__name__)


def build_objective(model: ViTRecognizer, args: argparse.Namespace) -> CLIPDistillObjective:
    """The CLIP-OCR objective for ``str-distill train --distill clip``.

    Args:
        model: the recognizer to train (its config is read; its decoder's final LayerNorm is shared by reference).
        args: parsed arguments; ``clip_weights`` (path to a ``.safetensors`` CLIP ViT) is required; optional
            ``clip_arch`` (``"auto"``, ``"openai"``, ``"openclip"``), ``clip_vision_heads``, ``clip_text_heads``,
            ``clip_decoder_layers`` (``"all-but-last"``, the default, or ``"all"``).

    Returns:
        A :class:`CLIPDistillObjective`; its ``modules()`` are the trainable adapters, the teacher stays outside.

    Raises:
        ValueError, FileNotFoundError: missing ``--clip-weights``, a pickle file, or weights that are not a ViT CLIP.
    """
    path = getattr(args, "clip_weights", None)
    if not path:
        raise ValueError(
            "--distill clip needs --clip-weights FILE.safetensors: a CLIP ViT checkpoint you provide "
            "(none can be downloaded here; see docs/clip_ocr.md)"
        )
    teacher, info = load_clip(
        path,
        arch=getattr(args, "clip_arch", None) or "auto",
        vision_heads=getattr(args, "clip_vision_heads", None),
        text_heads=getattr(args, "clip_text_heads", None),
    )
    objective = CLIPDistillObjective(
        model, teacher, decoder_layers=getattr(args, "clip_decoder_layers", None) or "all-but-last"
    )
    objective.teacher_info = info.describe()
    log.info(objective.describe())
    return objective
