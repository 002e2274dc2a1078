"""Draw the figure of the README: each example word image with the text and confidence the model reads.

    python examples/make_figure.py                                   # writes docs/img/predictions.png
    python examples/make_figure.py --model path/to/model -o out.png  # weights you trained

Captions are green where the reading matches ``labels.tsv`` and red (with the expected text) where it does not.
The figure is drawn with Pillow (:func:`str_distill.viz.predictions_panel`); the same model and images give the
same file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image

HERE = Path(__file__).resolve().parent
try:
    import str_distill  # noqa: F401
except ImportError:  # running from a source checkout that was not pip-installed
    sys.path.insert(0, str(HERE.parent))

from str_distill import Recognizer  # noqa: E402
from str_distill.viz import predictions_panel  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description="Draw the predictions of a model on the example images.")
    parser.add_argument("--model", default=None, help="weights name, directory or file (default: the default model)")
    parser.add_argument("-o", "--output", type=Path, default=HERE.parent / "docs" / "img" / "predictions.png")
    parser.add_argument("--columns", type=int, default=4, help="images per row (default: 4)")
    parser.add_argument("--height", type=int, default=48, help="height of each image in pixels (default: 48)")
    args = parser.parse_args()

    labels = dict(line.split("\t") for line in (HERE / "labels.tsv").read_text().splitlines() if line)
    names = sorted(labels)
    images = [Image.open(HERE / name).convert("RGB") for name in names]
    rec = Recognizer.from_pretrained(args.model, device="cpu")
    preds = rec.predict(images)
    for name, pred in zip(names, preds):
        print(f"{name}\t{pred.text}\t{pred.confidence:.4f}")

    figure = predictions_panel(images, preds, [labels[n] for n in names], height=args.height, columns=args.columns)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    figure.save(args.output, optimize=True)
    print(f"wrote {args.output} ({figure.width}x{figure.height})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
