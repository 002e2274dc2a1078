"""Train an attention decoder over a frozen PP-OCR encoder, from cached features.

With the encoder (backbone and neck) and the CTC head held fixed, the decoder only ever sees the neck's frames.
These are computed once per augmented view of every training crop (:func:`build_feature_cache`, the expensive
part: one encoder forward per view) and the decoder then trains on the cache at hundreds of samples a second
(:func:`train_decoder`), bucketed by frame count so that each batch has one width, as at inference.

Objectives (``objective=``):

* ``"l2r"``: left-to-right factorization only: the autoregressive pass, plus the parallel pass (queries see only
  BOS) and the cloze pass used by refinement, as the ViT family trains its decoder;
* ``"plm"``: PARSeq's permutation language modelling: the same three passes plus ``num_perms`` more
  factorization orders per batch (the reverse order and random ones, see
  :func:`~str_distill.models.decoder.permutation_mask`).

The CTC reading of the model is exactly the encoder's: only ``decoder.*`` and ``pos_scale`` are trained.
"""

from __future__ import annotations

import io
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..models.decoder import teacher_forced
from ..models.ppocr import PPOCRRecognizer

__all__ = ["FeatureCache", "build_feature_cache", "decoder_model_from", "train_decoder", "iter_batches"]


@dataclass
class FeatureCache:
    """Neck features of word crops: ``feats[i]`` ``(T_i, D)`` float16, ``labels[i]`` its normalized label.

    Attributes:
        feats, labels: one entry per (crop, view).
        sample: the crop each entry came from (its index in the list given to :func:`build_feature_cache`).
        view: 0 for the clean image, ``1..`` for augmented views.
    """

    feats: list[torch.Tensor] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    sample: list[int] = field(default_factory=list)
    view: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.labels)

    def save(self, path: str | Path) -> None:
        torch.save({"feats": self.feats, "labels": self.labels, "sample": self.sample, "view": self.view}, path)

    @classmethod
    def load(cls, path: str | Path) -> FeatureCache:
        d = torch.load(path, weights_only=True)
        return cls(d["feats"], d["labels"], d["sample"], d["view"])

    def extend(self, other: FeatureCache) -> None:
        self.feats += other.feats
        self.labels += other.labels
        self.sample += other.sample
        self.view += other.view


def _rgb(image: Any) -> np.ndarray:
    from PIL import Image

    if isinstance(image, (bytes, bytearray)):
        return np.asarray(Image.open(io.BytesIO(image)).convert("RGB"))
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    return np.asarray(image)


@torch.inference_mode()
def build_feature_cache(
    model: PPOCRRecognizer,
    samples: Sequence[tuple[Any, str]],
    views: int = 1,
    first_view: int = 0,
    augment_strength: float = 0.7,
    seed: int = 0,
    batch_size: int = 64,
    dtype: torch.dtype = torch.bfloat16,
    log: Callable[[str], None] | None = None,
) -> FeatureCache:
    """Encode every crop under ``views`` presentations (view 0 clean, the others augmented).

    Args:
        model: the frozen encoder (any PP-OCR recognizer; only :meth:`~PPOCRRecognizer.features` runs).
        samples: ``(image, label)`` pairs; an image is encoded bytes, a PIL image or an ``(H, W, 3)`` RGB array;
            labels should already be normalized into the decoder's charset.
        views: presentations per crop, numbered from ``first_view`` (a cache can be built view by view).
        augment_strength: :class:`~str_distill.data.augment.Augmenter` strength of the augmented views.
        dtype: the encoder's compute dtype (bfloat16 is about twice as fast on recent CPUs).

    Returns:
        :class:`FeatureCache` with ``len(samples) * views`` entries, float16 features ``(T_i, neck_dim)``.
    """
    from ..data.augment import Augmenter
    from ..preprocess import Preprocessor

    pre = Preprocessor(model.config)
    aug = Augmenter(strength=augment_strength)
    model = model.eval()
    was = next(model.parameters()).dtype
    model.to(dtype=dtype).to(memory_format=torch.channels_last)
    cache = FeatureCache()
    t0, done = time.time(), 0
    try:
        for v in range(first_view, first_view + views):
            tensors: list[tuple[int, torch.Tensor]] = []
            for i, (image, _label) in enumerate(samples):
                img = _rgb(image)
                if v:
                    img = aug(img, np.random.default_rng([seed, v, i]))
                from PIL import Image

                tensors.append((i, pre(Image.fromarray(np.ascontiguousarray(img)))))
            groups: dict[int, list[int]] = {}
            for j, (_, t) in enumerate(tensors):
                groups.setdefault(pre.padded_width(t.shape[-1]), []).append(j)
            for w, idx in sorted(groups.items()):
                for k in range(0, len(idx), batch_size):
                    part = idx[k : k + batch_size]
                    x = torch.stack([pre.pad(tensors[j][1], w) for j in part]).to(dtype)
                    feats = model.features(x.contiguous(memory_format=torch.channels_last)).to(torch.float16)
                    for j, f in zip(part, feats):
                        i = tensors[j][0]
                        cache.feats.append(f.clone())
                        cache.labels.append(samples[i][1])
                        cache.sample.append(i)
                        cache.view.append(v)
                    done += len(part)
            if log:
                log(f"view {v}: {done} crops encoded, {done / (time.time() - t0):.1f} img/s")
    finally:
        model.to(dtype=was)
    return cache


