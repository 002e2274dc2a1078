"""``--init``: start training from existing weights, possibly with another charset.

Sources: a registry/manifest name, a ``save_pretrained`` directory, a ``.safetensors`` file, ``hf-hub:org/repo``
(anything :func:`str_distill.hub.loading.load_model` accepts), an :class:`ViTRecognizer`, or an encoder-only pretraining
checkpoint (a directory with ``config.json`` + ``encoder.safetensors`` holding ``encoder.*`` keys, as written by
``str-distill pretrain``; or that ``encoder.safetensors`` file itself).

When the charset differs, only the layers whose size depends on it change. ViT recognizers re-initialize them
(``ctc_head.classifier``, ``decoder.head``, ``decoder.tok_emb``). Models that declare ``charset_rows`` (the PP-OCR CTC
family: its ``head``) keep the row of every character the two charsets share and the blank's, and initialize only
the rows of new characters, which the message names. Every other tensor must match in shape, or a ``ValueError``
lists them.

A shallower model of the same family can start from a deeper one (*depth pruning*, the way a distilled student is
initialized from its teacher's layers): for PP-OCR models whose stages have the same widths but fewer blocks, each
student stage takes the teacher stage's blocks at evenly spaced indices (:func:`stage_block_map`: the first, i.e.
the down-sampling block, and the last are always kept; 7 -> 4 keeps 0, 2, 4, 6). Kept blocks must agree on having
squeeze-and-excitation. The message lists the blocks kept.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..models.model import ViTRecognizer
from ..tokenizer import resolve_charset

__all__ = ["CHARSET_LAYERS", "initialize_from", "is_encoder_checkpoint", "reinit_charset_layers", "remap_rows",
           "stage_block_map"]

CHARSET_LAYERS: tuple[str, ...] = ("ctc_head.classifier", "decoder.head", "decoder.tok_emb")


def _charset_layers(model: nn.Module) -> tuple[str, ...]:
    return tuple(getattr(model, "charset_rows", None) or CHARSET_LAYERS)
ENCODER_FILE = "encoder.safetensors"


def _is_charset_key(key: str, layers: tuple[str, ...] = CHARSET_LAYERS) -> bool:
    return any(key == p or key.startswith(p + ".") for p in layers)


@torch.no_grad()
def remap_rows(model: nn.Module, src_state: dict[str, torch.Tensor], src_charset: str) -> tuple[int, str]:
    """Fill ``model``'s ``charset_rows`` layers from a source with another charset, row by character.

    Row 0 (the CTC blank) and the rows of characters in both charsets are copied; rows of new characters are
    initialized (truncated normal, std 0.02, bias the mean of the source's character biases).

    Returns:
        ``(rows copied, the new characters)``.
    """
    old = {c: i + 1 for i, c in enumerate(resolve_charset(src_charset))}
    new_chars = resolve_charset(model.config.charset)
    rows = [0] + [old.get(c, -1) for c in new_chars]
    fresh = "".join(c for c in new_chars if c not in old)
    for name in model.charset_rows:
        layer = model.get_submodule(name)
        w_src = src_state[f"{name}.weight"]
        b_src = src_state.get(f"{name}.bias")
        nn.init.trunc_normal_(layer.weight, std=0.02)
        for i, r in enumerate(rows):
            if r >= 0:
                layer.weight[i] = w_src[r].to(layer.weight.dtype)
        if layer.bias is not None and b_src is not None:
            fill = b_src[1:].float().mean() if b_src.numel() > 1 else 0.0
            layer.bias.fill_(float(fill))
            for i, r in enumerate(rows):
                if r >= 0:
                    layer.bias[i] = b_src[r].to(layer.bias.dtype)
    return sum(r >= 0 for r in rows), fresh


def stage_block_map(source_depths: tuple[int, ...], depths: tuple[int, ...]) -> list[list[int]]:
    """For each stage, the source block each of the ``depths[s]`` blocks starts from: evenly spaced indices that
    always include the first and the last block (``round(linspace(0, D - 1, d))``).

    Raises:
        ValueError: different numbers of stages, or a stage deeper than the source's.
    """
    if len(source_depths) != len(depths):
        raise ValueError(f"stage counts differ: source {tuple(source_depths)}, model {tuple(depths)}")
    out = []
    for s, (big, small) in enumerate(zip(source_depths, depths)):
        if not 0 < small <= big:
            raise ValueError(f"stage {s} has {small} blocks; it can start from a source stage of {big} blocks only "
                             "when 0 < blocks <= source blocks")
        out.append([0] if small == 1 else [round(i * (big - 1) / (small - 1)) for i in range(small)])
    return out


def _depth_pruned_state(model: nn.Module, src: nn.Module, where: str) -> tuple[dict[str, torch.Tensor], str] | None:
    """The source state renamed onto a shallower PP-OCR ``model`` (stage blocks picked by :func:`stage_block_map`),
    with a message; ``None`` when the two have the same depths or are not both depth-configurable."""
    mc, sc = model.config, src.config
    if not (hasattr(mc, "depths") and hasattr(sc, "depths")) or tuple(mc.depths) == tuple(sc.depths):
        return None
    if tuple(mc.channels) != tuple(sc.channels):
        raise ValueError(f"cannot initialize {mc.arch!r} from {where} ({sc.arch!r}): stage widths differ "
                         f"({tuple(mc.channels)} vs {tuple(sc.channels)})")
    pick = stage_block_map(tuple(sc.depths), tuple(mc.depths))
    for s, blocks in enumerate(pick):
        for i, j in enumerate(blocks):
            if (i in mc.se_blocks[s]) != (j in sc.se_blocks[s]):
                raise ValueError(f"cannot initialize {mc.arch!r} from {where} ({sc.arch!r}): stage {s} block {i} "
                                 f"starts from source block {j}, and only one of them has squeeze-and-excitation "
                                 f"(model se_blocks {mc.se_blocks[s]}, source {sc.se_blocks[s]})")
    state = {}
    for key, value in src.state_dict().items():
        if key.startswith("stages."):
            _, s, b, rest = key.split(".", 3)
            for i, j in enumerate(pick[int(s)]):
                if j == int(b):
                    state[f"stages.{s}.{i}.{rest}"] = value
        else:
            state[key] = value
    desc = "; ".join(f"stage {s}: {blocks}" for s, blocks in enumerate(pick))
    return state, f"depth-pruned from {tuple(sc.depths)} to {tuple(mc.depths)} blocks per stage, keeping {desc}"


def _charset_desc(charset: str) -> str:
    chars = resolve_charset(charset)
    if charset != chars:
        return repr(charset)
    return f"{len(chars)} chars {chars[:40]!r}{'...' if len(chars) > 40 else ''}"


def is_encoder_checkpoint(source: str | Path) -> Path | None:
    """The ``encoder.safetensors`` file if ``source`` is an encoder-only pretraining checkpoint, else ``None``."""
    p = Path(source)
    if p.is_dir() and (p / ENCODER_FILE).is_file() and not (p / "model.safetensors").exists():
        return p / ENCODER_FILE
    if p.is_file() and p.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
            keys = list(f.keys())
        if meta.get("kind") == "ccd-pretrain" or (keys and all(k.startswith("encoder.") for k in keys)):
            return p
    return None


@torch.no_grad()
def reinit_charset_layers(model: ViTRecognizer) -> list[str]:
    """Re-initialize the charset-dependent layers (truncated normal, std 0.02; zero biases); returns their names."""
    names = []
    for name in CHARSET_LAYERS:
        module = model.get_submodule(name)
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.trunc_normal_(module.weight, std=0.02)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
        names.append(name)
    return names


@torch.no_grad()
def initialize_from(model: nn.Module, source: str | Path | nn.Module, name: str | None = None) -> list[str]:
    """Load ``source``'s weights into ``model`` (in place) and say what was done.

    Args:
        model: the freshly built model to train (its config decides the charset and architecture).
        source: see the module docstring.
        name: what to call an ``nn.Module`` source in the messages (e.g. the published name it was loaded from).

    Returns:
        Human-readable messages (what was loaded, what was re-initialized and why).

    Raises:
        ValueError: when non-charset tensors are missing or differ in shape (the architecture does not match),
            naming them.
    """
    enc_file = None if isinstance(source, nn.Module) else is_encoder_checkpoint(source)
    if enc_file is not None:
        return _load_encoder(model, enc_file)  # type: ignore[arg-type]
    if isinstance(source, nn.Module):
        src, where = source, repr(name) if name else f"model {source.config.arch!r}"
    else:
        from ..hub.loading import load_model

        src, where = load_model(source), repr(str(source))
    state = src.state_dict()
    pruned = _depth_pruned_state(model, src, where)
    if pruned is not None:
        state = pruned[0]
    same_charset = resolve_charset(src.config.charset) == resolve_charset(model.config.charset)
    if type(src.config) is not type(model.config):
        raise ValueError(f"cannot initialize {model.config.arch!r} from {where} ({src.config.arch!r}): they belong "
                         f"to different model families")
    layers = _charset_layers(model)
    target = model.state_dict()
    mismatched, missing = [], []
    copied = 0
    for key, value in target.items():
        if _is_charset_key(key, layers) and not same_charset:
            continue
        if key not in state:
            missing.append(key)
        elif state[key].shape != value.shape:
            mismatched.append(f"{key} {tuple(state[key].shape)} vs {tuple(value.shape)}")
        else:
            value.copy_(state[key].to(value.dtype))
            copied += 1
    if mismatched or missing:
        raise ValueError(
            f"cannot initialize {model.config.arch!r} from {where} ({src.config.arch!r}): the architectures differ "
            f"beyond the charset layers. Shape mismatches: {mismatched[:6]}{'...' if len(mismatched) > 6 else ''}; "
            f"missing: {missing[:6]}{'...' if len(missing) > 6 else ''}. Build the model from the source's config "
            "(omit --model with --init) or choose a matching source."
        )
    unused = sorted(k for k in state if k not in target)
    msgs = [f"initialized from {where} ({src.config.arch}): {copied} of {len(target)} tensors copied"]
    if pruned is not None:
        msgs.append(pruned[1])
    if unused:
        msgs.append(f"ignored {len(unused)} tensors of the source not in this model: {unused[:6]}")
    if not same_charset and getattr(model, "charset_rows", None):
        kept, fresh = remap_rows(model, state, src.config.charset)
        msgs.append(
            f"charset differs (source {_charset_desc(src.config.charset)}, model "
            f"{_charset_desc(model.config.charset)}): {', '.join(layers)} keeps {kept} rows (blank + shared "
            f"characters); " + (f"{len(fresh)} new characters start untrained: {fresh!r}" if fresh else
                                "no new characters")
        )
    elif not same_charset:
        names = reinit_charset_layers(model)
        msgs.append(
            f"charset differs (source {_charset_desc(src.config.charset)}, model "
            f"{_charset_desc(model.config.charset)}): re-initialized {', '.join(names)} "
            "(the only charset-dependent layers); everything else is kept"
        )
    return msgs


def _load_encoder(model: ViTRecognizer, path: Path) -> list[str]:
    from safetensors.torch import load_file

    state = load_file(str(path))
    bad = [k for k in state if not k.startswith("encoder.")]
    if bad:
        raise ValueError(f"{path}: an encoder checkpoint must hold only 'encoder.*' keys; found {bad[:5]}")
    enc_state = {k[len("encoder.") :]: v for k, v in state.items()}
    target = model.encoder.state_dict()
    mismatched = [
        f"encoder.{k} {tuple(v.shape)} vs {tuple(target[k].shape)}"
        for k, v in enc_state.items()
        if k in target and v.shape != target[k].shape
    ]
    missing = sorted(set(target) - set(enc_state))
    unexpected = sorted(set(enc_state) - set(target))
    if mismatched or missing or unexpected:
        raise ValueError(
            f"{path}: the encoder does not match {model.config.arch!r}: shape mismatches {mismatched[:6]}, missing "
            f"{missing[:6]}, unexpected {unexpected[:6]}. Use --model with the pretraining architecture."
        )
    for k, v in enc_state.items():
        target[k].copy_(v.to(target[k].dtype))
    return [
        f"initialized the encoder from {str(path)!r} ({len(enc_state)} tensors, encoder-only pretraining checkpoint);"
        " the CTC head and the attention decoder start from random weights"
    ]
