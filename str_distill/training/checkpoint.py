"""Training checkpoints for exact resume.

A checkpoint is a folder::

    checkpoint/
        model/                   save_pretrained(): config.json + model.safetensors (float32)
        ema/                     the same for the EMA weights (when EMA is on)
        objectives.safetensors   trainable state of extra objectives, keys "<objective name>.<param>"
        trainer_state.pt         optimizer state, step, elapsed time, RNG states, counters (torch.save)

``trainer_state.pt`` is our own file and holds only tensors and plain Python containers: it is read back with
``torch.load(weights_only=True)``, never unpickling arbitrary objects. The folder is written next to the old one
and swapped in with renames, so an interrupted save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..hub.serialization import load_state_dict, save_pretrained
from ..models.model import ViTRecognizer
from .ema import ModelEMA
from .objectives import Objective

__all__ = ["STATE_NAME", "get_rng_state", "load_checkpoint", "save_checkpoint", "set_rng_state"]

STATE_NAME = "trainer_state.pt"
OBJECTIVES_NAME = "objectives.safetensors"


def get_rng_state() -> dict[str, Any]:
    """Python, NumPy (global), torch CPU and CUDA generator states, as tensors and plain containers."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`get_rng_state`."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _objective_state(objectives: Sequence[Objective]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for obj in objectives:
        mod = obj.modules()
        if mod is not None:
            for k, v in mod.state_dict().items():
                out[f"{obj.name}.{k}"] = v.detach().cpu().contiguous()
    return out


def save_checkpoint(
    directory: str | Path,
    model: ViTRecognizer,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    ema: ModelEMA | None = None,
    objectives: Sequence[Objective] = (),
) -> Path:
    """Write a checkpoint folder (atomically replacing an existing one).

    Args:
        directory: the checkpoint folder (e.g. ``run/checkpoint``).
        state: trainer counters (``step``, ``elapsed``...): plain Python values and tensors only.

    Returns:
        The folder.
    """
    final = Path(directory)
    tmp = final.with_name(final.name + ".tmp")
    old = final.with_name(final.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_pretrained(model, tmp / "model")
    if ema is not None:
        save_pretrained(ema.module, tmp / "ema")
    obj_state = _objective_state(objectives)
    if obj_state:
        from safetensors.torch import save_file

        save_file(obj_state, str(tmp / OBJECTIVES_NAME))
    payload = dict(state)
    payload["optimizer"] = optimizer.state_dict()
    payload["rng"] = get_rng_state()
    payload["ema_updates"] = ema.updates if ema is not None else 0
    torch.save(payload, tmp / STATE_NAME)
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(
    directory: str | Path,
    model: ViTRecognizer,
    optimizer: torch.optim.Optimizer | None = None,
    ema: ModelEMA | None = None,
    objectives: Sequence[Objective] = (),
    restore_rng: bool = True,
) -> dict[str, Any]:
    """Restore model, optimizer, EMA, objectives and RNG states in place; returns the trainer counters.

    Raises:
        FileNotFoundError: if the folder is not a checkpoint.
        RuntimeError: if the saved weights do not match the model.
    """
    d = Path(directory)
    if not (d / STATE_NAME).is_file():
        raise FileNotFoundError(f"{d}: not a training checkpoint (no {STATE_NAME})")
    state = load_state_dict(d / "model" / "model.safetensors")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RuntimeError(
            f"{d}: checkpoint does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    payload = torch.load(d / STATE_NAME, map_location="cpu", weights_only=True)
    if ema is not None:
        if not (d / "ema").is_dir():
            raise FileNotFoundError(f"{d}: EMA is on but the checkpoint has no EMA weights (saved without --ema)")
        ema.load_state_dict(load_state_dict(d / "ema" / "model.safetensors"), payload.get("ema_updates", 0))
    if objectives:
        from safetensors.torch import load_file

        saved = load_file(str(d / OBJECTIVES_NAME)) if (d / OBJECTIVES_NAME).is_file() else {}
        for obj in objectives:
            mod = obj.modules()
            if mod is None:
                continue
            prefix = obj.name + "."
            sub = {k[len(prefix) :]: v for k, v in saved.items() if k.startswith(prefix)}
            if not sub:
                raise FileNotFoundError(f"{d}: no saved state for objective {obj.name!r}")
            mod.load_state_dict(sub, strict=True)
    if optimizer is not None:
        optimizer.load_state_dict(payload["optimizer"])
    if restore_rng:
        set_rng_state(payload["rng"])
    return {k: v for k, v in payload.items() if k not in ("optimizer", "rng")}
