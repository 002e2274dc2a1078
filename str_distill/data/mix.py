"""Weighted mixing of data sources into a deterministic, worker-parallel stream of ready-made batches.

:class:`MixedBatchStream` is an ``IterableDataset`` whose items are whole :class:`~str_distill.data.collate.Batch`
objects (use it with ``DataLoader(batch_size=None)``, see :func:`make_loader`). Batch ``b`` depends only on
``(seed, b)``: its composition, the samples drawn and their augmentation. With ``k`` workers, worker ``w`` makes
batches ``start + w, start + w + k, ...`` and the DataLoader returns them in order, so the stream is identical for
any number of workers and a run resumed at step ``s`` (``start=s``) sees exactly the batches it would have seen.

Composition: batch ``b`` takes ``floor((b + 1) B w_i) - floor(b B w_i)`` samples from source ``i`` (``w`` the
normalized weights, ``B`` the batch size), the next ones in that source's order, so the mix matches the weights
to within a sample or two in every batch; the rounding difference is settled by drawing sources in proportion to
their weights (those extra samples are drawn at random). Finite sources are read in a fresh random permutation
every pass (epoch); the synthetic source renders index ``p`` for its ``p``-th sample. A rejected sample is
recorded in the batch's bad-sample report and replaced by a random sample of the same source.

Sharding (multi-process training): with ``rank=r`` and ``world_size=N``, batch ``b`` of a process is batch
``b * N + r`` of the stream above (``batch_size`` being the per-process batch), so the ``N`` processes read disjoint
shards, and at step ``b`` together the samples one process reads with an ``N`` times larger batch: one permutation
per epoch shared by all (as a distributed sampler does) and distinct synthetic indices.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, IterableDataset, Subset, get_worker_info

from .collate import Batch, RawSample, SampleProcessor, collate, identity
from .report import BadSampleReport
from .spec import DataSpec
from .workers import fork_safe_opencv, worker_init

__all__ = [
    "MixedBatchStream",
    "Source",
    "SynthSource",
    "build_sources",
    "default_num_workers",
    "make_loader",
    "open_set",
    "split_validation",
]


class SynthSource(Dataset):
    """Random-access adapter of :class:`~str_distill.data.synth.SynthDataset`: ``source[i]`` renders sample ``i``.

    Args:
        charset: the model's charset (literal characters): labels are drawn inside it.
        max_length: longest label.
        pack_path: resource pack (default: ``$STR_DISTILL_SYNTH_PACK``, ``.synth_pack/`` or system fonts).
        seed: render seed.
        config: a :class:`~str_distill.data.synth.SynthConfig` to start from (charset/max_len are overridden).
        length: make it a finite set of this many samples (e.g. a fixed synthetic validation set).
    """

    name = "synth"

    def __init__(
        self,
        charset: str,
        max_length: int,
        pack_path: str | Path | None = None,
        seed: int = 0,
        config: Any = None,
        length: int | None = None,
    ) -> None:
        from .synth import SynthConfig, SynthDataset

        has_lower = any(c.islower() for c in charset)
        has_upper = any(c.isupper() for c in charset)
        cfg = (config or SynthConfig()).replace(
            charset=charset, max_len=max_length, fold_case=has_lower != has_upper
        )
        self.dataset = SynthDataset(pack_path, seed=seed, config=cfg)
        self.length = length

    def preload(self) -> None:
        """Load the resource pack now (call before forking workers so that they share it)."""
        self.dataset.preload()

    def __len__(self) -> int:
        if self.length is None:
            raise TypeError("the synthetic source is infinite")
        return self.length

    def __getitem__(self, index: int) -> RawSample:
        if self.length is not None and not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} synthetic samples")
        img, label = self.dataset[index]
        return RawSample(img, label, f"synth#{index}")


@dataclass
class Source:
    """One input of the mix.

    Attributes:
        name: used in logs and bad-sample reports.
        dataset: map-style dataset whose items are :class:`RawSample`; for an infinite source any index works.
        weight: relative sampling weight (> 0).
        augment: apply the CPU :class:`~str_distill.data.augment.Augmenter` to this source's samples.
        infinite: the dataset has no length (the synthetic renderer).
    """

    name: str
    dataset: Any
    weight: float = 1.0
    augment: bool = True
    infinite: bool = False

    def __post_init__(self) -> None:
        if not (self.weight > 0 and math.isfinite(self.weight)):
            raise ValueError(f"source {self.name!r}: weight must be > 0, got {self.weight}")
        if not self.infinite and len(self.dataset) == 0:
            raise ValueError(f"source {self.name!r} is empty")


class MixedBatchStream(IterableDataset):
    """Deterministic stream of :class:`Batch` objects mixing weighted sources (see the module docstring).

    Args:
        sources: the inputs and their weights.
        processor: label checks, decoding, augmentation and preprocessing.
        batch_size: samples per batch.
        seed: stream seed.
        start: index of the first batch (the training step to resume at).
        num_batches: stop after this many batches (``None``: infinite).
        max_consecutive_bad: give up (``RuntimeError`` naming the source, with the report) after this many
            rejected samples in a row from one source: a source where nothing is usable is a configuration error.
        rank, world_size: this process's shard of a multi-process job (see the module docstring).
    """

    def __init__(
        self,
        sources: list[Source],
        processor: SampleProcessor,
        batch_size: int,
        seed: int = 0,
        start: int = 0,
        num_batches: int | None = None,
        max_consecutive_bad: int = 1000,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        super().__init__()
        if not sources:
            raise ValueError("no data sources")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size), got rank {rank} of {world_size}")
        self.rank, self.world_size = int(rank), int(world_size)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.sources = sources
        self.processor = processor
        self.batch_size = batch_size
        self.seed = int(seed)
        self.start = int(start)
        self.num_batches = num_batches
        self.max_consecutive_bad = max_consecutive_bad
        w = np.array([s.weight for s in sources], dtype=np.float64)
        self._w = w / w.sum()
        self._perm_cache: dict[int, tuple[int, np.ndarray]] = {}

    @property
    def weights(self) -> list[float]:
        """Normalized weights."""
        return self._w.tolist()

    def nominal(self, num_samples: int) -> np.ndarray:
        """``floor(num_samples * w_i)`` per source: the stream position of each source after ``num_samples``."""
        return np.floor(num_samples * self._w + 1e-9).astype(np.int64)

    def counts(self, b: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Samples of each source in batch ``b`` and the first stream position of each.

        The nominal counts ``floor((b + 1) B w_i) - floor(b B w_i)`` are non-negative, give each finite source
        consecutive positions (so an epoch visits every sample once) and sum to ``B`` up to the number of sources;
        the difference is settled by drawing sources in proportion to their weights.
        """
        bsz = self.batch_size
        start = self.nominal(b * bsz)
        n = self.nominal((b + 1) * bsz) - start
        diff = bsz - int(n.sum())
        while diff != 0:
            i = int(rng.choice(len(n), p=self._w))
            if diff > 0:
                n[i] += 1
                diff -= 1
            elif n[i] > 0:
                n[i] -= 1
                diff += 1
        return n, start

    def _index(self, si: int, position: int) -> int:
        src = self.sources[si]
        if src.infinite:
            return position
        n = len(src.dataset)
        epoch, offset = divmod(position, n)
        cached = self._perm_cache.get(si)
        if cached is None or cached[0] != epoch:
            perm = np.random.default_rng([self.seed, 7919, si, epoch]).permutation(n).astype(np.int32)
            cached = (epoch, perm)
            self._perm_cache[si] = cached
        return int(cached[1][offset])

    def make_batch(self, b: int) -> Batch:
        """Build batch ``b`` (deterministic in ``(seed, b)``, and this process's shard of it)."""
        step = b
        b = b * self.world_size + self.rank  # the stream's batch this process makes at this step
        rng = np.random.default_rng([self.seed, 104729, b])
        counts, before = self.counts(b, rng)
        report = BadSampleReport()
        samples: list[tuple[torch.Tensor, str]] = []
        per_source: dict[str, int] = {}
        for si, (src, n) in enumerate(zip(self.sources, counts)):
            if n == 0:
                continue
            per_source[src.name] = per_source.get(src.name, 0) + int(n)
            nominal = int(self.nominal((b + 1) * self.batch_size)[si] - before[si])
            for k in range(int(n)):
                # nominal slots take the source's next stream positions; extra slots draw a random sample
                if k < nominal:
                    index = self._index(si, int(before[si]) + k)
                else:
                    index = int(rng.integers(1 << 48)) if src.infinite else int(rng.integers(len(src.dataset)))
                failures = 0
                while True:
                    out = self.processor(src.dataset[index], src.name, report, rng, src.augment)
                    if out is not None:
                        samples.append(out)
                        break
                    failures += 1
                    if failures >= self.max_consecutive_bad:
                        raise RuntimeError(
                            f"data source {src.name!r}: {failures} rejected samples in a row; nothing usable?\n"
                            + report.format()
                        )
                    index = int(rng.integers(1 << 48)) if src.infinite else int(rng.integers(len(src.dataset)))
        batch = collate(samples, step, report, per_source)
        tok = self.processor.tokenizer
        batch.targets = tok.encode(batch.labels)
        batch.ctc_targets, batch.ctc_lengths = tok.encode_ctc(batch.labels)
        return batch

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        b = self.start + wid
        end = None if self.num_batches is None else self.start + self.num_batches
        while end is None or b < end:
            yield self.make_batch(b)
            b += nw

    def __len__(self) -> int:
        if self.num_batches is None:
            raise TypeError("infinite stream has no len()")
        return self.num_batches


