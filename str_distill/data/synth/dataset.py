"""Worker-aware iterable dataset of synthetic word crops rendered on the fly."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from .render import SynthConfig, WordRenderer
from .resources import ResourcePack

_PACKS: dict[str, ResourcePack] = {}


def _load_pack_cached(path: str | os.PathLike[str] | None) -> ResourcePack:
    """One :class:`ResourcePack` per process and path (workers load theirs lazily)."""
    key = str(path) if path is not None else "<auto>"
    pack = _PACKS.get(key)
    if pack is None:
        pack = ResourcePack.load(path)
        _PACKS[key] = pack
    return pack


def shard_indices(
    worker: int, num_workers: int, length: int | None, rank: int = 0, world_size: int = 1, start: int = 0
) -> Iterator[int]:
    """Sample indices for one worker of one rank: ``start + g, start + g + k, ...`` with ``k`` the total number of
    workers over all ranks and ``g = rank * num_workers + worker``; stops below ``start + length`` when finite."""
    if not 0 <= worker < num_workers or not 0 <= rank < world_size:
        raise ValueError("worker/rank out of range")
    stride = num_workers * world_size
    first = start + rank * num_workers + worker
    if length is None:
        return itertools.count(first, stride)
    return iter(range(first, start + length, stride))


class SynthDataset(IterableDataset):
    """Infinite (or ``length``-long) stream of ``(uint8 H x W x 3 RGB image, label)`` pairs.

    Sample ``i`` is ``WordRenderer(pack, config, seed).render(i)``. With a DataLoader of ``k`` workers, worker
    ``w`` renders indices ``w, w + k, w + 2k, ...`` (and under ``torch.distributed`` the ranks interleave too), so
    the stream is deterministic for a seed and no index is rendered twice. The pack is loaded lazily, once per
    process, so pickling the dataset to spawn workers is cheap; call :meth:`preload` to load it before a fork.

    Args:
        pack_path: pack folder; ``None`` resolves like :meth:`ResourcePack.load`.
        seed: stream seed.
        length: number of samples (over all workers); ``None`` for an infinite stream.
        config: rendering knobs.
        rank, world_size: distributed split; default from ``torch.distributed`` when it is initialised.
        transform: optional callable applied to each image (e.g. resize + to-tensor).
    """

    def __init__(
        self,
        pack_path: str | os.PathLike[str] | None = None,
        seed: int = 0,
        length: int | None = None,
        config: SynthConfig | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        transform: Any = None,
    ) -> None:
        super().__init__()
        if length is not None and length < 0:
            raise ValueError("length must be >= 0 or None")
        self.pack_path = None if pack_path is None else str(pack_path)
        self.seed = int(seed)
        self.length = length
        self.config = config or SynthConfig()
        self.rank = rank
        self.world_size = world_size
        self.transform = transform
        self.epoch = 0
        self._renderer: WordRenderer | None = None
        from ..workers import fork_safe_opencv

        fork_safe_opencv()  # this process will fork DataLoader workers that use OpenCV

    # pickling (spawned workers) must not carry the pack or the renderer caches
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_renderer"] = None
        return state

    def set_epoch(self, epoch: int) -> None:
        """Finite streams: offset the indices by ``epoch * length`` so each epoch sees new samples."""
        self.epoch = int(epoch)

    def preload(self) -> ResourcePack:
        """Load the pack in this process now (before forking DataLoader workers, to share its memory)."""
        return _load_pack_cached(self.pack_path)

    @property
    def renderer(self) -> WordRenderer:
        """This process's renderer (created on first use)."""
        if self._renderer is None:
            self._renderer = WordRenderer(_load_pack_cached(self.pack_path), self.config, seed=self.seed)
        return self._renderer

    def _split(self) -> tuple[int, int, int, int]:
        info = get_worker_info()
        worker, nworkers = (info.id, info.num_workers) if info is not None else (0, 1)
        rank, world = self.rank, self.world_size
        if rank is None or world is None:
            dist = torch.distributed
            if dist.is_available() and dist.is_initialized():
                rank = dist.get_rank() if rank is None else rank
                world = dist.get_world_size() if world is None else world
        return worker, nworkers, int(rank or 0), int(world or 1)

    def indices(self) -> Iterator[int]:
        """The sample indices this process/worker renders."""
        worker, nworkers, rank, world = self._split()
        start = self.epoch * self.length if self.length is not None else 0
        return shard_indices(worker, nworkers, self.length, rank, world, start)

    def __iter__(self) -> Iterator[tuple[np.ndarray, str]]:
        if get_worker_info() is not None:  # one core per DataLoader worker: no OpenCV thread pool per worker
            import cv2

            cv2.setNumThreads(1)
        renderer = self.renderer
        for i in self.indices():
            img, label = renderer.render(i)
            if self.transform is not None:
                img = self.transform(img)
            yield img, label

    def __len__(self) -> int:
        if self.length is None:
            raise TypeError("infinite SynthDataset has no len()")
        return self.length

    def __getitem__(self, index: int) -> tuple[np.ndarray, str]:
        """Random access to sample ``index`` (same pixels as the stream)."""
        return self.renderer.render(index)
