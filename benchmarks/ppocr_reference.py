"""Word accuracy of the original PP-OCRv6 small recognizer (onnxruntime, RapidOCR's own preprocessing, one image at
a time) and of str-distill's native port, on the same labelled set, in one run.

    pip install "str-distill[convert]" rapidocr==3.10.0 onnxruntime
    python benchmarks/ppocr_reference.py --data path/to/IIIT5K [--model ppocrv6-small] [--dtype float32]

Prints, for each protocol (36: lower-case alphanumerics; 94: printable ASCII, case-sensitive), the accuracy and 1-NED
of the original and of the port, and how many predictions differ between them (after the protocol's filtering).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def rapidocr_preprocess(img: np.ndarray) -> np.ndarray:
    """RapidOCR 3.10's ``resize_norm_img`` for one BGR image (``(1, 3, 48, W)`` float32)."""
    import cv2

    h, w = img.shape[:2]
    width = int(48 * max(320 / 48, w / h))
    resized_w = min(width, int(math.ceil(48 * w / h)))
    x = cv2.resize(img, (resized_w, 48)).astype("float32").transpose(2, 0, 1) / 255
    x = (x - 0.5) / 0.5
    out = np.zeros((3, 48, width), dtype=np.float32)
    out[:, :, :resized_w] = x
    return out[None]


def ctc_greedy(probs: np.ndarray, charset: list[str]) -> str:
    ids = probs.argmax(-1)
    out, prev = [], -1
    for i in ids.tolist():
        if i != prev and i != 0:
            out.append(charset[i - 1])
        prev = i
    return "".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="a labels.tsv folder (e.g. IIIT5K)")
    ap.add_argument("--onnx", help="the ONNX file (default: inside the installed rapidocr)")
    ap.add_argument("--model", default="ppocrv6-small", help="our weights (default: %(default)s)")
    ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, help="only the first N images")
    args = ap.parse_args()

    import cv2
    import onnx
    import onnxruntime as ort
    import torch

    from str_distill import Recognizer
    from str_distill.hub.convert_ppocr import find_rapidocr_model
    from str_distill.training.metrics import WordMetrics, normalize_protocol

    torch.set_num_threads(args.threads)
    path = Path(args.onnx) if args.onnx else find_rapidocr_model()
    meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    charset = [c for c in meta["character"].split("\n") if c] + [" "]
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    root = Path(args.data)
    rows = [line.split("\t", 1) for line in (root / "labels.tsv").read_text(encoding="utf-8").splitlines() if line]
    rows = rows[: args.limit] if args.limit else rows
    paths = [str(root / p) for p, _ in rows]
    labels = [label for _, label in rows]

    t0 = time.perf_counter()
    ref = [ctc_greedy(sess.run(None, {"x": rapidocr_preprocess(cv2.imread(p))})[0][0], charset) for p in paths]
    t_ref = time.perf_counter() - t0
    rec = Recognizer.from_pretrained(args.model, device="cpu", dtype=args.dtype)
    t0 = time.perf_counter()
    ours = [p.text for p in rec.predict(paths, batch_size=64)]
    t_ours = time.perf_counter() - t0
    print(f"{len(paths)} images of {root}; original {path.name} via onnxruntime {ort.__version__} "
          f"(one image at a time, {t_ref:.1f} s); port {args.model} {args.dtype} (batch 64, {t_ours:.1f} s); "
          f"{args.threads} threads")
    for protocol in ("36", "94"):
        m_ref, m_ours, differ = WordMetrics(protocol), WordMetrics(protocol), 0  # type: ignore[arg-type]
        for label, a, b in zip(labels, ref, ours):
            if not normalize_protocol(label, protocol):  # type: ignore[arg-type]
                continue
            m_ref.update(a, label)
            m_ours.update(b, label)
            differ += normalize_protocol(a, protocol) != normalize_protocol(b, protocol)  # type: ignore[arg-type]
        print(f"protocol {protocol}: original {100 * m_ref.accuracy:.2f} % (1-NED {m_ref.one_minus_ned:.4f}), "
              f"port {100 * m_ours.accuracy:.2f} % (1-NED {m_ours.one_minus_ned:.4f}); "
              f"{differ} of {m_ref.count} predictions differ")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
