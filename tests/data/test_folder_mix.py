"""labels.tsv folders, --data specs, weighted mixing, determinism, bad-sample reporting (also from workers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_tiny_config, render_word
from PIL import Image
from torch.utils.data import DataLoader

from str_distill.data import (
    Augmenter,
    BadSampleReport,
    FolderDataset,
    GpuAugment,
    MixedBatchStream,
    SampleProcessor,
    Source,
    build_sources,
    parse_spec,
    parse_specs,
    read_labels_tsv,
)
from str_distill.data.collate import identity
from str_distill.preprocess import Preprocessor
from str_distill.tokenizer import Tokenizer


def make_set(root: Path, words: list[str], extra_lines: tuple[str, ...] = ()) -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for i, w in enumerate(words):
        Image.fromarray(render_word(w or "x", size=(24, 72), seed=i)).save(root / "images" / f"{i}.png")
        lines.append(f"images/{i}.png\t{w}")
    (root / "labels.tsv").write_text("\n".join([*lines, *extra_lines]) + "\n", encoding="utf-8")
    return root


def processor(charset: str = "94", max_length: int = 25, unknown: str = "skip") -> SampleProcessor:
    cfg = make_tiny_config(charset=charset, max_label_length=max_length)
    return SampleProcessor(Tokenizer(charset, max_length), Preprocessor(cfg), Augmenter(), unknown=unknown)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ specs / folders
def test_parse_specs(tmp_path: Path) -> None:
    a = make_set(tmp_path / "a", ["one"])
    colon = make_set(tmp_path / "we:ird", ["two"])
    specs = parse_specs(["synth:0.7", f"{a}:0.3", str(a), str(colon), f"{colon}:2"])
    assert [(s.kind, s.weight) for s in specs] == [("synth", 0.7), ("folder", 0.3), ("folder", None),
                                                  ("folder", None), ("folder", 2.0)]
    assert specs[3].path == colon and specs[4].path == colon
    assert parse_spec(str(tmp_path)).kind == "sets"  # a folder of sets
    with pytest.raises(FileNotFoundError, match="does not exist"):
        parse_spec(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="weight"):
        parse_spec(f"{a}:-1")
    with pytest.raises(ValueError, match="all --data weights are 0"):
        parse_specs(["synth:0"])


def test_read_labels_tsv(tmp_path: Path) -> None:
    p = tmp_path / "labels.tsv"
    p.write_bytes("\ufeffa.png\tHello World\n\nb.png\n c.png \ttab\tinside\n".encode())
    assert read_labels_tsv(p) == [("a.png", "Hello World"), ("b.png", ""), ("c.png", "tab\tinside")]
    p.write_bytes(b"a.png\t\xff\xfe\n")
    with pytest.raises(ValueError, match="line 1 is not UTF-8"):
        read_labels_tsv(p)
    with pytest.raises(FileNotFoundError, match="labels.tsv"):
        FolderDataset(tmp_path / "nowhere")


# ------------------------------------------------------------------------------------------------ bad samples
def bad_set(tmp_path: Path) -> Path:
    root = make_set(tmp_path / "bad", ["good", "fine", "", "x" * 30, "a b", "naïve"])
    (root / "images" / "corrupt.png").write_bytes(b"\x89PNG broken")
    with open(root / "labels.tsv", "a", encoding="utf-8") as f:
        f.write("images/corrupt.png\tcorrupt\nimages/missing.png\tmissing\n")
    return root


def test_bad_samples_are_counted_never_dropped_silently(tmp_path: Path) -> None:
    ds = FolderDataset(bad_set(tmp_path))
    proc, report = processor(), BadSampleReport()
    outputs = [proc(ds[i], ds.name, report) for i in range(len(ds))]
    kept = [o[1] for o in outputs if o is not None]
    assert kept == ["good", "fine", "naive"]  # NFKD folds the diaeresis: not a bad sample
    assert report.count("empty_label") == 1
    assert report.count("too_long") == 1
    assert report.count("out_of_charset") == 1  # the space
    assert report.count("undecodable_image") == 1
    assert report.count("missing_image") == 1
    assert report.total == 5 and report.seen == {"bad": 8}
    text = report.format()
    assert "out_of_charset" in text and "corrupt.png" in text and "5 rejected of 8" in text
    # strip policy: the sample is kept, the repair is reported
    report2 = BadSampleReport()
    assert processor(unknown="strip")(ds[4], ds.name, report2)[1] == "ab"  # type: ignore[index]
    assert report2.count("stripped_chars") == 1 and report2.total == 0


def test_bad_samples_reach_the_main_process_from_workers(tmp_path: Path) -> None:
    root = bad_set(tmp_path)
    sources, _ = build_sources(parse_specs([str(root)]), Tokenizer("94").charset, 25)
    stream = MixedBatchStream(sources, processor(), batch_size=4, num_batches=4)
    main = BadSampleReport()
    for b in stream:
        main.merge(b.bad)
    merged = BadSampleReport()
    batches = list(DataLoader(stream, batch_size=None, num_workers=2, collate_fn=identity))
    for b in batches:
        merged.merge(b.bad)
        assert len(b) == 4  # rejected samples are replaced: batches stay full
    assert [b.index for b in batches] == [0, 1, 2, 3]
    assert merged.counts == main.counts and merged.total > 0


def test_a_source_with_nothing_usable_fails_clearly(tmp_path: Path) -> None:
    root = make_set(tmp_path / "s", ["a b", "c d"])
    sources = [Source("s", FolderDataset(root))]
    stream = MixedBatchStream(sources, processor(), batch_size=2, max_consecutive_bad=20)
    with pytest.raises(RuntimeError, match="'s': 20 rejected samples in a row"):
        stream.make_batch(0)


# ------------------------------------------------------------------------------------------------ mixing
def test_weights_are_exact_and_epochs_cover_every_sample(tmp_path: Path) -> None:
    a = make_set(tmp_path / "a", [f"a{i}" for i in range(6)])
    b = make_set(tmp_path / "b", [f"b{i}" for i in range(4)])
    sources, _ = build_sources(parse_specs([f"{a}:3", f"{b}:1"]), Tokenizer("94").charset, 25, augment_real=False)
    stream = MixedBatchStream(sources, processor(), batch_size=4, seed=1)
    batches = [stream.make_batch(i) for i in range(4)]
    assert all(bt.sources == {"a": 3, "b": 1} for bt in batches)
    from_a = [lbl for bt in batches[:2] for lbl in bt.labels if lbl.startswith("a")]
    assert sorted(from_a) == [f"a{i}" for i in range(6)]  # one full pass of a (6 samples) in 2 batches
    # uneven weights: every batch is full, no source count goes negative, the totals track the weights
    c = make_set(tmp_path / "c", ["c0"])
    specs = parse_specs([f"{a}:0.9", f"{b}:0.02974", f"{c}:0.00382", f"{a}:0.06644"])
    sources, _ = build_sources(specs, Tokenizer("94").charset, 25)
    stream = MixedBatchStream(sources, processor(), batch_size=32)
    counts = np.stack([stream.counts(i, np.random.default_rng(i))[0] for i in range(200)])
    assert (counts >= 0).all() and (counts.sum(1) == 32).all()
    assert np.allclose(counts.sum(0) / (200 * 32), stream.weights, atol=2e-3)


def test_stream_is_deterministic_resumable_and_worker_independent(tmp_path: Path) -> None:
    a = make_set(tmp_path / "a", [f"w{i}" for i in range(5)])
    sources, val = build_sources(parse_specs([str(a)]), Tokenizer("94").charset, 25, val_split=0.2)
    assert len(val) == 1 and len(val[0][1]) == 1 and len(sources[0].dataset) == 4
    s1 = MixedBatchStream(sources, processor(), batch_size=3, seed=5, num_batches=5)
    seq = list(s1)
    s2 = MixedBatchStream(sources, processor(), batch_size=3, seed=5, start=3, num_batches=2)
    resumed = list(DataLoader(s2, batch_size=None, num_workers=2, collate_fn=identity))
    for x, y in zip(seq[3:], resumed):
        assert x.index == y.index and x.labels == y.labels and torch.equal(x.images, y.images)
    other = MixedBatchStream(sources, processor(), batch_size=3, seed=6).make_batch(0)
    assert not torch.equal(other.images, seq[0].images)


def test_val_split_of_a_folder_of_sets_is_carved_set_by_set(tmp_path: Path) -> None:
    """`train --val-split` carves from each set on its own, as `data pack` and `eval --val-split` do."""
    from str_distill.data.mix import split_validation

    root = tmp_path / "sets"
    a = make_set(root / "a", [f"a{i}" for i in range(10)])
    b = make_set(root / "b", [f"b{i}" for i in range(30)])
    sources, val = build_sources(parse_specs([str(root)]), Tokenizer("94").charset, 25, val_split=0.1, seed=2)
    (name, vset), = val
    got = sorted(vset[i].label for i in range(len(vset)))
    want = sorted(f"{s}{i}" for s, n in (("a", 10), ("b", 30))
                  for i in split_validation(list(range(n)), 0.1, 2)[1].indices)
    assert name == "sets:val" and got == want and len(got) == 1 + 3
    train = {sources[0].dataset[i].label for i in range(len(sources[0].dataset))}
    assert len(train) == 36 and not train & set(got)
    assert (a / "labels.tsv").is_file() and (b / "labels.tsv").is_file()


# ------------------------------------------------------------------------------------------------ augmentation
def test_cpu_augmenter_is_seeded_and_keeps_format() -> None:
    img = render_word("augment", size=(40, 160))
    aug = Augmenter(strength=1.5)
    outs = [aug(img, np.random.default_rng(s)) for s in (0, 0, 1)]
    assert all(o.dtype == np.uint8 and o.ndim == 3 and o.shape[2] == 3 for o in outs)
    assert np.array_equal(outs[0], outs[1]) and not np.array_equal(outs[0], outs[2])
    assert np.array_equal(Augmenter(strength=0)(img, np.random.default_rng(0)), img)
    tall = render_word("tall", size=(400, 900))
    assert aug(tall, np.random.default_rng(2)).shape[0] <= 64  # big crops are shrunk before augmenting


def test_gpu_augment_is_seeded_per_step() -> None:
    x = torch.randn(4, 3, 32, 128).clamp(-1, 1)
    aug = GpuAugment(p=1.0, seed=3)
    a, b, c = aug(x, 7), aug(x, 7), aug(x, 8)
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, x)


def test_synth_source_draws_labels_inside_the_charset() -> None:
    pytest.importorskip("cv2")
    from str_distill.data import SynthSource

    try:
        src = SynthSource("0123456789", max_length=8, seed=0)
        samples = [src[i] for i in range(3)]
    except Exception as e:  # no font at all on this machine
        pytest.skip(f"synthetic renderer unavailable: {e}")
    assert all(s.label.isdigit() and len(s.label) <= 8 and s.image.ndim == 3 for s in samples)
    assert src[1].label == samples[1].label  # random access is deterministic