def make_loader(
    stream: MixedBatchStream, num_workers: int = 0, pin_memory: bool = False, prefetch_factor: int = 2
) -> DataLoader:
    """A DataLoader over ready-made batches (``batch_size=None``), workers initialized by :func:`worker_init`.

    Synthetic sources are preloaded first so that forked workers share the resource pack.
    """
    for s in stream.sources:
        if hasattr(s.dataset, "preload"):
            s.dataset.preload()
    kw: dict[str, Any] = {}
    if num_workers > 0:
        fork_safe_opencv()
        kw = {"prefetch_factor": prefetch_factor, "worker_init_fn": worker_init, "persistent_workers": False}
    return DataLoader(
        stream, batch_size=None, num_workers=num_workers, pin_memory=pin_memory, collate_fn=identity, **kw
    )


def open_set(path: str | Path) -> Dataset:
    """A labelled set (``labels.tsv`` folder or LMDB) as a map-style dataset of :class:`RawSample`."""
    from .folder import FolderDataset
    from .lmdb import LmdbDataset
    from .spec import is_lmdb

    p = Path(path)
    return LmdbDataset(p) if is_lmdb(p) else FolderDataset(p)


def split_validation(dataset: Any, fraction: float, seed: int = 0) -> tuple[Subset, Subset]:
    """Deterministic ``(train, val)`` split of a map-style dataset; ``val`` holds ``ceil(fraction * n)`` samples."""
    n = len(dataset)
    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    n_val = min(max(1, math.ceil(fraction * n)), n - 1)
    perm = np.random.default_rng([seed, 31337, n]).permutation(n)
    return Subset(dataset, sorted(perm[n_val:].tolist())), Subset(dataset, sorted(perm[:n_val].tolist()))


