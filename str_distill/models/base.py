"""The contract every recognizer family implements, and the outputs its passes return.

A family is a pure ``nn.Module`` (:class:`~str_distill.models.ViTRecognizer`,
:class:`~str_distill.models.PPOCRRecognizer`) that satisfies :class:`RecognizerNet`: the predictor, the
evaluation, the trainer and the exporters talk to a network only through these members, never through its class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch

from ..tokenizer import Tokenizer

__all__ = ["DecoderOutput", "RecognizerNet", "TrainOutput"]


@dataclass
class DecoderOutput:
    """What an inference pass returns.

    Attributes:
        logits: ``(B, T, num_classes)``: CTC frames, or decoder positions (position ``t`` predicts character
            ``t + 1`` or EOS).
        hidden: per decoder layer, the query stream ``(B, T, D)`` (used by distillation).
        attn: last layer's cross-attention over the encoder tokens averaged over heads, ``(B, T, N)``, if asked.
        ids: ``(B, T)`` class indices of the chosen reading, when it is not the argmax of ``logits`` (joint
            reading: the CTC or the attention reading, rescored); ``logits`` then score those classes.
    """

    logits: torch.Tensor
    hidden: list[torch.Tensor] = field(default_factory=list)
    attn: torch.Tensor | None = None
    ids: torch.Tensor | None = None


@dataclass
class TrainOutput:
    """Teacher-forced outputs for one batch (``forward_train``).

    Attributes:
        memory: encoder tokens or frames ``(B, N, D)``.
        taps: encoder block outputs that were asked for, each ``(B, N, D)``.
        ctc_logits: ``(B, F, num_classes)``.
        ar, parallel, cloze: decoder outputs over ``L + 1`` positions, ``L`` the longest label in the batch
            (``None`` for CTC-only models).
    """

    memory: torch.Tensor
    taps: list[torch.Tensor]
    ctc_logits: torch.Tensor
    ar: DecoderOutput | None
    parallel: DecoderOutput | None
    cloze: DecoderOutput | None


@runtime_checkable
class RecognizerNet(Protocol):
    """A recognizer network of any family.

    Attributes:
        config: the architecture (a dataclass with ``arch``, ``to_dict()`` and ``data_config()``: the preprocessing
            the weights expect, as data).
        tokenizer: classes <-> text, shared by CTC and attention decoding.
        decodings: the reading methods it supports, its default first (``"ctc"``, ``"attention"``, ``"joint"``).
        parts: parameter-name prefixes of the parts that training can hold fixed.
    """

    config: Any
    tokenizer: Tokenizer
    decodings: tuple[str, ...]
    parts: dict[str, tuple[str, ...]]

    def forward(self, images: torch.Tensor, decoding: str = ..., mode: str = "autoregressive",
                refine_iters: int = 1, return_attn: bool = False) -> DecoderOutput:
        """``(B, 3, H, W)`` normalized images -> :class:`DecoderOutput`."""
        ...

    def forward_train(self, images: torch.Tensor, targets: torch.Tensor | None = None,
                      passes: tuple[str, ...] = ..., return_layers: tuple[int, ...] = ()) -> TrainOutput:
        """Teacher-forced training pass."""
        ...

    def num_parameters(self) -> int:
        """Parameter count."""
        ...
