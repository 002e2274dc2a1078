"""Models: the pure ``nn.Module`` recognizer, its configuration and the registry of named architectures."""

from .base import DecoderOutput, RecognizerNet, TrainOutput
from .config import ViTConfig
from .model import ViTRecognizer
from .ppocr import PPOCRConfig, PPOCRRecognizer
from .registry import build_model, config_from_dict, create_model, get_config, list_models, register_model

__all__ = [
    "DecoderOutput",
    "ViTConfig",
    "PPOCRConfig",
    "PPOCRRecognizer",
    "RecognizerNet",
    "ViTRecognizer",
    "TrainOutput",
    "build_model",
    "config_from_dict",
    "create_model",
    "get_config",
    "list_models",
    "register_model",
]


def __getattr__(name: str) -> object:
    if name in ("STRModel", "ModelConfig"):  # deprecated names of the ViT family
        from . import config, model

        return getattr(model if name == "STRModel" else config, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