def build_sources(
    specs: list[DataSpec],
    charset: str,
    max_length: int,
    seed: int = 0,
    synth_pack: str | Path | None = None,
    augment_real: bool = True,
    augment_synth: bool = False,
    val_split: float = 0.0,
) -> tuple[list[Source], list[tuple[str, Any]]]:
    """Turn parsed ``--data`` specs into :class:`Source` objects (and validation sets carved from the real ones).

    Args:
        specs: from :func:`~str_distill.data.spec.parse_specs`; zero-weight specs are skipped.
        charset, max_length: the model's (the synthetic renderer draws labels inside the charset).
        synth_pack: resource pack for ``synth``.
        augment_real, augment_synth: apply CPU augmentation to real / synthetic sources.
        val_split: carve this fraction of every real set out as a validation set (not trained on); a folder of
            sets is split set by set, exactly as ``data pack --val-split`` and ``eval --val-split`` do.

    Returns:
        ``(sources, [(name, validation dataset), ...])``.
    """
    from .spec import find_sets

    sources: list[Source] = []
    val: list[tuple[str, Any]] = []
    for spec in specs:
        weight = 1.0 if spec.weight is None else spec.weight
        if spec.kind == "synth":
            if weight > 0:
                ds = SynthSource(charset, max_length, synth_pack, seed=seed)
                sources.append(Source("synth", ds, weight, augment_synth, infinite=True))
            continue
        assert spec.path is not None
        parts = [open_set(p) for p in find_sets(spec.path)]
        if val_split > 0:  # carved from each set on its own: the samples `data pack` / `eval --val-split` carve
            pairs = [split_validation(p, val_split, seed) for p in parts]
            parts = [t for t, _ in pairs]
            vs = [v for _, v in pairs]
            val.append((f"{spec.name}:val", vs[0] if len(vs) == 1 else ConcatDataset(vs)))
        ds = parts[0] if len(parts) == 1 else ConcatDataset(parts)
        if weight > 0:
            sources.append(Source(spec.name, ds, weight, augment_real))
    seen: dict[str, int] = {}
    for s in sources:  # names identify sources in reports: make them unique
        seen[s.name] = seen.get(s.name, 0) + 1
        if seen[s.name] > 1:
            s.name = f"{s.name}#{seen[s.name]}"
    return sources, val


def default_num_workers() -> int:
    """CPU cores minus two (one for the training process, one for the system), at least 0."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, n - 2)
