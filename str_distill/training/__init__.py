"""Training and evaluation (``pip install str-distill[train]``): trainer, losses, objectives, metrics, evaluation.

>>> from str_distill.training import TrainConfig, Trainer, initialize_from  # doctest: +SKIP

Distillation objectives live in :mod:`str_distill.training.clip` (CLIP-OCR) and pretraining in
:mod:`str_distill.training.ccd`; both are imported only when used.
"""

from __future__ import annotations

from .checkpoint import load_checkpoint, save_checkpoint
from .ema import ModelEMA
from .evaluate import EvalResult, SetResult, evaluate, open_eval_sets
from .init import CHARSET_LAYERS, initialize_from
from .losses import LossWeights, RecognitionLoss, ctc_loss, sequence_ce
from .metrics import WordMetrics, edit_distance, normalize_protocol
from .objectives import Objective
from .schedule import LRSchedule
from .trainer import TrainConfig, Trainer

__all__ = [
    "CHARSET_LAYERS",
    "EvalResult",
    "LRSchedule",
    "LossWeights",
    "ModelEMA",
    "Objective",
    "RecognitionLoss",
    "SetResult",
    "TrainConfig",
    "Trainer",
    "WordMetrics",
    "ctc_loss",
    "edit_distance",
    "evaluate",
    "initialize_from",
    "load_checkpoint",
    "normalize_protocol",
    "open_eval_sets",
    "save_checkpoint",
    "sequence_ce",
]
