"""Loaders for CLIP weights the user already has, into :class:`~str_distill.training.clip.model.CLIPModel`.

Only ``.safetensors`` files are read (never pickle): see ``docs/clip_ocr.md`` for a short script that converts an
OpenAI TorchScript ``.pt`` or an OpenCLIP ``.bin``/``.pt`` checkpoint.

Three key layouts are recognized and mapped onto one module tree (:class:`CLIPModel`, whose own parameter names
*are* the OpenAI layout):

* ``openai`` -- OpenAI CLIP and OpenCLIP ViT models: ``visual.conv1.weight``, ``visual.class_embedding``,
  ``visual.positional_embedding``, ``visual.transformer.resblocks.N.{ln_1,attn.in_proj_*,attn.out_proj,ln_2,
  mlp.c_fc,mlp.c_proj}``, ``visual.ln_post``, ``visual.proj``, ``token_embedding.weight``, ``positional_embedding``,
  ``transformer.resblocks.N...``, ``ln_final``, ``text_projection``, ``logit_scale``. OpenCLIP's optional layer
  scale (``ls_1.gamma``/``ls_2.gamma``) is supported. Any common prefix (``module.``, ``state_dict.``,
  ``model.``...) is stripped.
* ``hf`` -- Hugging Face ``transformers`` ``CLIPModel`` (``vision_model.encoder.layers.N.self_attn.q_proj``...), as
  in the ``model.safetensors`` of ``openai/clip-vit-base-patch16``.

Widths, depths, patch size, position grid, context length and vocabulary size are read from tensor shapes. Two
things are not in the tensors and are resolved as follows:

* the MLP activation: QuickGELU for OpenAI-trained weights, GELU for most OpenCLIP (LAION...) weights. Order:
  the ``arch`` argument (``"openai"`` / ``"openclip"``), else a ``clip_activation`` entry in the safetensors
  metadata, else ``hidden_act`` of a Hugging Face ``config.json`` next to the file, else QuickGELU.
* the number of heads: explicit arguments, else ``clip_vision_heads``/``clip_text_heads`` metadata, else
  ``num_attention_heads`` of a sibling Hugging Face ``config.json``, else ``width // 64`` (16 heads for the OpenCLIP
  image towers of width 1280/1408/1664, whose heads are wider than 64).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .model import Activation, CLIPConfig, CLIPModel

__all__ = ["LoadInfo", "clip_from_state_dict", "infer_clip_config", "load_clip", "to_native_layout"]

_ARCH_ACTIVATION: dict[str, Activation] = {"openai": "quick_gelu", "openclip": "gelu"}
_PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".tar")
# Image towers whose head width is not 64 (OpenCLIP ViT-H/14, ViT-g/14, ViT-bigG/14): width -> heads.
_WIDE_HEAD_VISION = {1280: 16, 1408: 16, 1664: 16}
# Keys that some checkpoints carry but the model does not need (buffers and metadata scalars).
_IGNORED_KEYS = ("input_resolution", "context_length", "vocab_size", "attn_mask")


@dataclass
class LoadInfo:
    """What :func:`load_clip` read: the layout, the resolved config and anything left out, for logs."""

    path: str
    layout: str
    config: CLIPConfig
    ignored: list[str] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        c = asdict(self.config)
        msg = (
            f"CLIP teacher {self.path} ({self.layout} layout): image ViT {c['vision_width']}w x {c['vision_layers']}L "
            f"x {c['vision_heads']}H patch {c['vision_patch']} grid {c['vision_grid']}; text {c['text_width']}w x "
            f"{c['text_layers']}L x {c['text_heads']}H; embed {c['embed_dim']}; activation {c['activation']} "
            f"({self.sources.get('activation', '?')})"
        )
        if self.ignored:
            msg += f"; ignored {len(self.ignored)} keys outside the CLIP model: {self.ignored[:5]}"
        return msg


def _strip_prefix(state: dict[str, torch.Tensor], anchor: str) -> tuple[dict[str, torch.Tensor], list[str]] | None:
    hits = [k for k in state if k == anchor or k.endswith("." + anchor)]
    if not hits:
        return None
    prefix = min(hits, key=len)[: -len(anchor)]
    kept = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    return kept, sorted(k for k in state if not k.startswith(prefix))


def _hf_to_native(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a Hugging Face ``CLIPModel`` state dict to the OpenAI layout (q/k/v are concatenated)."""
    out: dict[str, torch.Tensor] = {}
    simple = {
        "vision_model.embeddings.patch_embedding.weight": "visual.conv1.weight",
        "vision_model.embeddings.class_embedding": "visual.class_embedding",
        "vision_model.embeddings.position_embedding.weight": "visual.positional_embedding",
        "vision_model.pre_layrnorm.weight": "visual.ln_pre.weight",
        "vision_model.pre_layrnorm.bias": "visual.ln_pre.bias",
        "vision_model.post_layernorm.weight": "visual.ln_post.weight",
        "vision_model.post_layernorm.bias": "visual.ln_post.bias",
        "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
        "text_model.embeddings.position_embedding.weight": "positional_embedding",
        "text_model.final_layer_norm.weight": "ln_final.weight",
        "text_model.final_layer_norm.bias": "ln_final.bias",
        "logit_scale": "logit_scale",
    }
    transposed = {"visual_projection.weight": "visual.proj", "text_projection.weight": "text_projection"}
    sub = {
        "layer_norm1": "ln_1",
        "layer_norm2": "ln_2",
        "mlp.fc1": "mlp.c_fc",
        "mlp.fc2": "mlp.c_proj",
        "self_attn.out_proj": "attn.out_proj",
    }
    layer_re = re.compile(r"^(vision_model|text_model)\.encoder\.layers\.(\d+)\.(.+)\.(weight|bias)$")
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    unknown = []
    for k, v in state.items():
        if k in simple:
            out[simple[k]] = v
        elif k in transposed:
            out[transposed[k]] = v.t()
        elif k.endswith("position_ids"):
            continue
        elif m := layer_re.match(k):
            tower, n, name, kind = m.groups()
            root = f"{'visual.' if tower == 'vision_model' else ''}transformer.resblocks.{n}"
            if name in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
                qkv.setdefault((root, kind), {})[name[10]] = v
            elif name in sub:
                out[f"{root}.{sub[name]}.{kind}"] = v
            else:
                unknown.append(k)
        else:
            unknown.append(k)
    if unknown:
        raise ValueError(f"unsupported Hugging Face CLIP keys (only ViT CLIPModel is supported): {unknown[:8]}")
    for (root, kind), parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise ValueError(f"{root}: incomplete q/k/v projections ({sorted(parts)})")
        out[f"{root}.attn.in_proj_{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]], 0)
    return out


def to_native_layout(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str, list[str]]:
    """Map a CLIP state dict in any supported layout to :class:`CLIPModel`'s (OpenAI) key names.

    Returns:
        ``(state, layout, ignored)``: ``layout`` is ``"openai"`` (OpenAI / OpenCLIP names) or ``"hf"``; ``ignored``
        lists keys outside the CLIP model (e.g. other weights under a different prefix).

    Raises:
        ValueError: for a ResNet CLIP or a layout with neither anchor key.
    """
    if found := _strip_prefix(state, "visual.conv1.weight"):
        kept, ignored = found
        if "token_embedding.weight" not in kept:
            raise ValueError("the state dict has an image tower but no 'token_embedding.weight' (text tower)")
        kept = {k: v for k, v in kept.items() if k.split(".")[-1] not in _IGNORED_KEYS}
        return kept, "openai", ignored
    if found := _strip_prefix(state, "vision_model.embeddings.patch_embedding.weight"):
        kept, ignored = found
        return _hf_to_native(kept), "hf", ignored
    if any(k.endswith("visual.layer1.0.conv1.weight") or k.endswith("visual.attnpool.c_proj.weight") for k in state):
        raise ValueError("ResNet CLIP image towers are not supported; use a ViT CLIP (e.g. ViT-B/16)")
    sample = sorted(state)[:6]
    raise ValueError(
        "not a CLIP ViT state dict: expected 'visual.conv1.weight' (OpenAI / OpenCLIP) or "
        f"'vision_model.embeddings.patch_embedding.weight' (Hugging Face); first keys: {sample}"
    )


def _count_blocks(state: dict[str, torch.Tensor], prefix: str) -> int:
    pat = re.compile(re.escape(prefix) + r"(\d+)\.")
    ids = {int(m.group(1)) for k in state if (m := pat.match(k))}
    if not ids or ids != set(range(len(ids))):
        raise ValueError(f"blocks under {prefix!r} are missing or not numbered 0..N-1: {sorted(ids)[:8]}")
    return len(ids)


def infer_clip_config(
    state: dict[str, torch.Tensor],
    activation: Activation = "quick_gelu",
    vision_heads: int | None = None,
    text_heads: int | None = None,
) -> CLIPConfig:
    """Read a :class:`CLIPConfig` from tensor shapes of an OpenAI-layout state dict (see :func:`to_native_layout`).

    Heads default to ``width // 64`` (16 for image widths 1280/1408/1664).
    """

    def need(key: str) -> torch.Tensor:
        if key not in state:
            raise ValueError(f"CLIP state dict has no {key!r}")
        return state[key]

    conv = need("visual.conv1.weight")
    if conv.ndim != 4 or conv.shape[-1] != conv.shape[-2] or conv.shape[1] != 3:
        raise ValueError(f"visual.conv1.weight must be (W, 3, P, P), got {tuple(conv.shape)}")
    vw, patch = int(conv.shape[0]), int(conv.shape[-1])
    n_pos = int(need("visual.positional_embedding").shape[0]) - 1
    grid = math.isqrt(n_pos)
    if grid * grid != n_pos:
        raise ValueError(f"visual.positional_embedding has {n_pos} patch positions, not a square grid")
    proj = need("visual.proj")
    tok = need("token_embedding.weight")
    tw = int(tok.shape[1])
    tproj = need("text_projection")
    if tproj.shape[1] != proj.shape[1]:
        raise ValueError(
            f"text_projection {tuple(tproj.shape)} and visual.proj {tuple(proj.shape)} disagree on embed_dim"
        )
    return CLIPConfig(
        embed_dim=int(proj.shape[1]),
        vision_width=vw,
        vision_layers=_count_blocks(state, "visual.transformer.resblocks."),
        vision_heads=vision_heads or _WIDE_HEAD_VISION.get(vw, max(vw // 64, 1)),
        vision_mlp=int(need("visual.transformer.resblocks.0.mlp.c_fc.weight").shape[0]),
        vision_patch=patch,
        vision_grid=grid,
        text_width=tw,
        text_layers=_count_blocks(state, "transformer.resblocks."),
        text_heads=text_heads or max(tw // 64, 1),
        text_mlp=int(need("transformer.resblocks.0.mlp.c_fc.weight").shape[0]),
        context_length=int(need("positional_embedding").shape[0]),
        vocab_size=int(tok.shape[0]),
        activation=activation,
        layer_scale=any(k.endswith(".ls_1.gamma") for k in state),
    )


def clip_from_state_dict(state: dict[str, torch.Tensor], config: CLIPConfig, source: str = "") -> CLIPModel:
    """Build :class:`CLIPModel` and load an OpenAI-layout ``state`` strictly, in float32, frozen and in eval mode.

    Raises:
        RuntimeError: naming missing and unexpected keys.
    """
    model = CLIPModel(config)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    if "logit_scale" not in state:
        state["logit_scale"] = model.logit_scale.detach().clone()
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RuntimeError(
            f"CLIP weights {source} do not match the inferred architecture: missing keys {missing[:8]}, "
            f"unexpected keys {unexpected[:8]}"
        )
    model.requires_grad_(False)
    return model.eval()


def _sibling_hf_config(path: Path) -> dict:
    cfg = path.parent / "config.json"
    if not cfg.is_file():
        return {}
    try:
        data = json.loads(cfg.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) and "vision_config" in data else {}


def load_clip(
    path: str | Path,
    arch: str = "auto",
    vision_heads: int | None = None,
    text_heads: int | None = None,
) -> tuple[CLIPModel, LoadInfo]:
    """Load a frozen CLIP ViT from a local ``.safetensors`` file (OpenAI, OpenCLIP or Hugging Face layout).

    Args:
        path: the ``.safetensors`` file (pickle files are refused; see ``docs/clip_ocr.md`` to convert one).
        arch: ``"auto"``, ``"openai"`` (QuickGELU) or ``"openclip"`` (GELU); see the module docstring.
        vision_heads, text_heads: override the inferred number of attention heads.

    Returns:
        ``(model, info)``: the model in eval mode with ``requires_grad=False``, and what was read.

    Raises:
        FileNotFoundError, ValueError: for a missing file, a pickle file, or weights that are not a ViT CLIP.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    p = Path(path)
    if arch not in ("auto", *_ARCH_ACTIVATION):
        raise ValueError(f"clip arch must be 'auto', 'openai' or 'openclip', got {arch!r}")
    if p.suffix.lower() in _PICKLE_SUFFIXES:
        raise ValueError(
            f"{p}: CLIP weights are read from .safetensors only (pickle checkpoints can run code when loaded). "
            "Convert the checkpoint once with the 5-line script in docs/clip_ocr.md, then pass the .safetensors file."
        )
    if not p.is_file():
        raise FileNotFoundError(
            f"CLIP weights not found: {p} (no CLIP weights can be downloaded; see docs/clip_ocr.md)"
        )
    if p.suffix.lower() != ".safetensors":
        raise ValueError(f"{p}: expected a .safetensors file")
    with safe_open(str(p), framework="pt") as f:
        meta = dict(f.metadata() or {})
    raw = load_file(str(p))
    state, layout, ignored = to_native_layout(raw)
    hf = _sibling_hf_config(p) if layout == "hf" else {}
    sources: dict[str, str] = {}
    if arch != "auto":
        act: str = _ARCH_ACTIVATION[arch]
        sources["activation"] = f"--clip-arch {arch}"
    elif "clip_activation" in meta:
        act = meta["clip_activation"]
        sources["activation"] = "file metadata"
    elif hf:
        act = hf.get("vision_config", {}).get("hidden_act", "quick_gelu")
        sources["activation"] = "config.json"
    else:
        act, sources["activation"] = "quick_gelu", "default (OpenAI CLIP)"
    if act not in ("quick_gelu", "gelu"):
        raise ValueError(f"{p}: unsupported activation {act!r} (supported: quick_gelu, gelu)")

    def heads(explicit: int | None, meta_key: str, hf_tower: str) -> int | None:
        if explicit:
            return explicit
        if meta_key in meta:
            return int(meta[meta_key])
        return hf.get(hf_tower, {}).get("num_attention_heads")

    config = infer_clip_config(
        state,
        act,  # type: ignore[arg-type]
        heads(vision_heads, "clip_vision_heads", "vision_config"),
        heads(text_heads, "clip_text_heads", "text_config"),
    )
    model = clip_from_state_dict(state, config, str(p))
    return model, LoadInfo(str(p), layout, config, ignored, sources)