def iter_batches(cache: FeatureCache, batch_size: int, rng: np.random.Generator) -> Iterator[list[int]]:
    """Endless shuffled batches of cache indices, each of one frame count (one padded width)."""
    buckets: dict[int, list[int]] = {}
    for i, f in enumerate(cache.feats):
        buckets.setdefault(f.shape[0], []).append(i)
    while True:
        batches = []
        for idx in buckets.values():
            perm = rng.permutation(idx).tolist()
            batches += [perm[k : k + batch_size] for k in range(0, len(perm), batch_size)]
        for j in rng.permutation(len(batches)):
            yield batches[j]


def decoder_model_from(source: PPOCRRecognizer, charset: str, dec_depth: int = 1, dec_dim: int = 256,
                       dec_heads: int = 8, dec_mlp_ratio: float = 4.0, dec_max_length: int = 25,
                       seed: int = 0, keep_ctc_charset: bool = False) -> PPOCRRecognizer:
    """A copy of ``source`` with a fresh attention decoder reading ``charset``.

    The CTC head is cut to ``charset`` (rows of shared characters kept), or with ``keep_ctc_charset`` kept as it is
    (``charset`` is then the decoder's ``dec_charset``: the first characters of the source's).
    """
    from dataclasses import replace

    from .warm_start import initialize_from

    ctc_charset = source.config.charset if keep_ctc_charset else charset
    base_cfg = replace(source.config, charset=ctc_charset, dec_depth=0, default_decoding="ctc", dec_charset="")
    base = PPOCRRecognizer(base_cfg)
    initialize_from(base, source)
    cfg = replace(base_cfg, dec_depth=dec_depth, dec_dim=dec_dim, dec_heads=dec_heads, dec_mlp_ratio=dec_mlp_ratio,
                  dec_max_length=dec_max_length, dec_charset=charset if keep_ctc_charset else "")
    torch.manual_seed(seed)
    model = PPOCRRecognizer(cfg)
    missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
    if unexpected or any(not (k.startswith("decoder.") or k == "pos_scale") for k in missing):
        raise ValueError(f"unexpected state mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model


def _perms(steps: int, num: int, rng: np.random.Generator) -> list[torch.Tensor]:
    """The reverse order and ``num - 1`` random orders of ``steps`` output positions (EOS position last)."""
    if steps <= 1 or num <= 0:
        return []
    chars = steps - 1
    out = [torch.tensor([*range(chars - 1, -1, -1), chars])]
    for _ in range(num - 1):
        out.append(torch.tensor([*rng.permutation(chars).tolist(), chars]))
    return out


def decoder_loss(model: PPOCRRecognizer, memory: torch.Tensor, targets: torch.Tensor, objective: str,
                 num_perms: int, rng: np.random.Generator) -> torch.Tensor:
    """Mean cross-entropy of the decoder passes of ``objective`` over ``memory`` ``(B, T, D)`` (see module doc)."""
    tok = model.dec_tokenizer
    perms = _perms(targets.shape[1] - 1, num_perms, rng) if objective == "plm" else []
    ar, par, cloze, permuted = teacher_forced(model.decoder, model.decoder_memory(memory), targets, tok.PAD, tok.EOS,
                                              ("ar", "parallel", "cloze"), perms)
    gold = targets[:, 1:]
    outs = [o for o in (ar, par, cloze, *permuted) if o is not None]
    losses = [F.cross_entropy(o.logits.float().flatten(0, 1), gold.flatten(), ignore_index=tok.PAD) for o in outs]
    return torch.stack(losses).mean()


def train_decoder(
    model: PPOCRRecognizer,
    cache: FeatureCache,
    out_dir: str | Path,
    minutes: float,
    objective: str = "plm",
    num_perms: int = 4,
    batch_size: int = 128,
    lr: float = 1e-3,
    weight_decay: float = 0.01,
    warmup: float = 0.05,
    seed: int = 0,
    evaluate: Callable[[PPOCRRecognizer], float] | None = None,
    eval_every: int = 500,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train ``model``'s decoder on ``cache`` for ``minutes`` of wall time (resumable from ``out_dir``).

    Only ``decoder.*`` and ``pos_scale`` change. The learning rate follows a warm-up then a cosine decay over the
    time budget. ``evaluate(model) -> score`` (higher is better) runs every ``eval_every`` steps and at the end;
    the best decoder is kept in ``out_dir/best.pt``.

    Returns:
        ``{"steps", "samples", "seconds", "best_score", "best_step", "curve": [(step, loss, score?)...]}``.
    """
    if objective not in ("l2r", "plm"):
        raise ValueError(f"objective must be 'l2r' or 'plm', got {objective!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = [n for n, _ in model.named_parameters() if n.startswith("decoder.") or n == "pos_scale"]
    for n, p in model.named_parameters():
        p.requires_grad_(n in names)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    state: dict[str, Any] = {"steps": 0, "samples": 0, "seconds": 0.0, "best_score": -math.inf, "best_step": -1,
                             "curve": []}
    ckpt = out / "checkpoint.pt"
    if ckpt.exists():
        saved = torch.load(ckpt, weights_only=False)
        model.load_state_dict(saved["model"], strict=False)
        opt.load_state_dict(saved["opt"])
        state = saved["state"]
    rng = np.random.default_rng([seed, state["steps"]])
    tok = model.dec_tokenizer
    budget = minutes * 60.0
    model.train()
    model.eval()  # BatchNorm and dropout of the frozen encoder stay as they are; the decoder has no dropout
    batches = iter_batches(cache, batch_size, rng)
    t_start = time.time() - state["seconds"]
    last_save = time.time()
    run_loss, run_n = 0.0, 0

    def do_eval() -> None:
        if evaluate is None:
            return
        score = evaluate(model)
        state["curve"].append((state["steps"], run_loss / max(run_n, 1), score))
        if score > state["best_score"]:
            state["best_score"], state["best_step"] = score, state["steps"]
            torch.save({k: v for k, v in model.state_dict().items() if k in names}, out / "best.pt")
        if log:
            log(f"step {state['steps']}: val {score:.2f} (best {state['best_score']:.2f} at {state['best_step']})")

    while True:
        elapsed = time.time() - t_start
        if elapsed >= budget:
            break
        frac = elapsed / budget
        scale = frac / warmup if frac < warmup else 0.5 * (1 + math.cos(math.pi * (frac - warmup) / (1 - warmup)))
        for g in opt.param_groups:
            g["lr"] = lr * scale
        idx = next(batches)
        memory = torch.stack([cache.feats[i] for i in idx]).float()
        targets = tok.encode([cache.labels[i] for i in idx])
        loss = decoder_loss(model, memory, targets, objective, num_perms, rng)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        state["steps"] += 1
        state["samples"] += len(idx)
        run_loss += float(loss.detach())
        run_n += 1
        if log and state["steps"] % 100 == 0:
            rate = state["samples"] / max(time.time() - t_start, 1e-9)
            log(f"step {state['steps']} loss {run_loss / run_n:.4f} lr {lr * scale:.2e} {rate:.0f} samples/s "
                f"{(time.time() - t_start) / 60:.1f} min")
        if state["steps"] % eval_every == 0:
            do_eval()
            run_loss, run_n = 0.0, 0
        if time.time() - last_save > 120:
            state["seconds"] = time.time() - t_start
            torch.save({"model": {k: v for k, v in model.state_dict().items() if k in names},
                        "opt": opt.state_dict(), "state": state}, ckpt)
            last_save = time.time()
    state["seconds"] = time.time() - t_start
    do_eval()
    torch.save({"model": {k: v for k, v in model.state_dict().items() if k in names}, "opt": opt.state_dict(),
                "state": state}, ckpt)
    (out / "state.json").write_text(json.dumps(state, indent=1))
    for p in model.parameters():
        p.requires_grad_(True)
    return state
