"""Heads on the encoder tokens: a CTC head and a two-stream transformer attention decoder.

The attention decoder follows the query-stream design of PARSeq: position queries attend to *content* keys
(token embedding + content position) that are not updated across layers, so one network serves three passes
that differ only in their attention mask:

* autoregressive (causal mask; content keys are cached step by step: the key/value cache),
* parallel / non-autoregressive (queries see only the BOS content),
* refinement ("cloze" mask: query ``t`` sees every content key except ``t + 1``, the one holding its own target).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import DecoderOutput
from .vit import Mlp

__all__ = [
    "AttentionDecoder",
    "CTCHead",
    "DecoderOutput",
    "KVAttention",
    "cloze_mask",
    "decode_autoregressive",
    "decode_parallel",
    "permutation_mask",
    "sequence_log_probs",
    "teacher_forced",
]

KV = tuple[torch.Tensor, torch.Tensor]


class CTCHead(nn.Module):
    """Token grid -> CTC frames.

    ``(B, rows * cols, D)`` -> ``(B, cols * upsample, num_classes)`` logits: the rows of each column are
    concatenated and projected, then each column is split into ``upsample`` frames.
    """

    def __init__(self, dim: int, grid_size: tuple[int, int], upsample: int, num_classes: int) -> None:
        super().__init__()
        self.rows, self.cols = grid_size
        self.upsample = upsample
        hidden = max(dim // 2, 32)
        self.fc1 = nn.Linear(self.rows * dim, dim)
        self.fc2 = nn.Linear(dim, upsample * hidden)
        self.norm = nn.LayerNorm(hidden)
        self.classifier = nn.Linear(hidden, num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        b, _, d = tokens.shape
        x = tokens.view(b, self.rows, self.cols, d).permute(0, 2, 1, 3).reshape(b, self.cols, self.rows * d)
        x = self.fc2(F.gelu(self.fc1(x)))
        x = x.view(b, self.cols * self.upsample, -1)
        return self.classifier(self.norm(x))


class KVAttention(nn.Module):
    """Attention of queries ``(B, T, D)`` over precomputed keys/values ``(B, H, S, D/H)``."""

    def __init__(self, dim: int, num_heads: int, kv_dim: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(kv_dim or dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = dropout

    def project_kv(self, src: torch.Tensor) -> KV:
        b, s, _ = src.shape
        k, v = self.kv(src).view(b, s, 2, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        return k, v

    def forward(
        self, x: torch.Tensor, kv: KV, mask: torch.Tensor | None = None, need_weights: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``mask``: bool, broadcastable to ``(B, H, T, S)``, True where attention is allowed."""
        b, t, d = x.shape
        q = self.q(x).view(b, t, self.num_heads, -1).transpose(1, 2)
        k, v = kv
        if need_weights:
            scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            weights = scores.softmax(-1)
            out = weights @ v
            avg = weights.mean(1)
        else:
            p = self.dropout if self.training else 0.0
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
            avg = None
        return self.proj(out.transpose(1, 2).reshape(b, t, d)), avg


