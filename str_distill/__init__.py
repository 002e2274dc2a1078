"""str-distill: read the text in cropped word images (scene text recognition) with PyTorch.

>>> from str_distill import Recognizer
>>> rec = Recognizer.from_pretrained()  # the bundled default weights  # doctest: +SKIP
>>> rec.predict(["word.png"])[0].text  # doctest: +SKIP

What a user needs is importable from here: :class:`Recognizer` (load weights, read images) and its
:class:`Prediction`, :class:`InputError` (bad input), :func:`list_models` (architectures), :func:`list_pretrained`
(published weights), :func:`load_model` (a bare network), the weights errors and ``__version__``.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .models import ViTConfig, ViTRecognizer, create_model, get_config
from .models import list_models as _list_architectures
from .tokenizer import CHARSETS, Decoded, Tokenizer

if TYPE_CHECKING:
    from .hub.loading import WeightsIntegrityError, WeightsNotFoundError, load_model
    from .hub.manifest import list_pretrained
    from .hub.serialization import WeightsFormatError
    from .predictor import Prediction, Recognizer
    from .preprocess import InputError

__all__ = [
    "CHARSETS",
    "Decoded",
    "InputError",
    "ViTConfig",
    "Prediction",
    "Recognizer",
    "ViTRecognizer",
    "Tokenizer",
    "WeightsFormatError",
    "WeightsIntegrityError",
    "WeightsNotFoundError",
    "__version__",
    "create_model",
    "get_config",
    "list_models",
    "list_pretrained",
    "load_model",
]

def list_models(pattern: str = "*", pretrained: bool = False) -> list[str]:
    """Registered architecture names matching a glob ``pattern``, sorted, e.g. ``["ppocrv6-small", ...]``.

    An architecture is a network shape (build one with :func:`create_model`); trained weights have their own
    names, listed by :func:`list_pretrained`. ``pretrained=True`` is a deprecated spelling of
    ``list_pretrained(pattern)``.
    """
    if pretrained:
        warnings.warn("list_models(pretrained=True) is deprecated; use str_distill.list_pretrained()",
                      DeprecationWarning, stacklevel=2)
        from .hub.manifest import list_pretrained

        return list_pretrained(pattern)
    return _list_architectures(pattern)


def __getattr__(name: str) -> Any:
    # The predictor and the loader are imported on first use, so that ``import str_distill`` stays cheap.
    if name in ("Recognizer", "Prediction"):
        from . import predictor

        return getattr(predictor, name)
    if name == "InputError":
        from .preprocess import InputError

        return InputError
    if name in ("load_model", "WeightsNotFoundError", "WeightsIntegrityError"):
        from .hub import loading

        return getattr(loading, name)
    if name == "WeightsFormatError":
        from .hub.serialization import WeightsFormatError

        return WeightsFormatError
    if name in ("STRModel", "ModelConfig"):  # deprecated names of the ViT family
        from . import models

        return getattr(models, name)
    if name == "list_pretrained":
        from .hub.manifest import list_pretrained

        return list_pretrained
    raise AttributeError(f"module 'str_distill' has no attribute {name!r}")
