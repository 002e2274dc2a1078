"""PP-OCRv6 small text recognizer (PPLCNetV4-style backbone + LightSVTR neck + CTC head), as a pure ``nn.Module``.

The layers follow the deployed (inference) form of the published network: every backbone BatchNorm is folded into
its convolution's bias and each block's parallel depthwise branches are merged into one 3x3 convolution, so the
backbone is convolutions with biases only. The neck keeps its three BatchNorms. Weights come from the published ONNX
file through :mod:`str_distill.hub.convert_ppocr`; the code here is written from that graph.

Input ``(B, 3, 48, W)`` normalized BGR images (``W`` a multiple of 8); output CTC logits ``(B, W / 8, classes)``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..tokenizer import Tokenizer, resolve_charset
from .base import TrainOutput
from .decoder import (
    AttentionDecoder,
    DecoderOutput,
    decode_autoregressive,
    decode_parallel,
    sequence_log_probs,
    teacher_forced,
)

__all__ = ["PPOCRConfig", "PPOCRRecognizer"]


@dataclass
class PPOCRConfig:
    """Architecture and input description of a PP-OCR-style CTC recognizer.

    Attributes:
        arch: registry family name, e.g. ``"ppocrv6-small"``.
        stem_channels: widths of the stem's first convolution and of its 2x2 branch.
        channels: width of each backbone stage.
        depths: blocks per stage (the first block of stages 2.. is the stride ``(2, 1)`` down-sampling block).
        se_blocks: for each stage, the 0-based indices of the blocks with squeeze-and-excitation.
        neck_dim, neck_depth, neck_heads, neck_mlp_ratio, neck_kernel: the LightSVTR neck.
        charset: a built-in charset name (``"ppocrv6"``, ``"ppocrv6-en"``, ...) or the literal characters.
        height: input height in pixels; the width varies (see ``min_width``, ``max_width``, ``width_multiple``).
        min_width: images narrower than this after resizing to ``height`` are zero-padded on the right up to it.
        max_width: cap on the resized width; wider images are squeezed horizontally to it.
        width_multiple: padded widths are rounded up to a multiple of this (the CTC frame stride is 8).
        channel_order: ``"BGR"`` or ``"RGB"``: the channel order the weights were trained on.
        mean, std, interpolation: normalization and resize filter (``"cv2_linear"``: bilinear without
            antialiasing, as OpenCV's ``INTER_LINEAR``).
        max_label_length: the longest text the CTC decoder returns.
        dec_depth: layers of the optional attention decoder over the neck's frames (0: CTC only, no decoder).
        dec_dim, dec_heads, dec_mlp_ratio: the decoder's width, heads and MLP ratio.
        dec_max_length: the longest text the attention decoder reads (its number of positions minus one).
        dec_charset: the decoder's own charset when it reads fewer characters than the CTC head (``""``: the same
            charset); it must be the first characters of ``charset`` (``"ppocrv6-en"`` for ``"ppocrv6"``), so a
            class means the same character in both heads.
        joint_ctc_weight: joint reading (``decoding="joint"``): a candidate's score is its log-probability under
            the decoder plus this weight times its log-probability under CTC.
        default_decoding: what ``decoding=None`` reads with: ``"ctc"``, or with a decoder ``"attention"`` or
            ``"joint"``.
        extra: free-form notes carried with the config.
    """

    arch: str = "ppocrv6-small"
    stem_channels: tuple[int, int] = (48, 24)
    channels: tuple[int, ...] = (96, 192, 384)
    depths: tuple[int, ...] = (3, 7, 3)
    se_blocks: tuple[tuple[int, ...], ...] = ((0,), (1, 3, 5), (1,))
    neck_dim: int = 120
    neck_depth: int = 2
    neck_heads: int = 8
    neck_mlp_ratio: float = 2.0
    neck_kernel: int = 7
    charset: str = "ppocrv6"
    height: int = 48
    min_width: int = 320
    max_width: int = 1600
    width_multiple: int = 8
    channel_order: str = "BGR"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    interpolation: str = "cv2_linear"
    max_label_length: int = 200
    dec_depth: int = 0
    dec_dim: int = 192
    dec_heads: int = 6
    dec_mlp_ratio: float = 4.0
    dec_max_length: int = 25
    dec_charset: str = ""
    joint_ctc_weight: float = 1.0
    default_decoding: str = "ctc"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.stem_channels = tuple(self.stem_channels)  # type: ignore[assignment]
        self.channels = tuple(self.channels)
        self.depths = tuple(self.depths)
        self.se_blocks = tuple(tuple(s) for s in self.se_blocks)
        self.mean = tuple(self.mean)  # type: ignore[assignment]
        self.std = tuple(self.std)  # type: ignore[assignment]
        if not (len(self.channels) == len(self.depths) == len(self.se_blocks)):
            raise ValueError("channels, depths and se_blocks need one entry per stage")
        if self.neck_dim % self.neck_heads:
            raise ValueError(f"neck_dim {self.neck_dim} is not divisible by neck_heads {self.neck_heads}")
        if self.channel_order not in ("BGR", "RGB"):
            raise ValueError(f"channel_order must be 'BGR' or 'RGB', got {self.channel_order!r}")
        if not 0 < self.min_width <= self.max_width or self.width_multiple < 1:
            raise ValueError("need 0 < min_width <= max_width and width_multiple >= 1")
        if self.height % 16:
            raise ValueError(f"height must be a multiple of 16, got {self.height}")
        if self.dec_depth < 0 or (self.dec_depth and self.dec_dim % self.dec_heads):
            raise ValueError(f"need dec_depth >= 0 and dec_dim {self.dec_dim} divisible by dec_heads {self.dec_heads}")
        if self.dec_charset and not resolve_charset(self.charset).startswith(resolve_charset(self.dec_charset)):
            raise ValueError(f"dec_charset {self.dec_charset!r} must be the first characters of charset "
                             f"{self.charset!r}")
        allowed = ("ctc", "attention", "joint") if self.dec_depth else ("ctc",)
        if self.default_decoding not in allowed:
            raise ValueError(f"default_decoding must be one of {allowed} (dec_depth {self.dec_depth}), "
                             f"got {self.default_decoding!r}")

    @property
    def decodings(self) -> tuple[str, ...]:
        """The reading methods of this architecture, ``default_decoding`` first."""
        names = ("ctc", "attention", "joint") if self.dec_depth else ("ctc",)
        return (self.default_decoding, *(n for n in names if n != self.default_decoding))

    def data_config(self) -> dict[str, Any]:
        """The preprocessing the weights expect, as data (see :class:`str_distill.preprocess.Preprocessor`)."""
        return {
            "height": self.height, "width": None, "resize": "keep_ratio_pad", "min_width": self.min_width,
            "max_width": self.max_width, "width_multiple": self.width_multiple, "channel_order": self.channel_order,
            "mean": list(self.mean), "std": list(self.std), "interpolation": self.interpolation,
            "pad_value": 0.0,
        }

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("stem_channels", "channels", "depths", "mean", "std"):
            d[k] = list(d[k])
        d["se_blocks"] = [list(s) for s in self.se_blocks]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PPOCRConfig:
        """Build from a dict; unknown keys raise so that a config from a newer version is never half-read."""
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys: {unknown}")
        return cls(**d)


class _Conv(nn.Sequential):
    """Convolution (bias from a folded BatchNorm) + optional activation."""

    def __init__(self, cin: int, cout: int, k: int, stride: int | tuple[int, int] = 1, groups: int = 1,
                 act: nn.Module | None = None) -> None:
        super().__init__(nn.Conv2d(cin, cout, k, stride, k // 2 if k % 2 else 0, groups=groups, bias=True))
        if act is not None:
            self.append(act)


class _SE(nn.Module):
    """Squeeze-and-excitation: channel gates from the spatial mean, hard-sigmoid (slope 1/6, offset 0.5)."""

    def __init__(self, c: int, reduction: int = 4) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(c, c // reduction, 1)
        self.expand = nn.Conv2d(c // reduction, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.relu(self.reduce(x.mean((2, 3), keepdim=True)))
        return x * F.hardsigmoid(self.expand(s))  # torch's hardsigmoid is relu6(x + 3) / 6: slope 1/6, offset 0.5


class _Block(nn.Module):
    """Depthwise 3x3 (+ SE) token mixer, then a 1x1 -> GELU -> 1x1 channel mixer with a residual.

    A down-sampling block (``stride=(2, 1)`` or a width change) has no residual.
    """

    def __init__(self, cin: int, cout: int, stride: tuple[int, int], se: bool) -> None:
        super().__init__()
        self.dw = nn.Conv2d(cin, cin, 3, stride, 1, groups=cin)
        self.se = _SE(cin) if se else nn.Identity()
        self.pw1 = nn.Conv2d(cin, 2 * cin, 1)
        self.pw2 = nn.Conv2d(2 * cin, cout, 1)
        self.residual = stride == (1, 1) and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.se(self.dw(x))
        z = self.pw2(F.gelu(self.pw1(y)))
        return y + z if self.residual else z


class _Stem(nn.Module):
    """3x3/2 conv, then [2x2 max-pool | 2x2 conv -> 2x2 conv] concatenated, 3x3/2 conv, 1x1 conv: stride 4."""

    def __init__(self, c1: int, c_half: int, cout: int) -> None:
        super().__init__()
        self.conv1 = _Conv(3, c1, 3, 2, act=nn.ReLU())
        self.branch1 = _Conv(c1, c_half, 2, act=nn.ReLU())
        self.branch2 = _Conv(c_half, c1, 2, act=nn.ReLU())
        self.conv2 = _Conv(2 * c1, c1, 3, 2, act=nn.ReLU())
        self.conv3 = _Conv(c1, cout, 1, act=nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        p = F.pad(x, (0, 1, 0, 1))  # 2x2 kernels at stride 1, padded right and bottom ("SAME_UPPER")
        # max-pool as the max of four shifted views (x >= 0 after ReLU, so zero padding changes nothing)
        pooled = torch.maximum(torch.maximum(p[..., :-1, :-1], p[..., :-1, 1:]), torch.maximum(p[..., 1:, :-1],
                                                                                                   p[..., 1:, 1:]))
        b = self.branch1(p)
        b = self.branch2(F.pad(b, (0, 1, 0, 1)))
        return self.conv3(self.conv2(torch.cat([pooled, b], 1)))


class _ConvBNAct(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: tuple[int, int], groups: int = 1) -> None:
        pad = (kernel[0] // 2, kernel[1] // 2)
        super().__init__(nn.Conv2d(cin, cout, kernel, 1, pad, groups=groups, bias=False), nn.BatchNorm2d(cout),
                         nn.SiLU())


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class _TransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn = _Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.SiLU(), nn.Dropout(0.0), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _LightSVTRNeck(nn.Module):
    """Two 1x1 conv branches (skip, main); the main one gets a depthwise 1xk conv residual and transformer blocks."""

    def __init__(self, cin: int, dim: int, depth: int, heads: int, mlp_ratio: float, kernel: int) -> None:
        super().__init__()
        self.skip = _ConvBNAct(cin, dim, (1, 1))
        self.proj = _ConvBNAct(cin, dim, (1, 1))
        self.local = _ConvBNAct(dim, dim, (1, kernel), groups=dim)
        self.blocks = nn.ModuleList(_TransformerBlock(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, 1, T)`` -> ``(B, T, dim)``."""
        skip = self.skip(x)
        z = self.proj(x)
        z = z + self.local(z)
        z = z.flatten(2).transpose(1, 2)
        for blk in self.blocks:
            z = blk(z)
        return self.norm(z) + skip.flatten(2).transpose(1, 2)


