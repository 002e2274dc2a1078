"""Training data: labelled folders and LMDBs, the synthetic stream, weighted mixing, augmentation, bad-sample reports.

>>> from str_distill.data import parse_specs  # doctest: +SKIP
>>> specs = parse_specs(["synth:0.7", "/data/IIIT5K_train:0.3"])  # doctest: +SKIP

The synthetic renderer lives in :mod:`str_distill.data.synth`. Nothing here imports OpenCV or lmdb at import time.
"""

from __future__ import annotations

from .augment import AugmentConfig, Augmenter, GpuAugment
from .collate import Batch, RawSample, SampleProcessor, collate, decode_image
from .folder import FolderDataset, read_labels_tsv
from .lmdb import LmdbDataset, LmdbWriter, convert_folder, write_lmdb
from .mix import MixedBatchStream, Source, SynthSource, build_sources, make_loader, open_set, split_validation
from .report import REASONS, BadSampleReport
from .spec import DataSpec, find_sets, parse_spec, parse_specs

__all__ = [
    "REASONS",
    "AugmentConfig",
    "Augmenter",
    "BadSampleReport",
    "Batch",
    "DataSpec",
    "FolderDataset",
    "GpuAugment",
    "LmdbDataset",
    "LmdbWriter",
    "MixedBatchStream",
    "RawSample",
    "SampleProcessor",
    "Source",
    "SynthSource",
    "build_sources",
    "collate",
    "convert_folder",
    "decode_image",
    "find_sets",
    "make_loader",
    "open_set",
    "parse_spec",
    "parse_specs",
    "read_labels_tsv",
    "split_validation",
    "write_lmdb",
]