class DecoderLayer(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_c = nn.LayerNorm(dim)
        self.self_attn = KVAttention(dim, num_heads, dropout=dropout)
        self.norm_x = nn.LayerNorm(dim)
        self.cross_attn = KVAttention(dim, num_heads, dropout=dropout)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), dropout)
        self.drop = nn.Dropout(dropout)

    def content_kv(self, content: torch.Tensor) -> KV:
        return self.self_attn.project_kv(self.norm_c(content))

    def memory_kv(self, memory: torch.Tensor) -> KV:
        return self.cross_attn.project_kv(memory)

    def forward(
        self, q: torch.Tensor, ckv: KV, mkv: KV, mask: torch.Tensor | None, need_weights: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        q = q + self.drop(self.self_attn(self.norm_q(q), ckv, mask)[0])
        a, w = self.cross_attn(self.norm_x(q), mkv, None, need_weights)
        q = q + self.drop(a)
        return q + self.mlp(self.norm_mlp(q)), w


class AttentionDecoder(nn.Module):
    """Two-stream transformer decoder over encoder tokens.

    Args:
        num_classes: output classes (EOS + characters).
        vocab_size: input tokens (EOS + characters + BOS, PAD, MASK).
        max_length: longest label; the decoder has ``max_length + 1`` positions (the last one predicts EOS).
    """

    def __init__(
        self,
        num_classes: int,
        vocab_size: int,
        dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float,
        max_length: int,
        memory_dim: int,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.num_positions = max_length + 1
        self.tok_emb = nn.Embedding(vocab_size, dim)
        self.content_pos = nn.Parameter(torch.zeros(1, self.num_positions, dim))
        self.pos_queries = nn.Parameter(torch.zeros(1, self.num_positions, dim))
        self.mem_proj = nn.Linear(memory_dim, dim) if memory_dim != dim else nn.Identity()
        self.layers = nn.ModuleList(DecoderLayer(dim, num_heads, mlp_ratio, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        self.drop = nn.Dropout(dropout)
        nn.init.trunc_normal_(self.content_pos, std=0.02)
        nn.init.trunc_normal_(self.pos_queries, std=0.02)

    def memory_kv(self, memory: torch.Tensor) -> list[KV]:
        """Per-layer cross-attention keys/values for encoder tokens ``(B, N, D_enc)``; computed once per image."""
        memory = self.mem_proj(memory)
        return [layer.memory_kv(memory) for layer in self.layers]

    def content_kv(self, tokens: torch.Tensor, start: int = 0) -> list[KV]:
        """Per-layer self-attention keys/values for input tokens ``(B, S)`` at positions ``start..start+S-1``."""
        content = self.drop(self.tok_emb(tokens) + self.content_pos[:, start : start + tokens.shape[1]])
        return [layer.content_kv(content) for layer in self.layers]

    def forward(
        self,
        ckv: list[KV],
        mkv: list[KV],
        start: int,
        length: int,
        mask: torch.Tensor | None = None,
        return_attn: bool = False,
    ) -> DecoderOutput:
        """Run queries for positions ``start..start+length-1``.

        Args:
            ckv: content keys/values from :meth:`content_kv` (``S`` content positions).
            mkv: memory keys/values from :meth:`memory_kv`.
            mask: bool, broadcastable to ``(B, 1, length, S)``; True where a query may see a content key.
        """
        b = mkv[0][0].shape[0]
        q = self.drop(self.pos_queries[:, start : start + length].expand(b, -1, -1))
        hidden: list[torch.Tensor] = []
        attn = None
        for i, layer in enumerate(self.layers):
            q, w = layer(q, ckv[i], mkv[i], mask, need_weights=return_attn and i == len(self.layers) - 1)
            hidden.append(q)
            attn = w if w is not None else attn
        return DecoderOutput(self.head(self.norm(q)), hidden, attn)


# ---------------------------------------------------------------------------------------------- decoding passes
# One implementation of every decoder pass, shared by the model families that carry an AttentionDecoder.


def cloze_mask(content: torch.Tensor, pad: int) -> torch.Tensor:
    """``(B, 1, S, S)`` bool: query ``t`` sees every non-PAD content key except ``t + 1`` (its own target)."""
    s = content.shape[1]
    idx = torch.arange(s, device=content.device)
    allowed = idx[None, :] != (idx[:, None] + 1)
    return allowed[None, None] & (content != pad)[:, None, None, :]


def permutation_mask(perm: torch.Tensor, content: torch.Tensor, pad: int, eos: int) -> torch.Tensor:
    """Attention mask of one factorization order (PARSeq's permutation language modelling).

    Args:
        perm: ``(S,)`` an order of the output positions ``0..S-1`` (position ``t`` predicts token ``t + 1``:
            character ``t + 1`` or EOS); the identity is left-to-right decoding.
        content: ``(B, S)`` content tokens ``[BOS, c_1, ...]``.

    Returns:
        ``(B, 1, S, S)`` bool: query ``t`` sees content key ``0`` (BOS) and the keys ``k >= 1`` of the tokens
        predicted before it in ``perm`` (token ``k`` is predicted by position ``k - 1``), never PAD or EOS (as in
        PARSeq: a character must not learn the word's length from an EOS placed earlier in the order).
    """
    s = content.shape[1]
    rank = torch.empty_like(perm)
    rank[perm] = torch.arange(s, device=perm.device)
    key_rank = torch.cat([rank.new_full((1,), -1), rank[:-1]])  # content k holds the token of position k - 1
    allowed = key_rank[None, :] < rank[:, None]
    return allowed[None, None] & ((content != pad) & (content != eos))[:, None, None, :]


def decode_autoregressive(
    dec: AttentionDecoder, bos: int, eos: int, memory: torch.Tensor, steps: int, use_cache: bool = True,
    return_attn: bool = False,
) -> DecoderOutput:
    """Greedy autoregressive decoding over encoder tokens ``(B, N, D)``; stops once every sequence has an EOS.

    Returns:
        logits ``(B, T, num_classes)`` with ``T <= steps``; ``attn`` ``(B, T, N)`` if asked.
    """
    mkv = dec.memory_kv(memory)
    tokens = torch.full((memory.shape[0], 1), bos, dtype=torch.long, device=memory.device)
    cache: list[KV] = []
    logits, attns = [], []
    for t in range(steps):
        if use_cache:
            new = dec.content_kv(tokens[:, t : t + 1], start=t)
            cache = new if t == 0 else [(torch.cat([k, nk], 2), torch.cat([v, nv], 2))
                                        for (k, v), (nk, nv) in zip(cache, new)]
            ckv = cache
        else:
            ckv = dec.content_kv(tokens, start=0)
        out = dec(ckv, mkv, start=t, length=1, return_attn=return_attn)
        logits.append(out.logits)
        if out.attn is not None:
            attns.append(out.attn)
        tokens = torch.cat([tokens, out.logits.argmax(-1)], 1)
        if bool((tokens[:, 1:] == eos).any(1).all()):
            break
    return DecoderOutput(torch.cat(logits, 1), [], torch.cat(attns, 1) if attns else None)


def decode_parallel(
    dec: AttentionDecoder, bos: int, eos: int, pad: int, memory: torch.Tensor, steps: int, refine_iters: int = 1,
    return_attn: bool = False,
) -> DecoderOutput:
    """Non-autoregressive pass (all ``steps`` positions at once) followed by ``refine_iters`` cloze refinements.

    Returns:
        logits ``(B, steps, num_classes)``; ``attn`` ``(B, steps, N)`` if asked.
    """
    b = memory.shape[0]
    mkv = dec.memory_kv(memory)
    start = torch.full((b, 1), bos, dtype=torch.long, device=memory.device)
    out = dec(dec.content_kv(start), mkv, start=0, length=steps, return_attn=return_attn)
    for _ in range(refine_iters):
        ids = out.logits.argmax(-1)[:, :-1]
        after_eos = (ids == eos).cumsum(1) - (ids == eos).long() > 0
        content = torch.cat([start, ids.masked_fill(after_eos, pad)], 1)
        out = dec(dec.content_kv(content), mkv, start=0, length=steps, mask=cloze_mask(content, pad),
                  return_attn=return_attn)
    return out


def teacher_forced(
    dec: AttentionDecoder, memory: torch.Tensor, targets: torch.Tensor, pad: int, eos: int = 0,
    passes: tuple[str, ...] = ("ar", "parallel", "cloze"), perms: list[torch.Tensor] | None = None,
) -> tuple[DecoderOutput, DecoderOutput | None, DecoderOutput | None, list[DecoderOutput]]:
    """Teacher-forced decoder passes for the losses.

    Args:
        memory: encoder tokens ``(B, N, D)``.
        targets: ``(B, L + 2)`` ``[BOS, chars, EOS, PAD...]``.
        passes: ``"ar"`` always runs; ``"parallel"`` and ``"cloze"`` on request.
        perms: extra factorization orders of the ``L + 1`` output positions (permutation language modelling;
            see :func:`permutation_mask`), each run as one more pass.

    Returns:
        ``(ar, parallel, cloze, permuted)``, logits over ``L + 1`` positions each.
    """
    mkv = dec.memory_kv(memory)
    content = targets[:, :-1]
    steps = content.shape[1]
    ckv = dec.content_kv(content)
    keep = (content != pad)[:, None, None, :]
    causal = torch.ones(steps, steps, dtype=torch.bool, device=memory.device).tril()
    ar = dec(ckv, mkv, 0, steps, mask=causal & keep)
    parallel = cloze = None
    if "parallel" in passes:
        parallel = dec([(k[:, :, :1], v[:, :, :1]) for k, v in ckv], mkv, 0, steps)
    if "cloze" in passes:
        cloze = dec(ckv, mkv, 0, steps, mask=cloze_mask(content, pad))
    permuted = [dec(ckv, mkv, 0, steps, mask=permutation_mask(p, content, pad, eos)) for p in (perms or [])]
    return ar, parallel, cloze, permuted


def sequence_log_probs(
    dec: AttentionDecoder, memory: torch.Tensor, targets: torch.Tensor, pad: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probability of given readings under the decoder (left to right, teacher-forced).

    Args:
        memory: ``(B, N, D)``; targets: ``(B, L + 2)`` ``[BOS, chars, EOS, PAD...]``.

    Returns:
        ``(total (B,), logits (B, L + 1, num_classes))``: the summed log-probabilities of the characters and the
        EOS, and the logits of every position.
    """
    ar = teacher_forced(dec, memory, targets, pad, passes=("ar",))[0]
    gold = targets[:, 1:]
    logp = ar.logits.float().log_softmax(-1).gather(-1, gold.clamp(max=ar.logits.shape[-1] - 1)[..., None])[..., 0]
    return logp.masked_fill(gold == pad, 0.0).sum(1), ar.logits
