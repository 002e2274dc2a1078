"""Weights: safetensors serialization, the weights manifest and the loader for every source."""

from .serialization import load_model_dir, load_state_dict, save_pretrained, sha256_file

__all__ = ["load_model_dir", "load_state_dict", "save_pretrained", "sha256_file"]
