"""Names in the docs and code tell the truth: every weight name has a manifest record (or is an architecture), only
the manifest's default is called "the default", and what is loaded is shown by name."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from str_distill.models import list_models

REPO = Path(__file__).resolve().parents[1]
MANIFEST = json.loads((REPO / "weights_manifest.json").read_text())
RECORDS = set(MANIFEST["models"])
DEFAULT = MANIFEST["default"]
ARCHS = set(list_models())
#: Where a user reads names: the README, the docs, the notebook, the package's docstrings and messages.
TEXTS = sorted({REPO / "README.md", *(REPO / "docs").rglob("*.md"), *(REPO / "examples").glob("*.ipynb"),
                *(REPO / "str_distill").rglob("*.py"), *REPO.glob("CONTRIBUTING*.md")})

_ANY = "|".join(sorted(map(re.escape, ARCHS | RECORDS), key=len, reverse=True))
_ARCH = "|".join(sorted(map(re.escape, ARCHS), key=len, reverse=True))
#: A weight name: an architecture, optionally followed by ``.tag`` parts (``ppocrv6-small.scene-ft-neck``).
WEIGHT = re.compile(rf"(?<![\w./-])((?:{_ARCH})(?:\.[A-Za-z0-9][\w-]*)*)(?![\w-])")
#: "`name`, the (bundled) default", "`name` (the default", "the default model `name`".
CLAIMS = (
    re.compile(rf"`({_ANY})`[^.`\n]{{0,40}}?\b(?:the|is the|as the|\()\s*(?:bundled |shipped )?default\b"
               r"(?! (?:the|on|for|to|if|when)\b)", re.I),
    re.compile(rf"\bdefault (?:model|weights|recognizer)(?: is)?[ ,(:]*`({_ANY})`", re.I),
)
#: Words near a claim that make it about the past ("the previous default").
PAST = re.compile(r"previous|former|\bold\b|earlier|until|\bwas\b|\bnot\b|replaced", re.I)


def _line(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _rel(path: Path) -> Path:
    return path.relative_to(REPO) if path.is_relative_to(REPO) else path


def unknown_weight_names(path: Path) -> list[str]:
    """``file:line: name`` for each weight name in ``path`` that is neither a manifest record nor an architecture
    (file names such as ``ppocrv6-small.en.onnx`` are not weight names)."""
    text = path.read_text(encoding="utf-8")
    bad = []
    for m in WEIGHT.finditer(text):
        name = m.group(1)
        if name in RECORDS or name in ARCHS or re.match(r"\.(onnx|safetensors|json|txt|py)\b", text[m.end():]):
            continue
        if re.search(r"\.(onnx|safetensors|json)$", name):
            continue
        bad.append(f"{_rel(path)}:{_line(text, m.start())}: {name}")
    return bad


def wrong_default_claims(path: Path, default: str = DEFAULT) -> list[str]:
    """``file:line: name`` for each place in ``path`` that calls a model other than ``default`` the default."""
    text = path.read_text(encoding="utf-8")
    bad = []
    for claim in CLAIMS:
        for m in claim.finditer(text):
            if m.group(1) != default and not PAST.search(m.group(0) + text[m.end():m.end() + 40]):
                bad.append(f"{_rel(path)}:{_line(text, m.start())}: {m.group(1)} called the default")
    return bad


def test_every_weight_name_has_a_record() -> None:
    assert [b for p in TEXTS for b in unknown_weight_names(p)] == []


def test_only_the_manifest_default_is_called_the_default() -> None:
    assert [b for p in TEXTS for b in wrong_default_claims(p)] == []


def test_the_checks_catch_what_they_look_for(tmp_path: Path) -> None:
    doc = tmp_path / "probe.md"
    doc.write_text("Use `ppocrv6-small.scene-ft`, the bundled default.\nOr ppocrv6-small.en, or "
                   "`ppocrv6-small.en.onnx`.\nThe default model `ppocrv6-small.scene-ft` reads.\n"
                   "`ppocrv6-small.scene-ft` (the previous default) is kept.\n")
    assert len(wrong_default_claims(doc, default="ppocrv6-small.scene-ft-neck")) == 2
    assert wrong_default_claims(doc, default="ppocrv6-small.scene-ft") == []
    assert [b.rsplit(" ", 1)[-1] for b in unknown_weight_names(doc)] == ["ppocrv6-small.en"]


def test_fallback_default_is_the_manifests() -> None:
    from str_distill.predictor import DEFAULT_MODEL

    assert DEFAULT_MODEL == DEFAULT and DEFAULT in RECORDS


@pytest.mark.parametrize("name", [None, "ppocrv6-small"])
def test_repr_names_the_loaded_weights(name: str | None) -> None:
    from str_distill import Recognizer

    rec = Recognizer.from_pretrained(name, device="cpu")
    assert rec.name == (name or DEFAULT) and f"weights={rec.name!r}" in repr(rec)
