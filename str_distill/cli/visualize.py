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
        from ..hub.loading import load_model

        rec = load_model(args.model).to(args.device).eval()
        config = rec.config
    else:
        config = get_config("siga-vit-s")
    if args.regions_from == "predicted" and ccd is None:
        print("error: --regions-from predicted needs --model pointing to a CCD pretraining folder", file=sys.stderr)
        return 2
    pre = Preprocessor(config)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for i, path in enumerate(args.images):
        try:
            img = pre.resize(load_image(path, path))
        except InputError as e:
            print(f"error: {e}", file=sys.stderr)
            failed += 1
            continue
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255).permute(2, 0, 1)
        stem = f"{i:03d}_{Path(path).stem}"
        ccd_panel(x, ccd, regions_from=args.regions_from, seed=args.seed, scale=args.scale).save(
            out / f"{stem}_ccd.png"
        )
        written = [f"{stem}_ccd.png"]
        if rec is not None:
            with torch.inference_mode():
                inp = pre(load_image(path, path))[None].to(args.device)
                dec_out = rec.decode_autoregressive(rec.encode(inp), return_attn=True)
            decoded = rec.tokenizer.decode(dec_out.logits.softmax(-1))[0]
            panel = attention_panel(
                x, decoded.text, decoded.char_probs.tolist(), dec_out.attn[0].cpu(), config.grid_size, args.scale
            )
            panel.save(out / f"{stem}_attention.png")
            written.append(f"{stem}_attention.png")
        print(f"{path}: " + ", ".join(str(out / w) for w in written))
    return 1 if failed else 0
