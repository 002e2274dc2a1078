"""Training throughput of a recognizer: images/s of full optimizer steps, with and without the data pipeline.

Examples (from the repository root)::

    PYTHONPATH=. python3 benchmarks/train_throughput.py --model siga-vit-s --batch-sizes 256 512 --compile both
    PYTHONPATH=. python3 benchmarks/train_throughput.py --model siga-vit-t --model-arg depth=2 --device cpu \
        --batch-sizes 32 --data synth --workers 1 --steps 5 --warmup 2
    PYTHONPATH=. python3 benchmarks/train_throughput.py --model ppocrv6-small --charset ppocrv6 --device cpu \
        --batch-sizes 32 --precision fp32 bf16 --steps 10 --warmup 3        # the CTC family on 2 CPU cores

For each batch size and compile setting it prints one JSON line: ``model_images_per_s`` (a device-resident batch,
the model's ceiling), and with ``--data`` also ``data_images_per_s`` (the DataLoader alone) and
``train_images_per_s`` (optimizer steps fed by the DataLoader), plus GPU utilization while training with data.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="siga-vit-s")
    p.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--charset", default="94")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 512])
    p.add_argument("--compile", choices=("off", "on", "both"), default="off")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), nargs="+", default=["auto"],
                   help="one or more: each is measured in turn")
    p.add_argument("--data", nargs="*", default=[], metavar="SPEC", help="also measure with this data (e.g. synth)")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--device", default="auto")
    p.add_argument("--output", default="runs/throughput", help="throw-away run folder")
    args = p.parse_args(argv)

    import torch

    from str_distill.data import MixedBatchStream, SampleProcessor, build_sources, make_loader, parse_specs
    from str_distill.data.collate import Batch
    from str_distill.data.mix import default_num_workers
    from str_distill.devices import resolve_device
    from str_distill.preprocess import Preprocessor
    from str_distill.training.benchmark import benchmark
    from str_distill.training.run import TrainSpec, build_model
    from str_distill.training.trainer import TrainConfig, Trainer

    device = resolve_device(args.device)
    compiles = {"off": [False], "on": [True], "both": [False, True]}[args.compile]
    spec = TrainSpec.from_args(argparse.Namespace(data=[], seed=0, model=args.model, model_arg=args.model_arg,
                                                  charset=args.charset))
    for bsz, comp, precision in [(b, c, p) for b in args.batch_sizes for c in compiles for p in args.precision]:
        model, _ = build_model(spec)
        tok = model.tokenizer
        pre = Preprocessor(model.config)
        if pre.variable_width:  # training batches of the variable-width family are padded to its minimum width
            pre = Preprocessor(model.config, fixed_width=int(pre.data["min_width"]))
        size = (pre.size[0], pre.fixed_width or pre.size[1])
        if args.data:
            sources, _ = build_sources(parse_specs(args.data), tok.charset, tok.max_length)
            proc = SampleProcessor(tok, pre)
            workers = default_num_workers() if args.workers is None else args.workers

            def data(start: int, sources=sources, proc=proc, bsz=bsz, workers=workers):
                stream = MixedBatchStream(sources, proc, bsz, start=start)
                return make_loader(stream, workers, pin_memory=device.type == "cuda")
        else:
            def data(start: int, bsz=bsz, size=size):
                labels = ["throughput", "of", "a", "model", "42"] * (bsz // 5 + 1)
                imgs = torch.randn(bsz, 3, *size)
                while True:
                    yield Batch(imgs, labels[:bsz], start)

        cfg = TrainConfig(batch_size=bsz, steps=10**6, compile=comp, precision=precision,
                          progress="none", save_every=0, save_minutes=0, val_every=0)
        trainer = Trainer(model, cfg, data, args.output, device=device, log=lambda m: print(m, file=sys.stderr))
        try:
            res = benchmark(trainer, steps=args.steps, warmup=args.warmup)
        except torch.cuda.OutOfMemoryError:
            res = {"error": "out of memory"}
        if not args.data:
            for k in ("data_images_per_s", "train_images_per_s", "gpu_util_percent"):
                res.pop(k, None)
        print(json.dumps({"model": args.model, "batch_size": bsz, "compile": comp, "precision": precision,
                          "bf16_autocast": trainer.amp, **res}), flush=True)
        del trainer, model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
