"""Synthetic scene-text word crops: resource pack, text sampler, renderer and an iterable dataset.

>>> from str_distill.data.synth import ResourcePack, WordRenderer, SynthConfig
>>> r = WordRenderer(ResourcePack.load(), SynthConfig(), seed=0)
>>> img, label = r.render(0)  # uint8 H x W x 3 RGB, printable-ASCII label
"""

from __future__ import annotations

from .dataset import SynthDataset
from .render import SynthConfig, WordRenderer
from .resources import FontFace, NoFontError, ResourcePack
from .text import DEFAULT_MIX, PRINTABLE, TextSampler

__all__ = [
    "DEFAULT_MIX",
    "PRINTABLE",
    "FontFace",
    "NoFontError",
    "ResourcePack",
    "SynthConfig",
    "SynthDataset",
    "TextSampler",
    "WordRenderer",
]