def _frame_positions(t: int, dim: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Sinusoidal encoding of frame indices ``0..t-1``: ``(1, t, dim)`` (defined for any width)."""
    pos = torch.arange(t, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    out = torch.zeros(t, dim, device=device, dtype=torch.float32)
    out[:, 0::2] = torch.sin(pos * freq)
    out[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return out[None].to(dtype)


class PPOCRRecognizer(nn.Module):
    """PP-OCR-style recognizer: CTC head, and optionally an attention decoder over the same frames.

    With ``config.dec_depth > 0`` the neck's frames ``(B, T, neck_dim)`` (plus a sinusoidal frame position, scaled
    by a learned factor) are also the memory of an :class:`~str_distill.models.decoder.AttentionDecoder` (the
    PARSeq-style two-stream decoder of the ViT family, the same passes), so the model reads with ``"ctc"``,
    ``"attention"`` (autoregressive or parallel with refinement) or ``"joint"`` (both readings, rescored).

    Args:
        config: the architecture; :attr:`tokenizer` is derived from its charset (class 0 is the CTC blank).
    """

    #: inference runs in channels-last memory format (faster for these convolutions on CPU)
    channels_last: bool = True

    def __init__(self, config: PPOCRConfig) -> None:
        super().__init__()
        self.config = c = config
        self.tokenizer = Tokenizer(c.charset, c.max_label_length)
        self.decodings: tuple[str, ...] = c.decodings
        self.stem = _Stem(c.stem_channels[0], c.stem_channels[1], c.channels[0])
        stages: list[nn.Module] = []
        cin = c.channels[0]
        for s, (cout, depth, se) in enumerate(zip(c.channels, c.depths, c.se_blocks)):
            blocks = []
            for i in range(depth):
                down = s > 0 and i == 0
                blocks.append(_Block(cin, cout, (2, 1) if down else (1, 1), i in se))
                cin = cout
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.neck = _LightSVTRNeck(cin, c.neck_dim, c.neck_depth, c.neck_heads, c.neck_mlp_ratio, c.neck_kernel)
        self.head = nn.Linear(c.neck_dim, self.tokenizer.num_classes)
        self.decoder: AttentionDecoder | None = None
        self.parts = dict(PPOCRRecognizer.parts)
        #: the decoder's tokens (its own charset, or the CTC tokenizer)
        self.dec_tokenizer = Tokenizer(c.dec_charset, c.max_label_length) if c.dec_charset else self.tokenizer
        if c.dec_depth:
            tok = self.dec_tokenizer
            self.pos_scale = nn.Parameter(torch.tensor(0.1))
            self.decoder = AttentionDecoder(tok.num_classes, tok.num_input_tokens, c.dec_dim, c.dec_depth,
                                            c.dec_heads, c.dec_mlp_ratio, c.dec_max_length, c.neck_dim)
            self.decoder.apply(_init_decoder_weights)
            self.parts["decoder"] = ("decoder.", "pos_scale")

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> neck features ``(B, W / 8, neck_dim)``, one per CTC frame."""
        x = self.stages(self.stem(images))
        pool = (x.shape[2], 2)  # (3, 2) at height 48: the feature map's full height
        x = F.avg_pool2d(x, pool, pool)
        return self.neck(x)

    def decoder_memory(self, feats: torch.Tensor) -> torch.Tensor:
        """Neck features ``(B, T, neck_dim)`` -> the decoder's memory (same shape, frame positions added)."""
        b, t, d = feats.shape
        return feats + self.pos_scale * _frame_positions(t, d, feats.device, feats.dtype)

    def attention_grid(self, num_tokens: int) -> tuple[int, int]:
        """How the ``num_tokens`` memory positions of an attention map lie on the image: one row of frames."""
        return 1, num_tokens

    def _attention_decoder(self) -> AttentionDecoder:
        if self.decoder is None:
            raise ValueError(f"{self.config.arch} reads with CTC only (decoding='ctc'); it has no attention decoder")
        return self.decoder

    def read_attention(self, memory: torch.Tensor, mode: str = "autoregressive", refine_iters: int = 1,
                       return_attn: bool = False) -> DecoderOutput:
        """Attention decoding of decoder memory ``(B, T, neck_dim)`` (see :meth:`decoder_memory`)."""
        tok, dec, steps = self.dec_tokenizer, self._attention_decoder(), self.config.dec_max_length + 1
        if mode == "parallel":
            out = decode_parallel(dec, tok.BOS, tok.EOS, tok.PAD, memory, steps, refine_iters, return_attn)
        elif mode == "autoregressive":
            out = decode_autoregressive(dec, tok.BOS, tok.EOS, memory, steps, return_attn=return_attn)
        else:
            raise ValueError(f"mode must be 'autoregressive' or 'parallel', got {mode!r}")
        out.logits = self._all_classes(out.logits)
        return out

    def _all_classes(self, logits: torch.Tensor) -> torch.Tensor:
        """Decoder logits ``(B, S, Cd)`` -> ``(B, S, C)`` over the CTC head's classes (``-inf`` beyond ``Cd``)."""
        extra = self.tokenizer.num_classes - logits.shape[-1]
        return F.pad(logits, (0, extra), value=float("-inf")) if extra else logits

    def _decoder_targets(self, targets: torch.Tensor) -> torch.Tensor:
        """Targets ``[BOS, chars, EOS, PAD...]`` of :attr:`tokenizer` -> the same in :attr:`dec_tokenizer`'s ids
        (characters the decoder does not read become PAD: no loss there)."""
        tok, dt = self.tokenizer, self.dec_tokenizer
        if dt is tok:
            return targets
        out = targets.masked_fill(targets >= dt.num_classes, dt.PAD)
        return out.masked_fill(targets == tok.BOS, dt.BOS)

    def joint_candidates(self, feats: torch.Tensor, ctc_logits: torch.Tensor, mode: str = "autoregressive",
                         refine_iters: int = 1) -> dict[str, Any]:
        """The two readings joint decoding chooses between, and their scores.

        Args:
            feats: neck features ``(B, T, neck_dim)``; ctc_logits: ``(B, T, C)``.

        Returns:
            ``cands``: ``2B`` lists of class ids, the greedy CTC readings then the attention readings;
            ``probs``: their per-character probabilities under the head that read them; ``att_lp`` and ``ctc_lp``
            ``(2B,)``: each reading's log-probability under the decoder and under CTC; ``att_eos`` ``(2B,)``: the
            decoder's end-of-sequence probability after each reading; ``scorable`` ``(2B,)`` bool: False for a CTC
            reading with characters the decoder does not read (its ``att_lp`` is ``-inf``).
        """
        tok, dt, b, dev = self.tokenizer, self.dec_tokenizer, feats.shape[0], feats.device
        n = self.config.dec_max_length
        memory = self.decoder_memory(feats)
        att = self.read_attention(memory, mode, refine_iters).logits.float().softmax(-1)
        att_p, att_ids = att.max(-1)
        ctc_p, ctc_ids = ctc_logits.float().softmax(-1).max(-1)
        read_ctc = [_ctc_greedy(i, p, tok.BLANK, n) for i, p in zip(ctc_ids.tolist(), ctc_p.tolist())]
        read_att = [_until_eos(i, p, dt.EOS, n) for i, p in zip(att_ids.tolist(), att_p.tolist())]
        cands = [c for c, _ in read_ctc] + [c for c, _ in read_att]
        scorable = torch.tensor([all(i < dt.num_classes for i in c) for c in cands], device=dev)
        targets = _targets([c if ok else [] for c, ok in zip(cands, scorable.tolist())], dt.BOS, dt.EOS, dt.PAD, dev)
        att_lp, logits = sequence_log_probs(self._attention_decoder(), torch.cat([memory, memory], 0), targets,
                                            dt.PAD)
        lengths = torch.tensor([len(c) for c in cands], dtype=torch.long, device=dev)
        eos_lp = logits.float().log_softmax(-1)[torch.arange(2 * b, device=dev), lengths.clamp(max=logits.shape[1] - 1),
                                                 dt.EOS]
        logp = ctc_logits.float().log_softmax(-1).transpose(0, 1)
        labels = _targets(cands, 0, 0, 0, dev)[:, 1:-1]
        if labels.shape[1] == 0:
            labels = torch.zeros(2 * b, 1, dtype=torch.long, device=dev)
        frames = torch.full((2 * b,), logp.shape[0], dtype=torch.long, device=dev)
        ctc_lp = -F.ctc_loss(torch.cat([logp, logp], 1), labels, frames, lengths, blank=tok.BLANK, reduction="none")
        return {"cands": cands, "probs": [p for _, p in read_ctc] + [p for _, p in read_att],
                "att_lp": att_lp.masked_fill(~scorable, float("-inf")), "ctc_lp": ctc_lp,
                "att_eos": eos_lp.exp(), "scorable": scorable}

    def read_joint(self, feats: torch.Tensor, ctc_logits: torch.Tensor, mode: str = "autoregressive",
                   refine_iters: int = 1) -> DecoderOutput:
        """Joint reading: the greedy CTC reading and the attention reading (:meth:`joint_candidates`), each scored
        by ``log p_attention + joint_ctc_weight * log p_ctc``; the higher score wins, sample by sample (a CTC
        reading the decoder cannot score is kept).

        Returns:
            :class:`DecoderOutput` with ``ids`` ``(B, L + 1)`` the chosen readings (EOS-terminated, EOS-padded) and
            ``logits`` ``(B, L + 1, C)`` whose softmax gives each chosen character the probability of the head that
            read it (and, for an attention reading, the decoder's end-of-sequence probability after it).
        """
        tok, b, dev = self.tokenizer, feats.shape[0], feats.device
        c = self.joint_candidates(feats, ctc_logits, mode, refine_iters)
        score = c["att_lp"] + self.config.joint_ctc_weight * c["ctc_lp"]
        pick_att = (score[b:] > score[:b]) & c["scorable"][:b]
        rows = [i + b * int(a) for i, a in enumerate(pick_att.tolist())]
        width = max((len(c["cands"][r]) for r in rows), default=0) + 1
        ids = torch.full((b, width), tok.EOS, dtype=torch.long, device=dev)
        probs = torch.ones(b, width, device=dev)
        for i, r in enumerate(rows):
            seq = c["cands"][r]
            if seq:
                ids[i, : len(seq)] = torch.tensor(seq, device=dev)
                probs[i, : len(seq)] = torch.tensor(c["probs"][r], device=dev)
            if r >= b:
                probs[i, len(seq)] = c["att_eos"][r]
        probs = probs.clamp(1e-6, 1 - 1e-6)
        rest = ((1 - probs) / (tok.num_classes - 1)).log()
        logits = rest[..., None].expand(b, width, tok.num_classes).clone()
        logits.scatter_(-1, ids[..., None], probs.log()[..., None])
        return DecoderOutput(logits, [], None, ids)

    def forward(
        self,
        images: torch.Tensor,
        decoding: Literal["ctc", "attention", "joint"] = "ctc",
        mode: str = "autoregressive",
        refine_iters: int = 1,
        return_attn: bool = False,
    ) -> DecoderOutput:
        """Inference: ``(B, 3, H, W)`` normalized images -> :class:`DecoderOutput`.

        ``"ctc"``: CTC logits ``(B, T, C)``. ``"attention"`` (models with a decoder): decoder logits
        ``(B, S, C)``, ``mode="autoregressive"`` or ``"parallel"`` (+ ``refine_iters`` refinements),
        cross-attention ``(B, S, T)`` with ``return_attn``. ``"joint"``: see :meth:`read_joint`.
        """
        if decoding not in self.decodings:
            self._attention_decoder()  # a CTC-only model says so
            raise ValueError(f"{self.config.arch} cannot decode with {decoding!r}: it supports "
                             f"{', '.join(self.decodings)}")
        if return_attn and decoding != "attention":
            raise ValueError(f"return_attn needs decoding='attention' (got {decoding!r})")
        feats = self.features(images)
        if decoding == "ctc":
            return DecoderOutput(self.head(feats))
        if decoding == "attention":
            return self.read_attention(self.decoder_memory(feats), mode, refine_iters, return_attn)
        return self.read_joint(feats, self.head(feats), mode, refine_iters)

    def forward_train(
        self,
        images: torch.Tensor,
        targets: torch.Tensor | None = None,
        passes: tuple[str, ...] = ("ar", "parallel", "cloze"),
        return_layers: tuple[int, ...] = (),
    ) -> TrainOutput:
        """Training forward: CTC logits, the neck features and, with a decoder, its teacher-forced passes.

        Args:
            images: ``(B, 3, H, W)``.
            targets: ``(B, L + 2)`` from :meth:`Tokenizer.encode` (needed with a decoder; ignored without).
            passes: decoder passes (``"ar"`` always runs with a decoder).
            return_layers: must be empty (feature taps are a ViT-encoder notion).

        Returns:
            :class:`TrainOutput` with ``memory`` the neck features ``(B, T, neck_dim)``, ``ctc_logits``
            ``(B, T, C)`` and ``ar``/``parallel``/``cloze`` (``None`` without a decoder).
        """
        if return_layers:
            raise ValueError(f"{self.config.arch} has no encoder blocks to tap (return_layers={return_layers})")
        feats = self.features(images)
        if self.decoder is None or targets is None:
            return TrainOutput(feats, [], self.head(feats), None, None, None)
        dt = self.dec_tokenizer
        ar, parallel, cloze, _ = teacher_forced(self.decoder, self.decoder_memory(feats),
                                                self._decoder_targets(targets), dt.PAD, dt.EOS, passes)
        return TrainOutput(feats, [], self.head(feats), ar, parallel, cloze)

    #: layers whose rows are the output classes (a charset change keeps the rows of shared characters)
    charset_rows: tuple[str, ...] = ("head",)
    #: parameter-name prefixes of the parts that ``--freeze`` can hold fixed
    parts: dict[str, tuple[str, ...]] = {"backbone": ("stem.", "stages."), "neck": ("neck.",), "head": ("head.",)}

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def _init_decoder_weights(m: nn.Module) -> None:
    if isinstance(m, (nn.Linear, nn.Embedding)):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if getattr(m, "bias", None) is not None:
            nn.init.zeros_(m.bias)


