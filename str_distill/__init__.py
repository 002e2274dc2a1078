"""str-distill: scene text recognition with character-level self-distillation.

>>> from str_distill import Recognizer
>>> rec = Recognizer.from_pretrained("siga-vit-s")  # doctest: +SKIP
>>> rec.predict(["word.png"])[0].text  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .models import ModelConfig, STRModel, create_model, get_config, list_models
from .tokenizer import CHARSETS, Decoded, Tokenizer

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .predictor import Prediction, Recognizer
    from .preprocess import InputError

__all__ = [
    "CHARSETS",
    "Decoded",
    "InputError",
    "ModelConfig",
    "Prediction",
    "Recognizer",
    "STRModel",
    "Tokenizer",
    "__version__",
    "create_model",
    "get_config",
    "list_models",
]


def __getattr__(name: str) -> Any:
    # The predictor is imported on first use so that ``import str_distill`` stays cheap.
    if name in ("Recognizer", "Prediction"):
        from . import predictor

        return getattr(predictor, name)
    if name == "InputError":
        from .preprocess import InputError

        return InputError
    raise AttributeError(f"module 'str_distill' has no attribute {name!r}")
