"""Read the example word images with the Python API and compare with ``labels.tsv``.

    python examples/predict.py                          # the bundled default model (ppocrv6-small.scene-ft-neck)
    python examples/predict.py --model path/to/model    # a save_pretrained() directory or a .safetensors file
    python examples/predict.py --decoding ctc img1.png img2.jpg

Exits with status 1 and the loader's explanation when the weights cannot be loaded.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
try:
    import str_distill  # noqa: F401
except ImportError:  # running from a source checkout that was not pip-installed
    sys.path.insert(0, str(HERE.parent))

from str_distill import Recognizer  # noqa: E402
from str_distill.hub import WeightsNotFoundError  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description="Read word images with str-distill.")
    parser.add_argument("images", nargs="*", type=Path, help="image files (default: the examples in this folder)")
    parser.add_argument("--model", default=None,
                        help="weights name, directory, .safetensors file or hf-hub:org/repo (default: the bundled "
                        "default model)")
    parser.add_argument("--decoding", default=None, choices=("attention", "ctc"),
                        help="default: the model's own (ctc for ppocrv6-small, attention for ViT models)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    labels = dict(line.split("\t") for line in (HERE / "labels.tsv").read_text().splitlines() if line)
    paths = args.images or [HERE / name for name in labels]

    try:
        rec = Recognizer.from_pretrained(args.model, device=args.device)
    except (WeightsNotFoundError, OSError, ValueError, RuntimeError) as e:
        print(f"cannot load {args.model!r}:\n  {e}", file=sys.stderr)
        return 1
    print(f"{rec} reading {len(paths)} images\n")

    # Paths, PIL images, numpy arrays, bytes and tensors can be mixed; results come back in input order.
    inputs: list = [str(p) for p in paths]
    inputs[0] = Image.open(paths[0])  # a PIL image ...
    if len(inputs) > 1:
        inputs[1] = np.asarray(Image.open(paths[1]).convert("RGB"))  # ... and an (H, W, 3) uint8 array
    preds = rec.predict(inputs, batch_size=64, decoding=args.decoding)

    correct = 0
    for path, pred in zip(paths, preds):
        expected = labels.get(path.name)
        ok = "" if expected is None else ("ok" if pred.text == expected else f"expected {expected!r}")
        correct += pred.text == expected
        probs = " ".join(f"{c}:{p:.2f}" for c, p in zip(pred.text, pred.char_probs.tolist()))
        print(f"{path.name:14s} {pred.text!r:14s} conf={pred.confidence:.3f}  {ok:20s} [{probs}]")
    known = sum(p.name in labels for p in paths)
    if known:
        print(f"\n{correct}/{known} read exactly")
    return 0


if __name__ == "__main__":
    sys.exit(main())
