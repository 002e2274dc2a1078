"""The package's layers run one way: a module imports only from its own layer or the layers below it.

Every ``import`` in the package counts, including those inside functions (``ast.walk`` over the whole file), so a
circle cannot hide behind a late import. From the bottom up:

1. **foundation**: modules that import nothing above them. ``_version``; ``tokenizer`` (text <-> ids);
   ``imageio`` (image decoding and limits); ``preprocess`` (the resize transform); ``devices`` (device and dtype
   names);
   ``backends.onnx_reader`` (the torch-free reader of exported files, which must import nothing from the package
   at all so that the file can be copied into a service on its own; ``export`` writes the format it reads).
2. **data**: datasets, collation, augmentation, synthetic text (``data.workers`` holds the DataLoader worker helpers
   that ``data.mix`` and ``data.synth`` share).
3. **models**: pure ``nn.Module`` families and the registry of architectures. Never the weights manifest.
4. **hub**: safetensors files, the weights manifest (which names the default model) and the loader.
5. **export**: ONNX export of a network.
6. **backends**: other runtimes behind the networks' call signature (onnxruntime runs an in-memory export).
7. **predictor**: ``predictor`` (:class:`Recognizer`), ``prefetch`` (its decoding threads) and the ``ocr`` pipeline
   (detection + recognition of whole images).
8. **training / integrations**: ``training`` (fine-tuning, distillation, pretraining, publishing weights),
   ``integrations`` (Ray), and the figures: ``viz`` (which draws the CCD masks of ``training``) and ``ocr.draw``
   (detections drawn on the image, with ``viz``'s palette and font).
9. **facade**: the top-level ``str_distill`` package, re-exporting the public surface.
10. **cli**: ``cli`` and ``__main__``.

Two more checks: no module imports itself back through others (a circle inside one layer), and every module of the
package is placed in a layer (a new module must be placed here first).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "str_distill"

#: Layers from the bottom up; each is a list of module prefixes (the longest matching prefix places a module).
LAYERS: list[tuple[str, list[str]]] = [
    ("foundation", ["str_distill._version", "str_distill.tokenizer", "str_distill.imageio", "str_distill.preprocess",
                    "str_distill.devices", "str_distill.backends.onnx_reader"]),
    ("data", ["str_distill.data"]),
    ("models", ["str_distill.models"]),
    ("hub", ["str_distill.hub"]),
    ("export", ["str_distill.export"]),
    ("backends", ["str_distill.backends"]),
    ("predictor", ["str_distill.predictor", "str_distill.prefetch", "str_distill.ocr"]),
    ("training / integrations", ["str_distill.training", "str_distill.integrations", "str_distill.viz",
                                 "str_distill.ocr.draw"]),
    ("facade", ["str_distill"]),
    ("cli", ["str_distill.cli", "str_distill.__main__"]),
]
#: Modules that must not import anything from the package.
STANDALONE = ("str_distill.backends.onnx_reader",)


def _modules() -> dict[str, tuple[Path, bool]]:
    """Module name -> (file, is a package)."""
    mods = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        mods[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return mods


MODULES = _modules()


def _imports(name: str) -> list[tuple[str, int]]:
    """``(imported module, line)`` for every import of the package in ``name``'s file, at any depth.

    ``from pkg import x`` counts as an import of ``pkg.x`` when that is a module, else of ``pkg``.
    """
    path, is_pkg = MODULES[name]
    here = name if is_pkg else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")[: len(here.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in MODULES else mod for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in MODULES:  # str_distill.x.y where y is a name -> str_distill.x
                t = t.rpartition(".")[0]
            if t and t != name:
                found.append((t, node.lineno))
    return found


def layer_of(name: str) -> int | None:
    """Index in :data:`LAYERS` of the longest prefix matching ``name`` (``None``: not placed)."""
    best, best_len = None, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (name == p or name.startswith(p + ".")) and len(p) > best_len:
                best, best_len = i, len(p)
    return best


def upward_imports() -> list[str]:
    """``module:line imports target (layer a -> higher layer b)`` for every import that goes up."""
    bad = []
    for name in MODULES:
        low = layer_of(name)
        for target, line in _imports(name):
            high = layer_of(target)
            if low is not None and high is not None and high > low:
                bad.append(f"{name}:{line} imports {target} ({LAYERS[low][0]} -> {LAYERS[high][0]})")
            if name in STANDALONE:
                bad.append(f"{name}:{line} imports {target} (it must import nothing from the package)")
    return bad


def import_cycles() -> list[list[str]]:
    """Circles in the module graph (Tarjan), ignoring imports of a module's own parent packages (Python runs a
    package's ``__init__`` before its modules anyway)."""
    graph = {m: {t for t, _ in _imports(m) if not m.startswith(t + ".")} for m in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for m in sorted(graph):
        if m not in index:
            visit(m)
    return cycles


def test_every_module_is_placed_in_a_layer() -> None:
    assert [m for m in MODULES if layer_of(m) is None] == []


def test_imports_go_down_the_layers() -> None:
    assert upward_imports() == []


def test_no_import_cycles() -> None:
    assert import_cycles() == []


@pytest.mark.parametrize("source, expected", [
    ("from ..hub.manifest import load_manifest\n", "models -> hub"),
    ("def f():\n    from str_distill.predictor import Recognizer\n", "models -> predictor"),
])
def test_the_check_sees_upward_imports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str,
                                       expected: str) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(source)
    monkeypatch.setitem(MODULES, "str_distill.models.probe", (probe, False))
    assert any(expected in b for b in upward_imports() if b.startswith("str_distill.models.probe"))
