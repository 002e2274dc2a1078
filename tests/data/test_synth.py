"""Synthetic word renderer: determinism, labels, charset, dataset worker split, contact sheet, packs.

CPU only, a few seconds; needs one system font (CI: Debian fonts-dejavu-core).
"""

from __future__ import annotations

import gzip
import logging
import pickle
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from str_distill.data.synth import (
    PRINTABLE,
    NoFontError,
    ResourcePack,
    SynthConfig,
    SynthDataset,
    TextSampler,
    WordRenderer,
)
from str_distill.data.synth import resources as pack_mod
from str_distill.data.synth.dataset import shard_indices


@pytest.fixture(scope="module")
def fallback_pack() -> ResourcePack:
    try:
        return ResourcePack.fallback()
    except NoFontError:
        pytest.skip("no system font installed")


@pytest.fixture(scope="module")
def renderer(fallback_pack: ResourcePack) -> WordRenderer:
    return WordRenderer(fallback_pack, SynthConfig(), seed=7)


def test_render_is_deterministic(fallback_pack: ResourcePack, renderer: WordRenderer) -> None:
    other = WordRenderer(fallback_pack, SynthConfig(), seed=7)
    for i in (0, 1, 5, 123):
        a, la = renderer.render(i)
        b, lb = other.render(i)
        assert la == lb
        assert a.shape == b.shape and np.array_equal(a, b)
    # order of calls (cache state) does not matter
    c, lc = other.render(1)
    d, ld = renderer.render(1)
    assert lc == ld and np.array_equal(c, d)
    # other index / other seed -> other sample
    x0, l0 = renderer.render(0)
    x1, l1 = renderer.render(1)
    assert l0 != l1 or x0.shape != x1.shape or not np.array_equal(x0, x1)
    y0, m0 = WordRenderer(fallback_pack, SynthConfig(), seed=8).render(0)
    assert m0 != l0 or y0.shape != x0.shape or not np.array_equal(y0, x0)


def test_images_and_labels_are_sane(renderer: WordRenderer) -> None:
    cfg = renderer.config
    lo, hi = cfg.height_range
    labels = []
    for i in range(120):
        img, label = renderer.render(i)
        assert isinstance(img, np.ndarray) and img.dtype == np.uint8
        assert img.ndim == 3 and img.shape[2] == 3
        assert lo <= img.shape[0] <= hi
        assert img.shape[1] >= 4
        assert img.flags["C_CONTIGUOUS"]
        assert 1 <= len(label) <= cfg.max_len
        assert all(c in PRINTABLE for c in label), label
        assert label == label.strip()
        assert float(img.std()) > 3.0  # something is drawn
        labels.append(label)
    assert len(set(labels)) > 100
    assert any(lab.islower() for lab in labels) and any(lab.isupper() for lab in labels)
    assert any(any(c.isdigit() for c in lab) for lab in labels)


def test_charset_restriction(fallback_pack: ResourcePack) -> None:
    charset = "0123456789abcdefghijklmnopqrstuvwxyz"
    r = WordRenderer(fallback_pack, SynthConfig(charset=charset, max_len=12), seed=1)
    for i in range(60):
        _, label = r.render(i)
        assert 1 <= len(label) <= 12
        assert set(label) <= set(charset), label
    r = WordRenderer(fallback_pack, SynthConfig(charset=charset, fold_case=True), seed=1)
    labels = [r.render(i)[1] for i in range(60)]
    assert all(set(lab) <= set(charset) for lab in labels)
    upper = charset.upper()
    r = WordRenderer(fallback_pack, SynthConfig(charset=upper, fold_case=True), seed=1)
    assert all(set(r.render(i)[1]) <= set(upper) for i in range(30))
    digits = WordRenderer(fallback_pack, SynthConfig(charset="0123456789"), seed=2)
    assert all(digits.render(i)[1].isdigit() for i in range(30))


def test_caps_only_faces_get_upper_case(fallback_pack: ResourcePack) -> None:
    faces = [pack_mod.FontFace(**{**f.__dict__, "caps_only": True}) for f in fallback_pack.fonts[:2]]
    caps = ResourcePack(fonts=faces, words=["hello", "World"], kind="fallback")
    r = WordRenderer(caps, SynthConfig(), seed=0)
    for i in range(40):
        label = r.render(i)[1]
        assert label == label.upper(), label
    with pytest.raises(ValueError):  # no face can draw a lower-case-only charset
        WordRenderer(caps, SynthConfig(charset="abc"), seed=0)


def test_digits_only_faces(fallback_pack: ResourcePack) -> None:
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    face = pack_mod.FontFace(
        **{**fallback_pack.fonts[0].__dict__, "kinds": ("number", "price", "date"), "missing": letters}
    )
    r = WordRenderer(ResourcePack(fonts=[face], kind="fallback"), SynthConfig(), seed=0)
    for i in range(30):
        label = r.render(i)[1]
        assert not any(c in letters for c in label), label


def test_text_sampler() -> None:
    ts = TextSampler(["alpha", "Beta", "gamma", "x" * 40, "naïve"], seed=3, max_len=25)
    assert "x" * 40 not in ts.words and "naïve" not in ts.words
    a = [ts.sample(random.Random(i)) for i in range(200)]
    b = [ts.sample(random.Random(i)) for i in range(200)]
    assert a == b
    assert all(1 <= len(s) <= 25 and set(s) <= set(PRINTABLE) for s in a)
    assert all(ts.sample(np.random.default_rng(5)) == ts.sample(np.random.default_rng(5)) for _ in range(3))
    restricted = TextSampler(["alpha"], seed=0, charset="0123456789-")
    assert all(set(restricted.sample(random.Random(i))) <= set("0123456789-") for i in range(100))
    assert all(TextSampler(["a"], max_len=3).sample(random.Random(i)).__len__() <= 3 for i in range(100))


