"""The recognizer network: ViT encoder + CTC head + attention decoder, as a pure ``nn.Module``.

Images in, logits out. Image loading, resizing, batching, device and dtype live in :mod:`str_distill.predictor`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..tokenizer import Tokenizer
from .config import ModelConfig
from .decoder import AttentionDecoder, CTCHead, DecoderOutput
from .vit import VisionTransformer

__all__ = ["STRModel", "TrainOutput"]


@dataclass
class TrainOutput:
    """Teacher-forced outputs for one batch (see :meth:`STRModel.forward_train`).

    Attributes:
        memory: encoder tokens ``(B, N, D)``.
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


class STRModel(nn.Module):
    """Scene-text recognizer.

    Args:
        config: the architecture; :attr:`tokenizer` is derived from its charset and max label length.
    """

    decodings: tuple[str, ...] = ("attention", "ctc")
    #: parameter-name prefixes of the parts that ``--freeze`` can hold fixed
    parts: dict[str, tuple[str, ...]] = {"encoder": ("encoder.",), "ctc_head": ("ctc_head.",),
                                         "decoder": ("decoder.",)}

    def __init__(self, config: ModelConfig) -> None:
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
            self.parts = {k: v for k, v in STRModel.parts.items() if k != "decoder"}
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
        dec = self._attention_decoder()
        mkv = dec.memory_kv(memory)
        tokens = torch.full((memory.shape[0], 1), tok.BOS, dtype=torch.long, device=memory.device)
        cache: list[tuple[torch.Tensor, torch.Tensor]] = []
        logits, attns = [], []
        for t in range(steps):
            if use_cache:
                new = dec.content_kv(tokens[:, t : t + 1], start=t)
                if t == 0:
                    cache = new
                else:
                    cache = [(torch.cat([k, nk], 2), torch.cat([v, nv], 2)) for (k, v), (nk, nv) in zip(cache, new)]
                ckv = cache
            else:
                ckv = dec.content_kv(tokens, start=0)
            out = dec(ckv, mkv, start=t, length=1, return_attn=return_attn)
            logits.append(out.logits)
            if out.attn is not None:
                attns.append(out.attn)
            nxt = out.logits.argmax(-1)
            tokens = torch.cat([tokens, nxt], 1)
            if bool((tokens[:, 1:] == tok.EOS).any(1).all()):
                break
        return DecoderOutput(torch.cat(logits, 1), [], torch.cat(attns, 1) if attns else None)

    def decode_parallel(self, memory: torch.Tensor, refine_iters: int = 1, return_attn: bool = False) -> DecoderOutput:
        """Non-autoregressive pass (all positions at once) followed by ``refine_iters`` cloze refinements.

        Returns:
            logits ``(B, max_length + 1, num_classes)``; ``attn`` ``(B, max_length + 1, N)`` if asked.
        """
        tok, dec = self.tokenizer, self._attention_decoder()
        b, steps = memory.shape[0], tok.max_length + 1
        mkv = dec.memory_kv(memory)
        bos = torch.full((b, 1), tok.BOS, dtype=torch.long, device=memory.device)
        out = dec(dec.content_kv(bos), mkv, start=0, length=steps, return_attn=return_attn)
        for _ in range(refine_iters):
            ids = out.logits.argmax(-1)[:, :-1]
            after_eos = (ids == tok.EOS).cumsum(1) - (ids == tok.EOS).long() > 0
            content = torch.cat([bos, ids.masked_fill(after_eos, tok.PAD)], 1)
            mask = cloze_mask(content, tok.PAD)
            out = dec(dec.content_kv(content), mkv, start=0, length=steps, mask=mask, return_attn=return_attn)
        return out

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
        dec, pad = self.decoder, self.tokenizer.PAD
        mkv = dec.memory_kv(memory)
        content = targets[:, :-1]
        steps = content.shape[1]
        ckv = dec.content_kv(content)
        keep = (content != pad)[:, None, None, :]
        causal = torch.ones(steps, steps, dtype=torch.bool, device=images.device).tril()
        ar = dec(ckv, mkv, 0, steps, mask=causal & keep)
        parallel = cloze = None
        if "parallel" in passes:
            parallel = dec([(k[:, :, :1], v[:, :, :1]) for k, v in ckv], mkv, 0, steps)
        if "cloze" in passes:
            cloze = dec(ckv, mkv, 0, steps, mask=cloze_mask(content, pad))
        return TrainOutput(memory, list(taps), self.ctc_logits(memory), ar, parallel, cloze)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def cloze_mask(content: torch.Tensor, pad: int) -> torch.Tensor:
    """``(B, 1, S, S)`` bool: query ``t`` sees every non-PAD content key except ``t + 1`` (its own target)."""
    s = content.shape[1]
    idx = torch.arange(s, device=content.device)
    allowed = idx[None, :] != (idx[:, None] + 1)
    return allowed[None, None] & (content != pad)[:, None, None, :]


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
