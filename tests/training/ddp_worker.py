"""Run by ``test_distributed.py``, alone or under ``torchrun``: ``python ddp_worker.py OUT train ARGS...`` builds the
trainer of ``str-distill train ARGS...``, trains, and every process saves its parameters to ``OUT/rank<r>.pt``."""

from __future__ import annotations

import sys

import torch

from str_distill.cli import build_parser
from str_distill.cli.train import build_trainer
from str_distill.training.distributed import init_from_env, shutdown


def main(argv: list[str]) -> int:
    out, rest = argv[0], argv[1:]
    args = build_parser().parse_args(rest)
    ctx, args.device = init_from_env(args.device)
    try:
        trainer = build_trainer(args, log=lambda m: None)
        trainer.fit()
        state = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
        torch.save(state, f"{out}/rank{ctx.rank}.pt")
    except BaseException:
        shutdown(wait=False)
        raise
    shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
