"""Models: the pure ``nn.Module`` recognizer, its configuration and the registry of named architectures."""

from .config import ModelConfig
from .decoder import DecoderOutput
from .model import STRModel, TrainOutput
from .registry import create_model, get_config, list_models, register_model

__all__ = [
    "DecoderOutput",
    "ModelConfig",
    "STRModel",
    "TrainOutput",
    "create_model",
    "get_config",
    "list_models",
    "register_model",
]
