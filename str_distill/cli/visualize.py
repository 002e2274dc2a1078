"""``str-distill visualize``: PNGs of what CCD sees (k-means / predicted text masks, paired character regions of
the two views) and of a recognizer's per-character decoder attention."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "visualize",
        help="draw CCD masks/regions and decoder attention maps as PNG files",
        description="For each image, write OUT/<n>_<name>_ccd.png (k-means text mask, the predicted mask of a CCD "
        "checkpoint, numbered character regions of both views; same number = a pair) and, with a recognizer, "
        "OUT/<n>_<name>_attention.png (decoder attention per decoded character).",
    )
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument(
        "--model",
        help="a `str-distill pretrain --method ccd` output folder (encoder + heads), or a recognizer: registry name, "
        "folder, .safetensors file or hf-hub:org/repo. Without it only the k-means mask and regions are drawn.",
    )
    p.add_argument("-o", "--out", required=True, help="output folder (created)")
    p.add_argument("--regions-from", choices=("kmeans", "predicted"), default="kmeans", help="mask giving the regions")
    p.add_argument("--seed", type=int, default=0, help="seed of the random views")
    p.add_argument("--scale", type=int, default=3, help="enlargement of the 32x128 model input")
    p.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from ..models.registry import get_config
    from ..preprocess import InputError, Preprocessor, load_image
    from ..training.ccd.pretrain import ENCODER_FILE, load_heads
    from ..viz import attention_panel, ccd_panel

    ccd = rec = None
    if args.model and (Path(args.model) / ENCODER_FILE).is_file():
        ccd = load_heads(args.model, args.device)
        config = ccd.config
    elif args.model:
        from ..predictor import Recognizer

        try:
            rec = Recognizer.from_pretrained(args.model, device=args.device, dtype="float32")
        except (ValueError, FileNotFoundError, KeyError, ImportError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        if "attention" not in rec.model.decodings:
            print(f"error: {args.model} has no attention decoder (it reads with {', '.join(rec.model.decodings)}); "
                  "choose a model whose `str-distill models` entry lists attention", file=sys.stderr)
            return 2
        config = rec.model.config
    else:
        config = get_config("siga-vit-s")
    if args.regions_from == "predicted" and ccd is None:
        print("error: --regions-from predicted needs --model pointing to a CCD pretraining folder", file=sys.stderr)
        return 2
    pre = rec.preprocessor if rec is not None else Preprocessor(config)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for i, path in enumerate(args.images):
        try:
            img = load_image(path, path)
        except InputError as e:
            print(f"error: {e}", file=sys.stderr)
            failed += 1
            continue
        stem = f"{i:03d}_{Path(path).stem}"
        written = []
        if not pre.variable_width:  # the CCD panel is drawn on the fixed-size ViT input
            x = torch.from_numpy(np.asarray(pre.resize(img), dtype=np.float32) / 255).permute(2, 0, 1)
            ccd_panel(x, ccd, regions_from=args.regions_from, seed=args.seed, scale=args.scale).save(
                out / f"{stem}_ccd.png"
            )
            written.append(f"{stem}_ccd.png")
        if rec is not None:
            pred = rec.predict([img], decoding="attention", return_attention=True)[0]
            inp = pre(img)
            if pre.variable_width:
                inp = pre.pad(inp, pre.padded_width(inp.shape[-1]))
            pixels = (inp * pre.std + pre.mean).clamp(0, 1)
            view = pixels.flip(0) if pre.bgr else pixels
            grid = tuple(pred.attention.shape[1:])
            panel = attention_panel(view, pred.text, pred.char_probs.tolist(), pred.attention.flatten(1), grid,
                                    args.scale)
            panel.save(out / f"{stem}_attention.png")
            written.append(f"{stem}_attention.png")
        print(f"{path}: " + ", ".join(str(out / w) for w in written))
    return 1 if failed else 0
