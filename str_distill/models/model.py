"""The recognizer network: ViT encoder + CTC head + attention decoder, as a pure ``nn.Module``.

Images in, logits out. Image loading, resizing, batching, device and dtype live in :mod:`str_distill.predictor`.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from ..tokenizer import Tokenizer
from .base import TrainOutput
from .config import ViTConfig
from .decoder import (
    AttentionDecoder,
    CTCHead,
    DecoderOutput,
    cloze_mask,
    decode_autoregressive,
    decode_parallel,
    teacher_forced,
)
from .vit import VisionTransformer

__all__ = ["ViTRecognizer", "TrainOutput", "cloze_mask"]


class ViTRecognizer(nn.Module):
    """ViT scene-text recognizer (the ``siga-vit-*`` family; formerly ``STRModel``).

    Args:
        config: the architecture; :attr:`tokenizer` is derived from its charset and max label length.
    """

    decodings: tuple[str, ...] = ("attention", "ctc")
    #: parameter-name prefixes of the parts that ``--freeze`` can hold fixed
    parts: dict[str, tuple[str, ...]] = {"encoder": ("encoder.",), "ctc_head": ("ctc_head.",),
                                         "decoder": ("decoder.",)}

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.config = config
        self.tokenizer = Tokenizer(config.charset, config.max_label_length)
        c = config
        self.encoder = VisionTransformer(
            c.img_size, c.patch_size, c.embed_dim, c.depth, c.num_heads, c.mlp_ratio, c.dropout, c.drop_path
        )
        n_cls = self.tokenizer.num_classes
        self.ctc_head = CTCHead(c.embed_dim, c.grid_size, c.ctc_upsample, n_cls)
        # dec_depth 0: a CTC-only recognizer (no decoder parameters, CTC decoding only)
        self.decoder = AttentionDecoder(
            n_cls,
            self.tokenizer.num_input_tokens,
            c.dec_dim,
            c.dec_depth,
            c.dec_heads,
            c.dec_mlp_ratio,
            c.max_label_length,
            c.embed_dim,
            c.dropout,
        ) if c.dec_depth > 0 else None
        if self.decoder is None:
            self.decodings = ("ctc",)
            self.parts = {k: v for k, v in ViTRecognizer.parts.items() if k != "decoder"}
        self.apply(_init_weights)

    # ------------------------------------------------------------------------------------------ encoder / CTC
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` normalized images -> tokens ``(B, N, D)``."""
        return self.encoder(images)  # type: ignore[return-value]

    def ctc_logits(self, memory: torch.Tensor) -> torch.Tensor:
        """Tokens ``(B, N, D)`` -> CTC logits ``(B, F, num_classes)`` (one forward pass, greedy-decodable)."""
        return self.ctc_head(memory)

    # ------------------------------------------------------------------------------------------ decoding
    def _attention_decoder(self) -> AttentionDecoder:
        if self.decoder is None:
            raise ValueError(f"{self.config.arch} has no attention decoder (dec_depth 0): decode with 'ctc'")
        return self.decoder

    def decode_autoregressive(
        self, memory: torch.Tensor, max_length: int | None = None, use_cache: bool = True, return_attn: bool = False
    ) -> DecoderOutput:
        """Greedy autoregressive decoding; stops early once every sequence has emitted EOS.

        Args:
            memory: encoder tokens ``(B, N, D)``.
            use_cache: reuse the content keys/values of earlier steps (the result is the same either way).

        Returns:
            logits ``(B, T, num_classes)`` with ``T <= max_length + 1``; ``attn`` ``(B, T, N)`` if asked.
        """
        tok = self.tokenizer
        steps = min(max_length or tok.max_length, tok.max_length) + 1
        return decode_autoregressive(self._attention_decoder(), tok.BOS, tok.EOS, memory, steps, use_cache,
                                     return_attn)

    def decode_parallel(self, memory: torch.Tensor, refine_iters: int = 1, return_attn: bool = False) -> DecoderOutput:
        """Non-autoregressive pass (all positions at once) followed by ``refine_iters`` cloze refinements.

        Returns:
            logits ``(B, max_length + 1, num_classes)``; ``attn`` ``(B, max_length + 1, N)`` if asked.
        """
        tok = self.tokenizer
        return decode_parallel(self._attention_decoder(), tok.BOS, tok.EOS, tok.PAD, memory, tok.max_length + 1,
                               refine_iters, return_attn)

    def forward(
        self,
        images: torch.Tensor,
        decoding: Literal["attention", "ctc"] = "attention",
        mode: Literal["autoregressive", "parallel"] = "autoregressive",
        refine_iters: int = 1,
        return_attn: bool = False,
    ) -> DecoderOutput:
        """Inference: ``(B, 3, H, W)`` normalized images -> :class:`DecoderOutput` (logits, optional attention)."""
        memory = self.encode(images)
        if decoding == "ctc":
            return DecoderOutput(self.ctc_logits(memory))
        if decoding != "attention":
            raise ValueError(f"decoding must be 'attention' or 'ctc', got {decoding!r}")
        if mode == "parallel":
            return self.decode_parallel(memory, refine_iters, return_attn)
        if mode != "autoregressive":
            raise ValueError(f"mode must be 'autoregressive' or 'parallel', got {mode!r}")
        return self.decode_autoregressive(memory, return_attn=return_attn)

    # ------------------------------------------------------------------------------------------ training
    def forward_train(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        passes: tuple[str, ...] = ("ar", "parallel", "cloze"),
        return_layers: tuple[int, ...] = (),
    ) -> TrainOutput:
        """Teacher-forced forward for the losses.

        Args:
            images: ``(B, 3, H, W)``.
            targets: ``(B, L + 2)`` from :meth:`Tokenizer.encode` (``[BOS, chars, EOS, PAD...]``).
            passes: which decoder passes to run (``"ar"`` always runs; none without a decoder).
            return_layers: 1-based encoder blocks whose outputs go to :attr:`TrainOutput.taps`.
        """
        memory, taps = self.encoder(images, return_layers=return_layers) if return_layers else (self.encode(images), [])
        if self.decoder is None:  # CTC-only: no decoder passes
            return TrainOutput(memory, list(taps), self.ctc_logits(memory), None, None, None)
        ar, parallel, cloze, _ = teacher_forced(self.decoder, memory, targets, self.tokenizer.PAD, passes=passes)
        return TrainOutput(memory, list(taps), self.ctc_logits(memory), ar, parallel, cloze)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Embedding):
        nn.init.trunc_normal_(m.weight, std=0.02)
    elif isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight, mode="fan_out")
        if m.bias is not None:
            nn.init.zeros_(m.bias)

_DEPRECATED = {"STRModel": "ViTRecognizer"}


def __getattr__(name: str) -> Any:
    if name in _DEPRECATED:  # the family's old name, kept working
        import warnings

        warnings.warn(f"{name} is deprecated; use {_DEPRECATED[name]}", DeprecationWarning, stacklevel=2)
        return globals()[_DEPRECATED[name]]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
