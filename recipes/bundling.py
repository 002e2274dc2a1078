"""What the bundling recipes share (``recipes/ppocrv6/bundle.py``, ``recipes/finetune/bundle.py``,
``recipes/student/bundle.py``): IIIT5K metrics in both inference dtypes, the validation-split metric, the golden
outputs, and writing the manifest record."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from str_distill.hub import manifest as mf  # noqa: E402


def measure(weights: Path, data: Path, name: str) -> tuple[dict[str, Any], str]:
    """IIIT5K metrics under both protocols in float32 and bfloat16, and the CPU dtype to default to; the recorded
    command names the weights ``name``.

    One pass per dtype through ``Recognizer.predict`` (batch 64), scored as ``str-distill eval`` scores it.
    """
    import time

    import torch

    from str_distill import Recognizer
    from str_distill.training.evaluate import open_eval_sets
    from str_distill.training.metrics import WordMetrics, normalize_protocol

    torch.set_num_threads(2)
    ds = open_eval_sets([str(data)])[0][1]
    samples = [ds[i] for i in range(len(ds))]
    by: dict[str, Any] = {}
    texts: dict[str, list[str]] = {}
    for dtype in ("float32", "bfloat16"):
        rec = Recognizer.from_pretrained(weights, device="cpu", dtype=dtype)
        t0 = time.perf_counter()
        texts[dtype] = [p.text for p in rec.predict([s.image for s in samples], batch_size=64)]
        seconds = round(time.perf_counter() - t0, 1)
        for protocol in ("36", "94"):
            m = WordMetrics(protocol)  # type: ignore[arg-type]
            for s, text in zip(samples, texts[dtype]):
                if normalize_protocol(s.label, protocol):  # type: ignore[arg-type]
                    m.update(text, s.label)
            by.setdefault(dtype, {})[protocol] = {"accuracy": round(100 * m.accuracy, 2),
                                                  "one_minus_ned": round(100 * m.one_minus_ned, 2), "count": m.count}
            print(f"  {dtype:8s} protocol {protocol}: {100 * m.accuracy:.2f} % (1-NED {100 * m.one_minus_ned:.2f})",
                  flush=True)
        by[dtype]["seconds"] = seconds
    same = sum(a == b for a, b in zip(texts["float32"], texts["bfloat16"]))
    cpu_dtype = "bfloat16" if same == len(samples) else "float32"
    print(f"  bfloat16 reads the same text as float32 on {same} of {len(samples)} images -> CPU default {cpu_dtype}")
    metrics = {
        "IIIT5K": {**by["float32"]["36"], "protocol": "36", "decoding": "ctc", "dtype": "float32",
                   "by_protocol": {p: by["float32"][p] for p in ("36", "94")},
                   "bfloat16": {p: by["bfloat16"][p] for p in ("36", "94")},
                   "bfloat16_same_text": f"{same}/{len(samples)}",
                   "command": f"str-distill eval --model {name} --data IIIT5K --protocol {{36,94}} --dtype "
                              "{float32,bfloat16}"},
    }
    return metrics, cpu_dtype


def golden(name: str, examples: Path, out: Path) -> None:
    """Pin the texts and confidences the bundled ``name`` reads on ``examples/`` (``tests/test_golden.py``)."""
    from str_distill import Recognizer

    rec = Recognizer.from_pretrained(name, device="cpu", dtype="float32")
    images = sorted(p for p in examples.iterdir() if p.suffix.lower() == ".png")
    res: dict[str, Any] = {"model": name, "images": {}}
    for path, pred in zip(images, rec.predict([str(p) for p in images], decoding="ctc")):
        res["images"][path.name] = {"ctc": {"text": pred.text, "confidence": round(float(pred.confidence), 5)}}
    res["weights_sha256"] = [f["sha256"] for f in (mf.get_record(name) or {}).get("files", [])]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1, ensure_ascii=False) + "\n")


def validation_metric(check: dict[str, Any], what: str, command: str,
                      original: dict[str, Any] | None = None) -> dict[str, Any]:
    """The manifest's ``validation`` metric from an evaluation (``recipes/finetune/compare.py``'s ``evaluate``)."""
    metric: dict[str, Any] = {"accuracy": check["val/36"], "protocol": "36", "count": check["val/36/count"],
                              "by_protocol": {"36": check["val/36"], "94": check["val/94"]}}
    if original is not None:
        metric["original"] = {"36": original["val/36"], "94": original["val/94"]}
    metric["what"], metric["command"] = what, command
    return metric


def publish(name: str, rec: dict[str, Any], default: bool = False) -> None:
    """Write ``name``'s manifest record (its files are already bundled) and its golden outputs."""
    mf.update_record(name, rec, default=default)
    golden(name, REPO / "examples", REPO / "tests" / "golden" / f"{name}.json")
    print(f"{name}: bundled ({rec['size_bytes']:,} bytes), record and golden outputs written", flush=True)


def check_manifest() -> int:
    """0 when the manifest validates; else print its problems and return 1 (an exit code)."""
    problems = mf.validate_manifest()
    if problems:
        print("manifest problems:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    return 0
