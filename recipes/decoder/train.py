"""Train an attention decoder on the default model's frozen encoder, on a CPU, and compare objectives at equal time.

    python recipes/decoder/train.py --data-root DATA -o OUT --views 6 --minutes 20 --arms plm l2r

``DATA`` holds the real training sets (IIIT5K_train, SVT_train, IC15_train, IC03_train). 5 % of every set (seed 0,
the split of ``str-distill eval --val-split 0.05``) is the validation split: never trained on, read to keep the
best decoder. Steps:

1. the neck features of every training crop under ``--views`` presentations (view 0 the clean crop, the others
   augmented) and of the clean validation crops, cached in ``OUT/cache_train_v<view>.pt`` and ``OUT/cache_val.pt``
   (reused when present: more views can be added later);
2. each arm (``plm``: PARSeq's permutation language modelling; ``l2r``: left-to-right only) trains a fresh
   decoder for ``--minutes`` of wall time from the same cache and seed (``OUT/<arm>/``, resumable); the
   validation split is read every ``--eval-every`` steps (autoregressive decoding, 36-character protocol) and
   the best decoder is kept;
3. ``OUT/<arm>/result.json`` gets the arm's steps, samples, curve and best validation accuracy.

To give two arms the same machine, build the cache first (``--cache-only``), then run one process per arm at the
same time with ``--threads 1``.

The CTC head is the default model's, pruned to the 94 ASCII characters of PP-OCRv6's dictionary
(``ppocrv6-en``): the decoder predicts those 94 characters.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from str_distill.data.folder import FolderDataset
from str_distill.data.mix import split_validation
from str_distill.hub.loading import load_model
from str_distill.models.ppocr import PPOCRRecognizer
from str_distill.training.decoder_fit import FeatureCache, build_feature_cache, decoder_model_from, train_decoder
from str_distill.training.metrics import normalize_protocol

TRAIN_SETS = ("IIIT5K_train", "SVT_train", "IC15_train", "IC03_train")
VAL_SPLIT, SEED = 0.05, 0
BASE = "ppocrv6-small.scene-ft-neck"
CHARSET = "ppocrv6-en"


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def load_splits(root: Path) -> tuple[list[tuple[bytes, str]], list[tuple[bytes, str]]]:
    """``(train, val)`` lists of ``(image bytes, label as annotated)``."""
    train, val = [], []
    for name in TRAIN_SETS:
        ds = FolderDataset(root / name)
        tr, va = split_validation(ds, VAL_SPLIT, SEED)
        for part, out in ((tr, train), (va, val)):
            for i in range(len(part)):
                s = part[i]
                if s.image is None:
                    raise FileNotFoundError(f"{name}: missing image {s.key}")
                out.append((s.image, s.label))
    return train, val


@torch.inference_mode()
def read_cache(model: PPOCRRecognizer, cache: FeatureCache, mode: str = "autoregressive", batch: int = 256
               ) -> list[str]:
    """Attention readings of every cached entry (in cache order)."""
    out: list[str] = [""] * len(cache)
    by_t: dict[int, list[int]] = {}
    for i, f in enumerate(cache.feats):
        by_t.setdefault(f.shape[0], []).append(i)
    for idx in by_t.values():
        for k in range(0, len(idx), batch):
            part = idx[k : k + batch]
            mem = model.decoder_memory(torch.stack([cache.feats[i] for i in part]).float())
            probs = model.read_attention(mem, mode).logits.float().softmax(-1)
            for i, d in zip(part, model.tokenizer.decode(probs, "attention")):
                out[i] = d.text
    return out


def val_accuracy(model: PPOCRRecognizer, cache: FeatureCache) -> float:
    """Word accuracy (36-character protocol) of autoregressive reading on a cache of clean crops."""
    texts = read_cache(model, cache)  # in cache order, as cache.labels
    ok = [normalize_protocol(t) == normalize_protocol(g) for t, g in zip(texts, cache.labels) if normalize_protocol(g)]
    return 100.0 * sum(ok) / max(len(ok), 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", type=Path, required=True)
    ap.add_argument("-o", "--out", type=Path, required=True)
    ap.add_argument("--views", type=int, default=6, help="presentations per training crop (1 clean + augmented)")
    ap.add_argument("--augment-strength", type=float, default=0.7)
    ap.add_argument("--minutes", type=float, default=20.0, help="wall-clock budget of each arm")
    ap.add_argument("--arms", nargs="+", default=["plm", "l2r"], choices=["plm", "l2r"])
    ap.add_argument("--dec-depth", type=int, default=1)
    ap.add_argument("--dec-dim", type=int, default=256)
    ap.add_argument("--dec-heads", type=int, default=8)
    ap.add_argument("--num-perms", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--synth", type=int, default=0, metavar="N",
                    help="also cache N synthetic words (one view each; the renderer of `str-distill synth`)")
    ap.add_argument("--with-synth", action="store_true", help="arms train on the real crops and the synthetic words")
    ap.add_argument("--tag", default="", help="suffix of the arms' folders (e.g. -synth)")
    ap.add_argument("--cache-only", action="store_true", help="build the feature caches, train nothing")
    ap.add_argument("--limit", type=int, default=0, help="smoke test: use only this many training and val crops")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)

    base = load_model(BASE)
    tok_model = decoder_model_from(base, CHARSET, args.dec_depth, args.dec_dim, args.dec_heads, seed=SEED)
    tok = tok_model.dec_tokenizer
    max_len = tok_model.config.dec_max_length

    val_path = args.out / "cache_val.pt"
    train, val = load_splits(args.data_root)
    if args.limit:
        train, val = train[: args.limit], val[: args.limit]
    if not val_path.exists():
        cache = build_feature_cache(base, [(img, label) for img, label in val], views=1, log=log)
        cache.save(val_path)
    val_cache = FeatureCache.load(val_path)
    kept = [(img, tok.normalize(label)) for img, label in train]
    dropped = sum(1 for _, lab in kept if not lab or len(lab) > max_len)
    kept = [(img, lab) for img, lab in kept if lab and len(lab) <= max_len]
    log(f"training crops: {len(kept)} ({dropped} dropped: empty or longer than {max_len} after normalization)")
    for v in range(args.views):  # one file per view: an interrupted run keeps the views it finished
        path = args.out / f"cache_train_v{v}.pt"
        if not path.exists():
            t0 = time.time()
            cache = build_feature_cache(base, kept, views=1, first_view=v, augment_strength=args.augment_strength,
                                        log=log)
            cache.save(path)
            log(f"view {v}: {time.time() - t0:.0f} s")
    train_cache = FeatureCache()
    for v in range(args.views):
        train_cache.extend(FeatureCache.load(args.out / f"cache_train_v{v}.pt"))
    synth_path = args.out / "cache_synth.pt"
    if args.synth and not synth_path.exists():
        from str_distill.data.mix import SynthSource

        src = SynthSource(tok.charset, max_len, seed=SEED)
        t0 = time.time()
        words = [(s.image, tok.normalize(s.label)) for s in (src[i] for i in range(args.synth))]
        log(f"rendered {len(words)} synthetic words in {time.time() - t0:.0f} s")
        cache = build_feature_cache(base, [w for w in words if w[1]], views=1, log=log)
        cache.save(synth_path)
    if args.with_synth:
        synth = FeatureCache.load(synth_path)
        synth.sample = [-1 - i for i in synth.sample]  # not a real crop
        train_cache.extend(synth)
    log(f"cache: {len(train_cache)} training entries, {len(val_cache)} validation crops")

    if args.cache_only:
        return
    for arm in args.arms:
        model = decoder_model_from(base, CHARSET, args.dec_depth, args.dec_dim, args.dec_heads, seed=SEED)
        log(f"arm {arm}: {sum(p.numel() for n, p in model.named_parameters() if n.startswith('decoder.'))} "
            "decoder parameters")
        state = train_decoder(model, train_cache, args.out / (arm + args.tag), args.minutes, objective=arm,
                              num_perms=args.num_perms, batch_size=args.batch_size, lr=args.lr, seed=SEED,
                              evaluate=lambda m: val_accuracy(m, val_cache), eval_every=args.eval_every,
                              log=lambda s, a=arm: log(f"[{a}] {s}"))
        result = {k: state[k] for k in ("steps", "samples", "seconds", "best_score", "best_step", "curve")}
        result["config"] = {"dec_depth": args.dec_depth, "dec_dim": args.dec_dim, "dec_heads": args.dec_heads,
                                  "num_perms": args.num_perms, "batch_size": args.batch_size, "lr": args.lr,
                                  "views": args.views, "minutes": args.minutes}
        result["config"]["synth"] = len(train_cache) - sum(1 for i in train_cache.sample if i >= 0)
        (args.out / (arm + args.tag) / "result.json").write_text(json.dumps(result, indent=1))
        log(f"arm {arm}: best val {state['best_score']:.2f} at step {state['best_step']} of {state['steps']}")


if __name__ == "__main__":
    main()
