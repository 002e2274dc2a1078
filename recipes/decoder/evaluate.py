"""Measure a trained decoder arm against the default model and choose the joint-reading rule.

    python recipes/decoder/evaluate.py --data-root DATA --run OUT --arm plm -o OUT/eval_plm.json

Reads the validation split (5 %, seed 0, of the real training sets) and IIIT5K at float32 through the model's
own passes: the default model's CTC reading (full dictionary), the decoder model's CTC reading (94-character head,
or with ``--full-ctc`` the full dictionary), attention autoregressive and parallel (+1 refinement) readings, and
for joint reading the two candidates (CTC and autoregressive attention) with their log-probabilities under the
decoder and under CTC. The joint rules (highest confidence; ``log p_att + w log p_ctc`` for several ``w``) are
scored offline from these, so every rule is measured on the same forward passes. Word accuracy under the 36- and
94-character protocols.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train import BASE, CHARSET, load_splits  # noqa: E402

from str_distill.data.folder import FolderDataset  # noqa: E402
from str_distill.hub.loading import load_model  # noqa: E402
from str_distill.preprocess import Preprocessor  # noqa: E402
from str_distill.training.decoder_fit import decoder_model_from  # noqa: E402
from str_distill.training.metrics import normalize_protocol  # noqa: E402

WEIGHTS = (0.0, 0.3, 0.5, 1.0, 2.0, 3.0, 5.0)


def text_of(ids: list[int], tok) -> str:
    """Class ids up to the first EOS -> text."""
    n = ids.index(tok.EOS) if tok.EOS in ids else len(ids)
    return "".join(tok.charset[i - 1] for i in ids[:n])


@torch.inference_mode()
def read_set(base, model, samples: list[tuple[bytes, str]], batch: int = 64) -> list[dict]:
    pre = Preprocessor(model.config)
    tok = model.tokenizer
    rows: list[dict] = [{} for _ in samples]
    tensors = [pre(Image.open(io.BytesIO(img)).convert("RGB")) for img, _ in samples]
    groups: dict[int, list[int]] = {}
    for i, t in enumerate(tensors):
        groups.setdefault(pre.padded_width(t.shape[-1]), []).append(i)
    for w, idx in sorted(groups.items()):
        for k in range(0, len(idx), batch):
            part = idx[k : k + batch]
            x = torch.stack([pre.pad(tensors[i], w) for i in part]).contiguous(memory_format=torch.channels_last)
            feats = model.features(x)
            base_probs = base.head(feats).float().softmax(-1)
            ctc_logits = model.head(feats).float()
            mem = model.decoder_memory(feats)
            ar = model.read_attention(mem, "autoregressive").logits.float()
            par = model.read_attention(mem, "parallel", 1).logits.float()
            d_base = base.tokenizer.decode(base_probs, "ctc")
            d_ctc = tok.decode(ctc_logits.softmax(-1), "ctc")
            d_ar = tok.decode(ar.softmax(-1), "attention")
            d_par = tok.decode(par.softmax(-1), "attention")
            c = model.joint_candidates(feats, ctc_logits)
            att_lp, ctc_lp = c["att_lp"], c["ctc_lp"]
            cand = [text_of(ids, tok) for ids in c["cands"]]
            n = len(part)
            for j, i in enumerate(part):
                rows[i] = {
                    "base": d_base[j].text, "ctc": d_ctc[j].text, "ar": d_ar[j].text, "par": d_par[j].text,
                    "ctc_conf": d_ctc[j].confidence, "ar_conf": d_ar[j].confidence,
                    "ctc_min": float(d_ctc[j].char_probs.min()) if len(d_ctc[j].text) else 0.0,
                    "ar_min": float(d_ar[j].char_probs.min()) if len(d_ar[j].text) else 0.0,
                    "att_lp": [float(att_lp[j]), float(att_lp[n + j])],
                    "ctc_lp": [float(ctc_lp[j]), float(ctc_lp[n + j])],
                    "cand": [cand[j], cand[n + j]],
                }
    return rows


def rules(r: dict) -> dict[str, str]:
    out = {"default (ctc, full dictionary)": r["base"], "ctc (94-character head)": r["ctc"],
           "attention autoregressive": r["ar"], "attention parallel + 1 refinement": r["par"],
           "joint: higher confidence": r["ctc"] if r["ctc_conf"] >= r["ar_conf"] else r["ar"],
           "joint: higher minimum character probability": r["ctc"] if r["ctc_min"] >= r["ar_min"] else r["ar"]}
    for w in WEIGHTS:
        s = [r["att_lp"][k] + w * r["ctc_lp"][k] for k in (0, 1)]
        scorable = r["att_lp"][0] != float("-inf")  # a CTC reading the decoder cannot score is kept
        out[f"joint: log p_att + {w} log p_ctc"] = r["cand"][1] if scorable and s[1] > s[0] else r["cand"][0]
    return out


def score(rows: list[dict], gold: list[str]) -> dict[str, dict[str, float]]:
    res: dict[str, dict[str, float]] = {}
    for proto in ("36", "94"):
        keep = [(r, normalize_protocol(g, proto)) for r, g in zip(rows, gold) if normalize_protocol(g, proto)]
        counts: dict[str, int] = {}
        for r, g in keep:
            for name, text in rules(r).items():
                counts[name] = counts.get(name, 0) + (normalize_protocol(text, proto) == g)
        for name, c in counts.items():
            res.setdefault(name, {})[proto] = round(100.0 * c / len(keep), 2)
        for name in counts:
            res[name][f"n{proto}"] = len(keep)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", type=Path, required=True)
    ap.add_argument("--run", type=Path, required=True, help="the -o folder of train.py")
    ap.add_argument("--arm", required=True)
    ap.add_argument("--weights", default="best.pt", help="file in the arm's folder: best.pt or checkpoint.pt")
    ap.add_argument("-o", "--out", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dec-depth", type=int, default=1)
    ap.add_argument("--dec-dim", type=int, default=256)
    ap.add_argument("--dec-heads", type=int, default=8)
    ap.add_argument("--full-ctc", action="store_true",
                    help="keep the CTC head over the full dictionary (the decoder reads its 94 ASCII characters)")
    ap.add_argument("--rows", type=Path, help="also write every sample's readings and scores (JSON) to this file")
    ap.add_argument("--limit", type=int, default=0, help="smoke test: only the first N samples of each set")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    base = load_model(BASE).eval()
    model = decoder_model_from(base, CHARSET, args.dec_depth, args.dec_dim, args.dec_heads,
                               keep_ctc_charset=args.full_ctc).eval()
    saved = torch.load(args.run / args.arm / args.weights, weights_only=False)
    saved = saved.get("model", saved)
    missing, unexpected = model.load_state_dict(saved, strict=False)
    if unexpected or any(k.startswith("decoder.") or k == "pos_scale" for k in missing):
        raise SystemExit(f"decoder weights do not match: missing {missing[:4]}, unexpected {unexpected[:4]}")
    _, val = load_splits(args.data_root)
    iiit = FolderDataset(args.data_root / "IIIT5K")
    iiit_samples = [(iiit[i].image, iiit[i].label) for i in range(len(iiit) if not args.limit else args.limit)]
    out = {}
    for name, samples in (("val", val), ("IIIT5K", iiit_samples)):
        samples = samples[: args.limit] if args.limit else samples
        t0 = time.time()
        rows = read_set(base, model, samples)
        if args.rows:
            dump = json.loads(args.rows.read_text()) if args.rows.exists() else {}
            dump[name] = [{**r, "gold": g} for r, (_, g) in zip(rows, samples)]
            args.rows.write_text(json.dumps(dump))
        out[name] = score(rows, [g for _, g in samples])
        out[name + "_seconds"] = time.time() - t0
        print(name, json.dumps(out[name], indent=1), flush=True)
    args.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
