"""Models: the pure ``nn.Module`` recognizer, its configuration and the registry of named architectures."""

from .config import ModelConfig
from .decoder import DecoderOutput
from .model import STRModel, TrainOutput
from .ppocr import PPOCRConfig, PPOCRRecognizer
from .registry import build_model, config_from_dict, create_model, get_config, list_models, register_model

__all__ = [
    "DecoderOutput",
    "ModelConfig",
    "PPOCRConfig",
    "PPOCRRecognizer",
    "STRModel",
    "TrainOutput",
    "build_model",
    "config_from_dict",
    "create_model",
    "get_config",
    "list_models",
    "register_model",
]
