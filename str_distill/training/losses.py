"""Recognition losses: cross-entropy on the three attention-decoder passes plus CTC, trained jointly.

Default weights (:class:`LossWeights`), documented in ``docs/training.md``:

* ``ar = 1.0``: autoregressive pass (causal mask), the default decoding at inference;
* ``parallel = 0.5``: non-autoregressive pass (queries see only BOS), used by ``mode="parallel"``;
* ``cloze = 0.5``: refinement pass (query ``t`` sees every label token except its own target), used by the
  refinement iterations of parallel decoding;
* ``ctc = 0.5``: CTC head on the encoder tokens (``decoding="ctc"``), which also gives the encoder a direct,
  alignment-free signal.

Cross-entropy uses label smoothing (default 0.1) and ignores PAD positions; every loss is a per-character mean so
that the weights are comparable. A weight of 0 skips the pass entirely (no decoder compute).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F

from ..models.model import TrainOutput
from ..tokenizer import Tokenizer

__all__ = ["LossWeights", "RecognitionLoss", "ctc_loss", "sequence_ce"]


@dataclass
class LossWeights:
    """Weights of the four recognition terms (see the module docstring)."""

    ar: float = 1.0
    parallel: float = 0.5
    cloze: float = 0.5
    ctc: float = 0.5

    @classmethod
    def parse(cls, text: str) -> LossWeights:
        """From ``"ar=1,parallel=0.5,cloze=0.5,ctc=0.5"`` (unnamed terms keep their defaults).

        Raises:
            ValueError: for an unknown term, a malformed pair or a negative weight.
        """
        w = cls()
        names = {f.name for f in fields(cls)}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, sep, val = part.partition("=")
            key = key.strip()
            if not sep or key not in names:
                raise ValueError(f"loss weight {part!r}: expected NAME=VALUE with NAME in {sorted(names)}")
            try:
                v = float(val)
            except ValueError:
                raise ValueError(f"loss weight {part!r}: {val!r} is not a number") from None
            if v < 0:
                raise ValueError(f"loss weight {part!r} must be >= 0")
            setattr(w, key, v)
        if w.ar == 0 and w.parallel == 0 and w.cloze == 0 and w.ctc == 0:
            raise ValueError("all recognition loss weights are 0")
        return w

    @classmethod
    def ctc_only(cls) -> LossWeights:
        """CTC alone (for models without an attention decoder)."""
        return cls(ar=0.0, parallel=0.0, cloze=0.0, ctc=1.0)

    @property
    def passes(self) -> tuple[str, ...]:
        """Decoder passes ``forward_train`` must run (``"ar"`` always runs)."""
        return ("ar",) + tuple(p for p in ("parallel", "cloze") if getattr(self, p) > 0)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def sequence_ce(logits: torch.Tensor, targets: torch.Tensor, pad: int, label_smoothing: float = 0.0) -> torch.Tensor:
    """Token cross-entropy ignoring PAD.

    Args:
        logits: ``(B, T, C)``.
        targets: ``(B, T)`` class indices, ``pad`` where no loss applies.

    Returns:
        Scalar mean over non-PAD positions (computed in float32).
    """
    return F.cross_entropy(
        logits.float().flatten(0, 1), targets.flatten(), ignore_index=pad, label_smoothing=label_smoothing
    )


def ctc_loss(logits: torch.Tensor, targets: torch.Tensor, lengths: torch.Tensor, blank: int = 0) -> torch.Tensor:
    """CTC loss, mean over the batch of the per-character loss.

    Args:
        logits: ``(B, F, C)`` frame logits.
        targets: ``(B, L)`` padded class indices (from :meth:`Tokenizer.encode_ctc`).
        lengths: ``(B,)`` target lengths (all >= 1).
    """
    log_probs = logits.float().log_softmax(-1).transpose(0, 1)  # (F, B, C)
    frames = torch.full((logits.shape[0],), logits.shape[1], dtype=torch.long, device=logits.device)
    return F.ctc_loss(log_probs, targets, frames, lengths, blank=blank, reduction="mean", zero_infinity=True)


class RecognitionLoss:
    """Weighted sum of the decoder cross-entropies and CTC.

    Args:
        tokenizer: the model's tokenizer (PAD index, CTC encoding).
        weights: per-term weights.
        label_smoothing: for the decoder cross-entropies (not CTC).
    """

    def __init__(self, tokenizer: Tokenizer, weights: LossWeights | None = None, label_smoothing: float = 0.1) -> None:
        self.tokenizer = tokenizer
        self.weights = weights or LossWeights()
        self.label_smoothing = label_smoothing

    def targets(
        self,
        labels: list[str],
        device: torch.device | str,
        fixed_length: bool = False,
        precomputed: tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode labels for both heads (or move already encoded ones to ``device``).

        Args:
            fixed_length: pad the decoder targets to ``max_length + 2`` (constant shapes for ``torch.compile``).
            precomputed: ``(targets, ctc_targets, ctc_lengths)`` made by the data workers, if any.

        Returns:
            ``(decoder targets (B, L + 2), ctc targets (B, L'), ctc lengths (B,))`` on ``device``.
        """
        tok = self.tokenizer
        if precomputed is not None and all(t is not None for t in precomputed):
            dec, ctc_t, ctc_l = precomputed  # type: ignore[misc]
        else:
            dec = tok.encode(labels)
            ctc_t, ctc_l = tok.encode_ctc(labels)
        if fixed_length and dec.shape[1] < tok.max_length + 2:
            dec = F.pad(dec, (0, tok.max_length + 2 - dec.shape[1]), value=tok.PAD)
        nb = torch.device(device).type == "cuda"
        return dec.to(device, non_blocking=nb), ctc_t.to(device, non_blocking=nb), ctc_l.to(device, non_blocking=nb)

    def __call__(
        self, out: TrainOutput, targets: torch.Tensor, ctc_targets: torch.Tensor, ctc_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total weighted loss and the unweighted terms (detached tensors, to avoid a device sync per step).

        Args:
            out: from ``model.forward_train(images, targets, passes=self.weights.passes)``.
            targets: ``(B, L + 2)`` decoder targets; position ``t`` of each pass predicts ``targets[:, t + 1]``.
        """
        w, pad, ls = self.weights, self.tokenizer.PAD, self.label_smoothing
        tgt = targets[:, 1:]
        terms: dict[str, torch.Tensor] = {}
        total = torch.zeros((), device=targets.device)
        for name, dec_out in (("ar", out.ar), ("parallel", out.parallel), ("cloze", out.cloze)):
            weight = getattr(w, name)
            if weight > 0 and dec_out is not None:
                loss = sequence_ce(dec_out.logits, tgt, pad, ls)
                terms[name] = loss.detach()
                total = total + weight * loss
        if w.ctc > 0:
            loss = ctc_loss(out.ctc_logits, ctc_targets, ctc_lengths)
            terms["ctc"] = loss.detach()
            total = total + w.ctc * loss
        with torch.no_grad():
            if out.ar is not None:
                pred = out.ar.logits.argmax(-1)
                ok = ((pred == tgt) | (tgt == pad)).all(1)
            else:  # CTC-only models: greedy CTC reading against the label
                ok = ctc_greedy_matches(out.ctc_logits, ctc_targets, ctc_lengths)
            terms["train_acc"] = ok.float().mean()
        return total, terms


def ctc_greedy_matches(logits: torch.Tensor, targets: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``(B,)`` bool: whether greedy CTC decoding of ``logits`` ``(B, T, C)`` equals each target sequence."""
    ids = logits.argmax(-1)
    keep = ids != 0
    keep[:, 1:] &= ids[:, 1:] != ids[:, :-1]
    out = []
    for i in range(ids.shape[0]):
        seq = ids[i][keep[i]]
        n = int(lengths[i])
        out.append(seq.numel() == n and bool((seq == targets[i, :n]).all()))
    return torch.tensor(out, device=logits.device)