def _until_eos(ids: list[int], probs: list[float], eos: int, max_length: int) -> tuple[list[int], list[float]]:
    """One sample's attention argmax ids and their probabilities -> the characters before the first EOS."""
    n = min(ids.index(eos) if eos in ids else len(ids), max_length)
    return ids[:n], probs[:n]


def _ctc_greedy(ids: list[int], probs: list[float], blank: int, max_length: int) -> tuple[list[int], list[float]]:
    """One sample's frame argmax ids and probabilities -> the collapsed, blank-free classes and, per character, the
    highest probability among the frames that emitted it (as :meth:`Tokenizer.decode` does)."""
    seq: list[int] = []
    out: list[float] = []
    prev = -1
    for i, p in zip(ids, probs):
        if i != prev and i != blank:
            seq.append(i)
            out.append(p)
        elif i == prev and i != blank:
            out[-1] = max(out[-1], p)
        prev = i
    return seq[:max_length], out[:max_length]


def _targets(seqs: list[list[int]], bos: int, eos: int, pad: int, device: torch.device) -> torch.Tensor:
    """``[BOS, ids, EOS, PAD...]`` rows ``(B, max_len + 2)``."""
    width = max((len(x) for x in seqs), default=0) + 2
    out = torch.full((len(seqs), width), pad, dtype=torch.long)
    for i, seq in enumerate(seqs):
        out[i, 0] = bos
        out[i, 1 : len(seq) + 1] = torch.tensor(seq, dtype=torch.long)
        out[i, len(seq) + 1] = eos
    return out.to(device)