def test_shard_indices() -> None:
    assert list(shard_indices(0, 2, 7)) == [0, 2, 4, 6]
    assert list(shard_indices(1, 2, 7)) == [1, 3, 5]
    assert list(shard_indices(1, 2, 10, rank=1, world_size=2)) == [3, 7]
    it = shard_indices(2, 3, None)
    assert [next(it) for _ in range(3)] == [2, 5, 8]


def test_dataset_worker_split(fallback_pack: ResourcePack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import torch

    monkeypatch.delenv(pack_mod.ENV_VAR, raising=False)  # no pack anywhere: the (cached) fallback is used
    monkeypatch.setattr(pack_mod, "REPO_ROOT", tmp_path)
    monkeypatch.chdir(tmp_path)
    ds = SynthDataset(pack_path=None, seed=11, length=8)
    assert len(ds) == 8
    assert len(pickle.dumps(ds)) < 10_000
    single = list(ds)
    assert [lab for _, lab in single] == [ds[i][1] for i in range(8)]
    assert len(pickle.dumps(ds)) < 10_000  # still cheap after the renderer exists
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2, collate_fn=lambda x: x)
    multi = list(loader)
    assert len(multi) == 8
    # DataLoader interleaves workers 0, 1, 0, 1, ...: worker w renders w, w + 2, ... -> same stream as 1 process
    for (a, la), (b, lb) in zip(single, multi):
        assert la == lb and np.array_equal(a, b)
    inf = iter(SynthDataset(seed=11))
    assert next(inf)[1] == single[0][1]
    with pytest.raises(TypeError):
        len(SynthDataset(seed=0))


def test_contact_sheet(tmp_path: Path, fallback_pack: ResourcePack) -> None:
    from str_distill.data.synth.sheet import write_contact_sheet

    out = write_contact_sheet(tmp_path / "sheet.png", n=6, seed=0, pack=fallback_pack, cols=3)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    from PIL import Image

    assert Image.open(out).size[0] > 300


def test_load_fallback_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    monkeypatch.delenv(pack_mod.ENV_VAR, raising=False)
    monkeypatch.setattr(pack_mod, "REPO_ROOT", tmp_path)
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.WARNING):
        try:
            pack = ResourcePack.load()
        except NoFontError:
            pytest.skip("no system font installed")
    assert pack.kind == "fallback" and pack.fonts and not pack.backgrounds and pack.words
    assert "fallback" in caplog.text
    monkeypatch.setenv(pack_mod.ENV_VAR, str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError):
        ResourcePack.load()
    empty = tmp_path / "nofonts"
    empty.mkdir()
    with pytest.raises(NoFontError):
        ResourcePack.fallback(font_dirs=[empty])


def test_tiny_pack_from_local_dirs(tmp_path: Path, fallback_pack: ResourcePack, monkeypatch, caplog) -> None:
    from PIL import Image

    from str_distill.data.synth.build_pack import BuildOptions, build_pack

    fonts = tmp_path / "fonts"
    fonts.mkdir()
    for f in fallback_pack.fonts[:2]:
        shutil.copy(f.path, fonts / Path(f.path).name)
    bgs = tmp_path / "bgs"
    bgs.mkdir()
    rng = np.random.default_rng(0)
    for k in range(3):
        arr = (rng.random((150, 200, 3)) * 255).astype(np.uint8)
        Image.fromarray(arr).save(bgs / f"noise{k}.png")
    Image.new("RGB", (200, 150), (90, 90, 90)).save(bgs / "flat.png")  # rejected: flat
    words = tmp_path / "words.txt"
    words.write_text("Apple\nbanana\ncherry's\nnaïve\n" + "\n".join(f"word{k}" for k in range(50)) + "\n")

    out = tmp_path / "pack"
    manifest = build_pack(
        BuildOptions(
            output=out,
            font_packages=[],
            texlive=False,
            font_dirs=[fonts],
            bg_packages=[],
            bg_dirs=[bgs],
            word_packages=[],
            word_files=[words],
            use_apt=False,
            jobs=1,
            max_fonts=2,
            max_backgrounds=10,
        )
    )
    assert manifest["counts"]["fonts"] >= 1 and manifest["counts"]["backgrounds"] == 3
    assert (out / "manifest.json").is_file()
    wl = gzip.decompress((out / "words.txt.gz").read_bytes()).decode().split()
    assert "Apple" in wl and "cherry's" not in wl and "naïve" not in wl

    monkeypatch.setenv(pack_mod.ENV_VAR, str(out))
    with caplog.at_level(logging.WARNING):
        pack = ResourcePack.load()
    assert pack.kind == "pack" and str(out) in caplog.text
    assert len(pack.backgrounds) == 3 and all(f.path.endswith((".woff", ".woff2", ".ttf", ".otf")) for f in pack.fonts)
    r = WordRenderer(pack, SynthConfig(p_natural_bg=1.0), seed=0)
    for i in range(10):
        img, label = r.render(i)
        assert img.dtype == np.uint8 and img.ndim == 3 and 1 <= len(label) <= 25
