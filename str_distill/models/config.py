"""The model configuration: everything needed to rebuild an architecture, stored in ``config.json`` and the manifest."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = ["ViTConfig"]


@dataclass
class ViTConfig:
    """Architecture of a ViT recognizer (the ``siga-vit-*`` family; formerly ``ModelConfig``): a ViT encoder with a
    CTC head and a transformer attention decoder.

    Attributes:
        arch: registry family name, e.g. ``"siga-vit-s"``.
        img_size: input ``(height, width)`` in pixels.
        patch_size: ``(height, width)`` of a patch; 4x8 on 32x128 gives an 8x16 grid of 128 tokens.
        embed_dim, depth, num_heads, mlp_ratio: the ViT encoder.
        dec_dim, dec_depth, dec_heads, dec_mlp_ratio: the attention decoder; ``dec_depth=0`` builds a CTC-only
            recognizer (no decoder).
        ctc_upsample: CTC frames per token column (16 columns x 4 = 64 frames for 25-character labels).
        charset: a built-in charset name (``"36"``, ``"62"``, ``"94"``) or the literal characters.
        max_label_length: the longest label the decoder emits.
        dropout, drop_path: regularization used during training only.
        mean, std, interpolation: preprocessing the weights were trained with.
    """

    arch: str = "siga-vit-s"
    img_size: tuple[int, int] = (32, 128)
    patch_size: tuple[int, int] = (4, 8)
    embed_dim: int = 384
    depth: int = 12
    num_heads: int = 6
    mlp_ratio: float = 4.0
    dec_dim: int = 384
    dec_depth: int = 3
    dec_heads: int = 6
    dec_mlp_ratio: float = 4.0
    ctc_upsample: int = 4
    charset: str = "94"
    max_label_length: int = 25
    dropout: float = 0.1
    drop_path: float = 0.1
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    interpolation: str = "bicubic"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.img_size = tuple(self.img_size)  # type: ignore[assignment]
        self.patch_size = tuple(self.patch_size)  # type: ignore[assignment]
        self.mean = tuple(self.mean)  # type: ignore[assignment]
        self.std = tuple(self.std)  # type: ignore[assignment]
        h, w = self.img_size
        ph, pw = self.patch_size
        if h % ph or w % pw:
            raise ValueError(f"img_size {self.img_size} is not divisible by patch_size {self.patch_size}")
        if self.embed_dim % self.num_heads or self.dec_dim % self.dec_heads:
            raise ValueError("embed_dim/dec_dim must be divisible by num_heads/dec_heads")
        if self.interpolation not in ("bilinear", "bicubic", "area", "nearest"):
            raise ValueError(f"unknown interpolation {self.interpolation!r}")

    @property
    def grid_size(self) -> tuple[int, int]:
        """Token grid ``(rows, columns)``."""
        return self.img_size[0] // self.patch_size[0], self.img_size[1] // self.patch_size[1]

    def data_config(self) -> dict[str, Any]:
        """The preprocessing the weights expect, as data (see :class:`str_distill.preprocess.Preprocessor`)."""
        h, w = self.img_size
        return {"height": h, "width": w, "resize": "stretch", "channel_order": "RGB", "mean": list(self.mean),
                "std": list(self.std), "interpolation": self.interpolation}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("img_size", "patch_size", "mean", "std"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ViTConfig:
        """Build from a dict; unknown keys raise so that a config from a newer version is never half-read."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown model config keys: {unknown}")
        return cls(**d)

_DEPRECATED = {"ModelConfig": "ViTConfig"}


def __getattr__(name: str) -> Any:
    if name in _DEPRECATED:  # the family's old name, kept working
        import warnings

        warnings.warn(f"{name} is deprecated; use {_DEPRECATED[name]}", DeprecationWarning, stacklevel=2)
        return globals()[_DEPRECATED[name]]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
