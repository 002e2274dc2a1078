"""The documents hold together: every relative link and ``#anchor`` resolves, ``docs/index.md`` lists every
document, and CI runs exactly the test command that CONTRIBUTING.md gives."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = sorted({REPO / "README.md", REPO / "CONTRIBUTING.md", *(REPO / "docs").glob("*.md"),
               REPO / "recipes" / "gpu" / "README.md"})
LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    text = heading.strip().lower().replace("`", "").replace("*", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found, in_code = set(), False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and re.match(r"#{1,6} ", line):
            found.add(slug(line.lstrip("#")))
    return found


def broken_links(path: Path, root: Path = REPO) -> list[str]:
    """``file: target (why)`` for each relative link of ``path`` whose file or section does not exist."""
    bad = []
    for m in LINK.finditer(path.read_text(encoding="utf-8")):
        target = m.group(1)
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file) if file else path
        if not dest.exists():
            bad.append(f"{path.relative_to(root)}: {target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{path.relative_to(root)}: {target} (no such section)")
    return bad


def test_links_and_anchors_resolve() -> None:
    assert [b for p in DOCS if p.exists() for b in broken_links(p)] == []


def test_the_link_check_sees_a_moved_section(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# A\n\n## Kept `here`: yes\n")
    (tmp_path / "b.md").write_text("[x](a.md#kept-here-yes) [y](a.md#moved) [z](c.md) [w](https://x.org)\n")
    assert broken_links(tmp_path / "b.md", tmp_path) == ["b.md: a.md#moved (no such section)",
                                                          "b.md: c.md (no such file)"]


def test_docs_index_lists_every_document() -> None:
    index = (REPO / "docs" / "index.md").read_text(encoding="utf-8")
    listed = {m.group(1) for m in LINK.finditer(index)}
    assert [p.name for p in sorted((REPO / "docs").glob("*.md")) if p.name != "index.md" and p.name not in listed] == []


def test_ci_runs_the_documented_test_command() -> None:
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()[-1]
    block = re.search(r"## Run the tests.*?```bash\n(.*?)\n```", (REPO / "CONTRIBUTING.md").read_text(), re.S)
    assert block, "CONTRIBUTING.md has no test command under 'Run the tests'"
    assert block.group(1).strip() == ci.replace("pip install -q ", "pip install ").strip()  # CI's pip is quiet
