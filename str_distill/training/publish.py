"""Publishing trained weights: measure them, write their manifest record, pin their golden outputs.

What the bundling recipes (``recipes/ppocrv6/bundle.py``, ``recipes/finetune/bundle.py``,
``recipes/student/bundle.py``) share, as library code:

* :func:`scene_text_splits` and :func:`evaluate_splits`: the held-out validation split of the real scene-text
  training sets (:data:`SCENE_TEXT_SETS`, :data:`VAL_SPLIT`, :data:`SEED`) and IIIT5K, scored under both protocols;
* :func:`measure`: IIIT5K metrics in float32 and bfloat16, and the CPU dtype to default to;
* :func:`validation_metric`: the record's ``validation`` entry;
* :func:`write_golden`: the texts and confidences the weights read on ``examples/`` (``tests/test_golden.py``);
* :func:`publish`: the record (:func:`str_distill.hub.manifest.update_record`) and the golden outputs;
* :func:`check_manifest`: the manifest's problems as an exit code.

>>> from str_distill.hub.manifest import make_record  # doctest: +SKIP
>>> metrics, cpu_dtype = measure("out/", "data/IIIT5K", "my-arch.tag")  # doctest: +SKIP
>>> publish("my-arch.tag", make_record("my-arch.tag", "out/", bundle=True, metrics=metrics))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..hub import manifest as mf

__all__ = [
    "PROTOCOLS",
    "SCENE_TEXT_SETS",
    "SEED",
    "VAL_SPLIT",
    "check_manifest",
    "evaluate_splits",
    "float16_candidate",
    "measure",
    "publish",
    "score",
    "validation_metric",
    "write_golden",
]

#: The real training sets of the scene-text fine-tuning recipes and their sampling weights (towards incidental text).
SCENE_TEXT_SETS = {"IIIT5K_train": 0.25, "SVT_train": 0.05, "IC15_train": 0.5, "IC03_train": 0.2}
#: The held-out validation split: this fraction of every set, carved with this seed (``--val-split 0.05 --seed 0``).
VAL_SPLIT, SEED = 0.05, 0
#: Word-accuracy protocols: 36 lower-case alphanumerics, 94 printable ASCII (case-sensitive).
PROTOCOLS = ("36", "94")
#: Where the repository keeps the example images and their pinned outputs (a source checkout, not the wheel).
REPO = Path(__file__).resolve().parents[2]


def score(texts: Sequence[str], labels: Sequence[str]) -> dict[str, dict[str, float | int]]:
    """Word accuracy and 1-NED in percent, and the count, of ``texts`` against ``labels`` per protocol, as
    ``str-distill eval`` scores them (labels outside a protocol's characters are left out of it)."""
    from .metrics import WordMetrics, normalize_protocol

    out: dict[str, dict[str, float | int]] = {}
    for protocol in PROTOCOLS:
        m = WordMetrics(protocol)  # type: ignore[arg-type]
        for text, label in zip(texts, labels):
            if normalize_protocol(label, protocol):  # type: ignore[arg-type]
                m.update(text, label)
        out[protocol] = {"accuracy": round(100 * m.accuracy, 2), "one_minus_ned": round(100 * m.one_minus_ned, 2),
                         "count": m.count}
    return out


def _read(recognizer: Any, samples: Sequence[Any]) -> list[str]:
    return [p.text for p in recognizer.predict([s.image for s in samples], batch_size=64)]


def measure(weights: str | Path, data: str | Path, name: str) -> tuple[dict[str, Any], str]:
    """IIIT5K metrics of ``weights`` under both protocols in float32 and bfloat16, and the CPU dtype to default to
    (bfloat16 only when it reads the same text as float32 on every image); the recorded command names ``name``.

    One pass per dtype through ``Recognizer.predict`` (batch 64) on 2 threads.
    """
    import torch

    from ..predictor import Recognizer
    from .evaluate import open_eval_sets

    torch.set_num_threads(2)
    ds = open_eval_sets([str(data)])[0][1]
    samples = [ds[i] for i in range(len(ds))]
    labels = [s.label for s in samples]
    by: dict[str, Any] = {}
    texts: dict[str, list[str]] = {}
    for dtype in ("float32", "bfloat16"):
        rec = Recognizer.from_pretrained(weights, device="cpu", dtype=dtype)
        t0 = time.perf_counter()
        texts[dtype] = _read(rec, samples)
        seconds = round(time.perf_counter() - t0, 1)
        by[dtype] = score(texts[dtype], labels)
        for protocol, m in by[dtype].items():
            print(f"  {dtype:8s} protocol {protocol}: {m['accuracy']:.2f} % (1-NED {m['one_minus_ned']:.2f})",
                  flush=True)
        by[dtype]["seconds"] = seconds
    same = sum(a == b for a, b in zip(texts["float32"], texts["bfloat16"]))
    cpu_dtype = "bfloat16" if same == len(samples) else "float32"
    print(f"  bfloat16 reads the same text as float32 on {same} of {len(samples)} images -> CPU default {cpu_dtype}")
    metrics = {
        "IIIT5K": {**by["float32"]["36"], "protocol": "36", "decoding": "ctc", "dtype": "float32",
                   "by_protocol": {p: by["float32"][p] for p in PROTOCOLS},
                   "bfloat16": {p: by["bfloat16"][p] for p in PROTOCOLS},
                   "bfloat16_same_text": f"{same}/{len(samples)}",
                   "command": f"str-distill eval --model {name} --data IIIT5K --protocol {{36,94}} --dtype "
                              "{float32,bfloat16}"},
    }
    return metrics, cpu_dtype


def evaluate_splits(weights: str | Path, root: str | Path, train_sets: Sequence[str] = tuple(SCENE_TEXT_SETS),
                    val_split: float = VAL_SPLIT, seed: int = SEED) -> dict[str, Any]:
    """Word accuracy (and 1-NED) of ``weights`` on the validation split of ``root``'s ``train_sets`` and on
    ``root/IIIT5K``, 36 and 94 characters, one reading pass per set, float32 on 2 threads.

    Returns keys ``val/36``, ``val/36/1-ned``, ``val/36/count`` and the same for ``val/94``, ``IIIT5K/36`` and
    ``IIIT5K/94``.
    """
    import torch

    from ..data.mix import split_validation
    from ..predictor import Recognizer
    from .evaluate import open_eval_sets

    torch.set_num_threads(2)
    root = Path(root)
    rec = Recognizer.from_pretrained(weights, device="cpu", dtype="float32")
    val = [split_validation(ds, val_split, seed)[1] for _, ds in open_eval_sets([str(root / s) for s in train_sets])]
    bench = [ds for _, ds in open_eval_sets([str(root / "IIIT5K")])]
    res: dict[str, Any] = {}
    for key, sets in (("val", val), ("IIIT5K", bench)):
        samples = [ds[i] for ds in sets for i in range(len(ds))]
        for protocol, m in score(_read(rec, samples), [s.label for s in samples]).items():
            res[f"{key}/{protocol}"] = m["accuracy"]
            res[f"{key}/{protocol}/1-ned"] = m["one_minus_ned"]
            res[f"{key}/{protocol}/count"] = m["count"]
    return res


def float16_candidate(model: Any, directory: str | Path, data_root: str | Path,
                      decide: Callable[[dict[str, Any]], tuple[bool, list[str]]],
                      refused: str = "refused") -> tuple[Path, dict[str, Any]] | None:
    """Save ``model`` in float16 into ``directory`` (as it would be bundled), score it with :func:`evaluate_splits`
    on ``data_root`` and apply the ship rule ``decide`` (``scores -> (ships, reasons it does not)``).

    Returns:
        ``(directory, scores)`` when it ships; ``None`` when it does not (the reasons are printed after
        ``refused``).
    """
    import torch

    from ..hub.serialization import save_pretrained

    out = save_pretrained(model, directory, dtype=torch.float16)
    check = evaluate_splits(out, data_root)
    ships, why = decide(check)
    print(f"float16 weights: {check} -> {'ships' if ships else 'refused'}", flush=True)
    if not ships:
        print(f"{refused}: " + "; ".join(why), file=sys.stderr)
        return None
    return Path(out), check


def validation_metric(check: dict[str, Any], what: str, command: str,
                      original: dict[str, Any] | None = None) -> dict[str, Any]:
    """The manifest's ``validation`` metric from :func:`evaluate_splits` (``check``), with what was measured and
    the command; ``original``: the same for the weights this one started from."""
    metric: dict[str, Any] = {"accuracy": check["val/36"], "protocol": "36", "count": check["val/36/count"],
                              "by_protocol": {"36": check["val/36"], "94": check["val/94"]}}
    if original is not None:
        metric["original"] = {"36": original["val/36"], "94": original["val/94"]}
    metric["what"], metric["command"] = what, command
    return metric


def write_golden(name: str, examples: str | Path, out: str | Path) -> None:
    """Pin the texts and confidences (CTC, float32) that the published ``name`` reads on the PNG images of
    ``examples`` into ``out`` (JSON), with the sha256 of its files."""
    from ..predictor import Recognizer

    rec = Recognizer.from_pretrained(name, device="cpu", dtype="float32")
    images = sorted(p for p in Path(examples).iterdir() if p.suffix.lower() == ".png")
    res: dict[str, Any] = {"model": name, "images": {}}
    for path, pred in zip(images, rec.predict([str(p) for p in images], decoding="ctc")):
        res["images"][path.name] = {"ctc": {"text": pred.text, "confidence": round(float(pred.confidence), 5)}}
    res["weights_sha256"] = [f["sha256"] for f in (mf.get_record(name) or {}).get("files", [])]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1, ensure_ascii=False) + "\n")


def publish(name: str, record: dict[str, Any], default: bool = False, examples: str | Path | None = None,
            golden_dir: str | Path | None = None) -> None:
    """Write ``name``'s manifest ``record`` (its files are already bundled; ``default``: make it the default model)
    and its golden outputs (``examples/`` -> ``tests/golden/<name>.json`` of the repository unless given)."""
    mf.update_record(name, record, default=default)
    examples = Path(examples) if examples is not None else REPO / "examples"
    golden_dir = Path(golden_dir) if golden_dir is not None else REPO / "tests" / "golden"
    write_golden(name, examples, golden_dir / f"{name}.json")
    print(f"{name}: bundled ({record['size_bytes']:,} bytes), record and golden outputs written", flush=True)


def check_manifest() -> int:
    """0 when the manifest validates; else print its problems and return 1 (an exit code)."""
    problems = mf.validate_manifest()
    if problems:
        print("manifest problems:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    return 0
