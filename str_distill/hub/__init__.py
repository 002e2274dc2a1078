"""Weights: safetensors serialization, the weights manifest and the loader for every source."""

from .loading import WeightsIntegrityError, WeightsNotFoundError, load_model
from .manifest import load_manifest, make_record, update_record, validate_manifest
from .serialization import WeightsFormatError, load_model_dir, load_state_dict, save_pretrained, sha256_file

__all__ = [
    "WeightsFormatError",
    "WeightsIntegrityError",
    "WeightsNotFoundError",
    "load_manifest",
    "load_model",
    "load_model_dir",
    "load_state_dict",
    "make_record",
    "save_pretrained",
    "sha256_file",
    "update_record",
    "validate_manifest",
]
