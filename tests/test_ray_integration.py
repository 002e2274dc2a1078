"""``str_distill.integrations.ray``: the batch function without Ray, then a local Ray Data job over 300 files."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from str_distill import Recognizer
from str_distill.integrations.ray import OUTPUT_COLUMNS, BatchRecognizer, recognize_batch


@pytest.fixture(scope="module")
def rec(tiny_model_dir: Path) -> Recognizer:
    return Recognizer.from_pretrained(tiny_model_dir, device="cpu")


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def test_bytes_column_gives_one_row_per_input_and_error_rows(rec: Recognizer, render) -> None:  # noqa: ANN001
    words = [render(w, seed=i) for i, w in enumerate(["alpha", "beta", "gamma"])]
    batch = {"path": np.array(["a.png", "bad.png", "b.png", "none.png", "c.png"]),
             "bytes": np.array([png(words[0]), b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, png(words[1]), None,
                                png(words[2])], dtype=object)}
    out = recognize_batch(rec, batch, batch_size=2)
    assert set(out) == {"path", *OUTPUT_COLUMNS}  # the bytes are not carried into the output
    assert list(out["path"]) == ["a.png", "bad.png", "b.png", "none.png", "c.png"]
    expected = rec.predict(words)
    assert [out["text"][i] for i in (0, 2, 4)] == [p.text for p in expected]
    assert [out["confidence"][i] for i in (0, 2, 4)] == pytest.approx([p.confidence for p in expected], abs=1e-6)
    assert out["error"][0] is None and out["error"][2] is None
    assert out["text"][1] is None and math.isnan(out["confidence"][1]) and out["error"][1].startswith("not an image")
    assert out["error"][3] == "missing image (null value)"


def test_paths_arrays_structs_pandas_and_arrow(rec: Recognizer, tmp_path: Path, render) -> None:  # noqa: ANN001
    img = render("delta", seed=5)
    Image.fromarray(img).save(tmp_path / "d.png")
    want = rec.predict([img])[0].text
    out = recognize_batch(rec, {"path": [str(tmp_path / "d.png"), str(tmp_path / "missing.png")]})
    assert list(out["text"]) == [want, None] and out["error"][1] == "no such file"
    assert list(out["path"]) == [str(tmp_path / "d.png"), str(tmp_path / "missing.png")]  # paths are kept
    arrays = {"image": np.stack([img, img]), "id": np.array([7, 8])}
    out = recognize_batch(rec, arrays)
    assert list(out["text"]) == [want, want] and list(out["id"]) == [7, 8] and "image" not in out
    structs = {"img": [{"bytes": png(img), "path": "x.png"}, {"bytes": None, "path": str(tmp_path / "d.png")}]}
    assert list(recognize_batch(rec, structs, column="img")["text"]) == [want, want]
    pd = pytest.importorskip("pandas")
    df = recognize_batch(rec, pd.DataFrame({"path": [str(tmp_path / "d.png")]}))
    assert isinstance(df, pd.DataFrame) and df["text"].tolist() == [want]
    pa = pytest.importorskip("pyarrow")
    table = recognize_batch(rec, pa.table({"bytes": [png(img), b""]}))
    assert table.column_names == list(OUTPUT_COLUMNS) and table.column("error").to_pylist()[1].startswith("empty")
    with pytest.raises(KeyError, match="no image column"):
        recognize_batch(rec, {"id": [1]})


def test_callable_class_loads_once_and_reads(tiny_model_dir: Path, render) -> None:  # noqa: ANN001
    udf = BatchRecognizer(str(tiny_model_dir), device="cpu", batch_size=4, decode_workers=2)
    out = udf({"bytes": [png(render("echo"))] * 3})
    assert len(out["text"]) == 3 and len(set(out["text"])) == 1 and all(e is None for e in out["error"])


@pytest.mark.slow
def test_ray_data_job_keeps_every_row(tiny_model_dir: Path, tmp_path: Path, render) -> None:  # noqa: ANN001
    """A local Ray (2 CPUs): 300 files read with read_binary_files, 2 actors, Parquet out; bad files are rows."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'str-distill[ray]')")
    pq = pytest.importorskip("pyarrow.parquet")
    src = tmp_path / "crops"
    src.mkdir()
    base = [render(w, size=(32, 100), seed=i) for i, w in enumerate(["one", "two", "three"])]
    for i in range(300):
        (src / f"{i:03d}.png").write_bytes(png(base[i % 3]) if i % 50 else b"not an image")
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    except Exception as e:  # e.g. a container without the shared memory Ray needs
        pytest.skip(f"Ray is installed but cannot start here: {type(e).__name__}: {e}")
    try:
        ds = ray.data.read_binary_files(str(src), include_paths=True)
        ds = ds.map_batches(BatchRecognizer, fn_constructor_kwargs={"model": str(tiny_model_dir), "device": "cpu",
                                                                    "threads": 1},
                            compute=ray.data.ActorPoolStrategy(size=2), batch_size=64, num_cpus=0.5)  # reads: 1
        ds.write_parquet(str(tmp_path / "out"))
    finally:
        ray.shutdown()
    table = pq.read_table(tmp_path / "out")
    rows = {Path(p).name: (t, e) for p, t, e in zip(table.column("path").to_pylist(), table.column("text").to_pylist(),
                                                   table.column("error").to_pylist())}
    assert len(rows) == 300 == table.num_rows
    bad = {n for n, (_, e) in rows.items() if e is not None}
    assert bad == {f"{i:03d}.png" for i in range(0, 300, 50)}
    want = [p.text for p in Recognizer.from_pretrained(tiny_model_dir, device="cpu").predict(base)]
    assert all(rows[f"{i:03d}.png"][0] == want[i % 3] for i in range(300) if i % 50)
