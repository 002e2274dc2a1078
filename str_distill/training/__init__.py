"""Training and evaluation (``pip install str-distill[train]``): :func:`finetune` a :class:`TrainSpec`, or
build the trainer, losses, objectives, metrics and evaluation yourself.

>>> from str_distill.training import TrainSpec, finetune  # doctest: +SKIP
>>> finetune(TrainSpec(data=["my_words/"], init="ppocrv6-small.scene-ft-neck", val_split=0.1))  # doctest: +SKIP

Distillation objectives live in :mod:`str_distill.training.clip` (CLIP-OCR) and pretraining in
:mod:`str_distill.training.ccd`; both are imported only when used.
"""

from __future__ import annotations

from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .ema import ModelEMA
from .evaluate import EvalResult, SetResult, evaluate, open_eval_sets
from .losses import LossWeights, RecognitionLoss, ctc_loss, sequence_ce
from .metrics import WordMetrics, edit_distance, normalize_protocol
from .objectives import Objective
from .run import TrainSpec, build_trainer, finetune
from .schedule import LRSchedule
from .trainer import Trainer
from .warm_start import CHARSET_LAYERS, initialize_from

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
    "TrainSpec",
    "Trainer",
    "WordMetrics",
    "ctc_loss",
    "edit_distance",
    "build_trainer",
    "evaluate",
    "finetune",
    "initialize_from",
    "load_checkpoint",
    "normalize_protocol",
    "open_eval_sets",
    "save_checkpoint",
    "sequence_ce",
]
