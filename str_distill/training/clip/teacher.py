"""A CLIP model of our own (ViT image tower + causal text tower) that exposes intermediate layers, and loaders for
CLIP weights the user already has.

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
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "CLIPConfig",
    "CLIPModel",
    "LoadInfo",
    "clip_from_state_dict",
    "infer_clip_config",
    "load_clip",
    "to_native_layout",
]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

Activation = Literal["quick_gelu", "gelu"]
_ARCH_ACTIVATION: dict[str, Activation] = {"openai": "quick_gelu", "openclip": "gelu"}
_PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".tar")
# Image towers whose head width is not 64 (OpenCLIP ViT-H/14, ViT-g/14, ViT-bigG/14): width -> heads.
_WIDE_HEAD_VISION = {1280: 16, 1408: 16, 1664: 16}
# Keys that some checkpoints carry but the model does not need (buffers and metadata scalars).
_IGNORED_KEYS = ("input_resolution", "context_length", "vocab_size", "attn_mask")


@dataclass(frozen=True)
class CLIPConfig:
    """Shapes of a ViT CLIP model.

    Attributes:
        embed_dim: joint image-text embedding width (512 for ViT-B/16).
        vision_width, vision_layers, vision_heads, vision_mlp: the image transformer (768, 12, 12, 3072 for B/16).
        vision_patch: square patch side in pixels (16).
        vision_grid: side of the square position-embedding grid the weights were trained with (224 / 16 = 14).
        text_width, text_layers, text_heads, text_mlp: the text transformer (512, 12, 8, 2048).
        context_length: text positions (77); vocab_size: 49408.
        activation: MLP activation, ``"quick_gelu"`` (OpenAI) or ``"gelu"``.
        layer_scale: whether blocks have OpenCLIP layer-scale ``gamma`` vectors.
    """

    embed_dim: int
    vision_width: int
    vision_layers: int
    vision_heads: int
    vision_mlp: int
    vision_patch: int
    vision_grid: int
    text_width: int
    text_layers: int
    text_heads: int
    text_mlp: int
    context_length: int
    vocab_size: int
    activation: Activation = "quick_gelu"
    layer_scale: bool = False

    def __post_init__(self) -> None:
        if self.activation not in ("quick_gelu", "gelu"):
            raise ValueError(f"activation must be 'quick_gelu' or 'gelu', got {self.activation!r}")
        for tower, width, heads in (
            ("vision", self.vision_width, self.vision_heads),
            ("text", self.text_width, self.text_heads),
        ):
            if heads < 1 or width % heads:
                raise ValueError(f"{tower} width {width} is not divisible by {heads} heads")


class QuickGELU(nn.Module):
    """``x * sigmoid(1.702 x)``, the activation OpenAI CLIP was trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class LayerScale(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class SelfAttention(nn.Module):
    """Multi-head self-attention with CLIP's parameter names (``in_proj_weight``, ``in_proj_bias``, ``out_proj``).

    ``x``: ``(B, T, W)`` -> ``(B, T, W)``; ``causal`` masks future positions (text tower).
    """

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.normal_(self.in_proj_weight, std=width**-0.5)

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        b, t, w = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.view(b, t, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return self.out_proj(out.transpose(1, 2).reshape(b, t, w))


class ResidualBlock(nn.Module):
    """Pre-norm transformer block: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``."""

    def __init__(self, width: int, heads: int, mlp: int, activation: Activation, layer_scale: bool) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = SelfAttention(width, heads)
        self.ls_1 = LayerScale(width) if layer_scale else nn.Identity()
        self.ln_2 = nn.LayerNorm(width)
        act = QuickGELU() if activation == "quick_gelu" else nn.GELU()
        self.mlp = nn.Sequential(
            OrderedDict([("c_fc", nn.Linear(width, mlp)), ("gelu", act), ("c_proj", nn.Linear(mlp, width))])
        )
        self.ls_2 = LayerScale(width) if layer_scale else nn.Identity()

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        x = x + self.ls_1(self.attn(self.ln_1(x), causal))
        return x + self.ls_2(self.mlp(self.ln_2(x)))


class Transformer(nn.Module):
    def __init__(
        self, width: int, layers: int, heads: int, mlp: int, activation: Activation, layer_scale: bool
    ) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList(ResidualBlock(width, heads, mlp, activation, layer_scale) for _ in range(layers))

    def forward(
        self, x: torch.Tensor, causal: bool = False, return_layers: Sequence[int] = (), stop_early: bool = False
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Run the blocks.

        Args:
            x: ``(B, T, W)``.
            return_layers: 1-based blocks whose outputs ``(B, T, W)`` are also returned, in this order.
            stop_early: skip the blocks after the last requested one (the returned ``x`` is then that block's output).

        Returns:
            ``(x, taps)``.
        """
        taps: dict[int, torch.Tensor] = {}
        last = max(return_layers) if stop_early and return_layers else len(self.resblocks)
        for i, block in enumerate(self.resblocks[:last], start=1):
            x = block(x, causal)
            if i in return_layers:
                taps[i] = x
        bad = [i for i in return_layers if i not in taps]
        if bad:
            raise ValueError(f"requested layers {bad} outside 1..{len(self.resblocks)}")
        return x, [taps[i] for i in return_layers]


class VisionTower(nn.Module):
    """CLIP's ViT image tower. Keeps the square position grid of the weights; other grids are cropped from it
    (or interpolated where the grid is larger), see :meth:`position_embedding`."""

    def __init__(self, c: CLIPConfig) -> None:
        super().__init__()
        w = c.vision_width
        self.patch = c.vision_patch
        self.grid = c.vision_grid
        self.conv1 = nn.Conv2d(3, w, kernel_size=c.vision_patch, stride=c.vision_patch, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(w) * w**-0.5)
        self.positional_embedding = nn.Parameter(torch.randn(c.vision_grid**2 + 1, w) * w**-0.5)
        self.ln_pre = nn.LayerNorm(w)
        self.transformer = Transformer(w, c.vision_layers, c.vision_heads, c.vision_mlp, c.activation, c.layer_scale)
        self.ln_post = nn.LayerNorm(w)
        self.proj = nn.Parameter(torch.randn(w, c.embed_dim) * w**-0.5)

    def position_embedding(self, rows: int, cols: int) -> torch.Tensor:
        """Position embedding ``(1 + rows * cols, W)`` for a ``rows x cols`` patch grid.

        If the grid fits in the trained ``G x G`` grid, the top-left ``rows x cols`` block is taken (for a 32x128
        crop and patch 16: rows 0-1, columns 0-7, as CLIP-OCR does); otherwise the ``G x G`` grid is resized
        bicubically to ``rows x cols``. The class position is kept as is.
        """
        pos = self.positional_embedding
        g = self.grid
        cls, grid = pos[:1], pos[1:].reshape(g, g, -1)
        if rows <= g and cols <= g:
            grid = grid[:rows, :cols]
        else:
            grid = F.interpolate(grid.permute(2, 0, 1)[None], size=(rows, cols), mode="bicubic", align_corners=False)
            grid = grid[0].permute(1, 2, 0)
        return torch.cat([cls, grid.reshape(rows * cols, -1)], 0)

    def forward(
        self, images: torch.Tensor, return_layers: Sequence[int] = (), embedding: bool = True
    ) -> tuple[torch.Tensor | None, list[torch.Tensor]]:
        """Encode images.

        Args:
            images: ``(B, 3, H, W)`` normalized with :data:`CLIP_MEAN`/:data:`CLIP_STD`; ``H`` and ``W`` multiples of
                the patch size.
            return_layers: 1-based blocks whose outputs (``(B, 1 + rows * cols, W)``, class token first) are returned.
            embedding: compute the final embedding; with ``False`` the blocks after the last tap are skipped.

        Returns:
            ``(embedding (B, E) or None, taps)``: the projected class token and the requested block outputs.
        """
        h, w = images.shape[-2:]
        if h % self.patch or w % self.patch:
            raise ValueError(f"image size {h}x{w} is not a multiple of the CLIP patch size {self.patch}")
        x = self.conv1(images.to(self.conv1.weight.dtype)).flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], 1) + self.position_embedding(h // self.patch, w // self.patch).to(x.dtype)
        x, taps = self.transformer(self.ln_pre(x), False, return_layers, stop_early=not embedding)
        return (self.ln_post(x[:, 0]) @ self.proj if embedding else None), taps


class CLIPModel(nn.Module):
    """A ViT CLIP: :attr:`visual` (image tower) and a causal text transformer, with intermediate outputs.

    Its ``state_dict`` uses the OpenAI key layout, so OpenAI / OpenCLIP ViT weights load without renaming.

    Args:
        config: the shapes; see :func:`infer_clip_config` to read them from a state dict.
    """

    def __init__(self, config: CLIPConfig) -> None:
        super().__init__()
        c = config
        self.config = c
        self.visual = VisionTower(c)
        self.token_embedding = nn.Embedding(c.vocab_size, c.text_width)
        self.positional_embedding = nn.Parameter(torch.randn(c.context_length, c.text_width) * 0.01)
        self.transformer = Transformer(
            c.text_width, c.text_layers, c.text_heads, c.text_mlp, c.activation, c.layer_scale
        )
        self.ln_final = nn.LayerNorm(c.text_width)
        self.text_projection = nn.Parameter(torch.randn(c.text_width, c.embed_dim) * c.text_width**-0.5)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        nn.init.normal_(self.token_embedding.weight, std=0.02)

    def encode_image(
        self, images: torch.Tensor, return_layers: Sequence[int] = (), embedding: bool = True
    ) -> tuple[torch.Tensor | None, list[torch.Tensor]]:
        """See :meth:`VisionTower.forward`: ``(B, 3, H, W)`` -> ``(embedding (B, E), taps [(B, 1 + n, Wv)])``."""
        return self.visual(images, return_layers, embedding)

    def encode_text(
        self, ids: torch.Tensor, eot_index: torch.Tensor | None = None, return_layers: Sequence[int] = ()
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Encode token ids with the causal text transformer.

        Args:
            ids: LongTensor ``(B, T)``, ``T <= context_length`` (see :func:`.text.spell`).
            eot_index: ``(B,)`` position of the end-of-text token; default ``ids.argmax(-1)`` (EOT is the highest id).
            return_layers: 1-based blocks whose outputs ``(B, T, Wt)`` are returned.

        Returns:
            ``(embedding (B, E), taps)``: ``ln_final`` of the EOT position projected by ``text_projection``.
        """
        t = ids.shape[1]
        if t > self.config.context_length:
            raise ValueError(f"text of {t} tokens exceeds the CLIP context length {self.config.context_length}")
        x = self.token_embedding(ids) + self.positional_embedding[:t]
        x, taps = self.transformer(x, True, return_layers)
        if eot_index is None:
            eot_index = ids.argmax(-1)
        x = self.ln_final(x[torch.arange(x.shape[0], device=x.device), eot_index])
        return x @ self.text_projection, taps


# ---------------------------------------------------------------------------------------------------- loading
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
