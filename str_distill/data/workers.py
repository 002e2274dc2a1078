"""DataLoader worker helpers shared by the training streams (:mod:`str_distill.data.mix`), the synthetic renderer
(:mod:`str_distill.data.synth`) and CCD pretraining: OpenCV made safe to fork, one thread per worker."""

from __future__ import annotations

import torch

__all__ = ["fork_safe_opencv", "worker_init"]


def fork_safe_opencv() -> None:
    """Limit OpenCV to one thread in *this* (parent) process before DataLoader workers are forked.

    OpenCV's thread pool does not survive ``fork``: a worker forked after the parent ran a multi-threaded OpenCV call
    deadlocks on its first OpenCV call. Calling this before forking (the loaders here do) avoids it; the parallelism
    of data loading comes from the workers anyway.
    """
    try:
        import cv2
    except ImportError:
        return
    cv2.setNumThreads(1)


def worker_init(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: one thread per worker for torch and OpenCV (the workers are the parallelism)."""
    torch.set_num_threads(1)
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:
        pass
