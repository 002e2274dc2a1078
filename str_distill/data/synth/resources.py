"""Resource pack (fonts, backgrounds, words) for the synthetic renderer, with a machine-local fallback.

A built pack is a folder (see :mod:`str_distill.data.synth.build_pack`)::

    manifest.json            counts, sizes, one entry per font / background, licences
    fonts/NNNNN.woff[2]      Latin-1 subsets of the filtered faces
    backgrounds/NNNNN.jpg    256-384 px JPEG q85
    words.txt.gz             one word per line

:meth:`ResourcePack.load` resolves ``path`` -> ``$STR_DISTILL_SYNTH_PACK`` -> the repository's ``.synth_pack/``
-> a fallback made of the fonts installed on this machine, procedural backgrounds and a built-in word list.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .text import BUILTIN_WORDS, PRINTABLE

logger = logging.getLogger(__name__)

ENV_VAR = "STR_DISTILL_SYNTH_PACK"
MANIFEST = "manifest.json"
PACK_FORMAT = "str-distill-synth-pack"
FONT_SUFFIXES = (".ttf", ".otf", ".ttc", ".otc", ".woff", ".woff2")
REPO_ROOT = Path(__file__).resolve().parents[3]

SYSTEM_FONT_DIRS: tuple[str, ...] = (
    "/usr/share/fonts",
    "/usr/local/share/fonts",
    "~/.fonts",
    "~/.local/share/fonts",
    "/Library/Fonts",
    "/System/Library/Fonts",
    "C:/Windows/Fonts",
)
_FALLBACK_MAX_FONTS = 64

REQUIRED_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
# TeX math/symbol fonts re-encoded with standard-looking glyph names (e.g. Debian fonts-lyx), and key-cap faces:
# their cmap/glyph names look fine but letters are drawn as symbols or inside boxes.
_DENY_FACES = re.compile(
    r"^(cmsy|cmex|cmmi|cmbsy|msam|msbm|eufm|eufb|eurm|eusm|rsfs|wasy|stmary|esint|lasy|manfnt|bbm|dsrom)\d*$"
    r"|keyboard",
    re.IGNORECASE,
)
_NOTDEF_PROBE = "\U0010fffd"  # private-use plane 16: unmapped in any Latin font -> .notdef


_FALLBACK_CACHE: dict[Any, ResourcePack] = {}


class NoFontError(RuntimeError):
    """Raised when no usable font can be found."""


@dataclass(frozen=True)
class FontFace:
    """One font face the renderer may draw with.

    Attributes:
        path: font file (TTF/OTF/TTC/WOFF/WOFF2).
        index: face index inside a collection.
        name: human-readable name ("Family Style").
        caps_only: caps-only or small-caps face: the renderer only draws upper-case text with it.
        missing: printable ASCII characters this face does not map (never drawn with it).
        weight: relative sampling weight.
        package: source (Debian package or folder).
        license: licence summary of the source.
        kinds: text kinds this face is limited to (empty: all), e.g. numbers/prices/dates for 7-segment faces.
    """

    path: str
    index: int = 0
    name: str = ""
    caps_only: bool = False
    missing: str = ""
    weight: float = 1.0
    package: str = ""
    license: str = ""
    kinds: tuple[str, ...] = ()


@dataclass
class ResourcePack:
    """Fonts, backgrounds (encoded image bytes) and words for :class:`~str_distill.data.synth.WordRenderer`.

    Attributes:
        fonts: usable faces.
        backgrounds: encoded JPEG/PNG images (decoded on demand by the renderer, which caches a few).
        words: vocabulary for the text sampler.
        root: pack folder, ``None`` for the fallback pack.
        kind: ``"pack"`` or ``"fallback"``.
        manifest: the parsed ``manifest.json`` (a synthetic one for the fallback).
    """

    fonts: list[FontFace]
    backgrounds: list[bytes] = field(default_factory=list)
    words: list[str] = field(default_factory=lambda: list(BUILTIN_WORDS))
    root: Path | None = None
    kind: str = "fallback"
    manifest: dict[str, Any] = field(default_factory=dict)

    # ----------------------------------------------------------------- loading
    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> ResourcePack:
        """Load a pack folder, or find one, or build the machine-local fallback.

        Resolution order when ``path`` is None: ``$STR_DISTILL_SYNTH_PACK``, then ``.synth_pack/`` in the
        repository root (or the current directory), then :meth:`fallback`. Logs a warning saying which is used.

        Raises:
            FileNotFoundError: ``path`` (or the environment variable) names a folder without ``manifest.json``.
            NoFontError: the fallback finds no usable font.
        """
        if path is None:
            env = os.environ.get(ENV_VAR)
            if env:
                path = env
                if not (Path(env) / MANIFEST).is_file():
                    raise FileNotFoundError(f"${ENV_VAR}={env!r} is not a synth resource pack (no {MANIFEST})")
            else:
                for cand in (REPO_ROOT / ".synth_pack", Path.cwd() / ".synth_pack"):
                    if (cand / MANIFEST).is_file():
                        path = cand
                        break
        if path is None:
            pack = cls.fallback()
            logger.warning(
                "synth: no resource pack found (set $%s or build one with `str-distill synth build-pack`); using "
                "the fallback pack: %d local font faces, procedural backgrounds only, %d built-in words",
                ENV_VAR,
                len(pack.fonts),
                len(pack.words),
            )
            return pack
        pack = cls.from_dir(path)
        logger.warning(
            "synth: using resource pack %s: %d font faces, %d backgrounds, %d words",
            pack.root,
            len(pack.fonts),
            len(pack.backgrounds),
            len(pack.words),
        )
        return pack

    @classmethod
    def from_dir(cls, path: str | os.PathLike[str]) -> ResourcePack:
        """Load a built pack folder (no search, no fallback)."""
        root = Path(path).expanduser().resolve()
        mpath = root / MANIFEST
        if not mpath.is_file():
            raise FileNotFoundError(f"{root} is not a synth resource pack (no {MANIFEST})")
        manifest = json.loads(mpath.read_text())
        if manifest.get("format") != PACK_FORMAT:
            raise ValueError(f"{mpath} is not a {PACK_FORMAT} manifest")
        fonts = []
        for f in manifest.get("fonts", []):
            fp = root / f["file"]
            if not fp.is_file():
                logger.warning("synth pack: missing font file %s (skipped)", fp)
                continue
            fonts.append(
                FontFace(
                    path=str(fp),
                    index=int(f.get("index", 0)),
                    name=f.get("name", ""),
                    caps_only=bool(f.get("caps_only", False)),
                    missing=f.get("missing", ""),
                    weight=float(f.get("weight", 1.0)),
                    package=f.get("package", ""),
                    license=f.get("license", ""),
                    kinds=tuple(f.get("kinds", ())),
                )
            )
        if not fonts:
            raise NoFontError(f"synth pack {root} lists no usable font")
        backgrounds = []
        for b in manifest.get("backgrounds", []):
            bp = root / b["file"]
            if bp.is_file():
                backgrounds.append(bp.read_bytes())
        words: list[str] = []
        wentry = manifest.get("words") or {}
        if wentry.get("file") and (root / wentry["file"]).is_file():
            raw = (root / wentry["file"]).read_bytes()
            if wentry["file"].endswith(".gz"):
                raw = gzip.decompress(raw)
            words = raw.decode("ascii", "ignore").split()
        return cls(
            fonts=fonts,
            backgrounds=backgrounds,
            words=words or list(BUILTIN_WORDS),
            root=root,
            kind="pack",
            manifest=manifest,
        )

    @classmethod
    def fallback(
        cls, font_dirs: list[str | os.PathLike[str]] | None = None, max_fonts: int = _FALLBACK_MAX_FONTS
    ) -> ResourcePack:
        """A minimal pack: fonts found on this machine, no natural backgrounds, the built-in word list.

        Args:
            font_dirs: folders to search (default: the usual system font folders, then matplotlib's fonts).
            max_fonts: stop after this many usable faces.

        Raises:
            NoFontError: no font renders A-Z, a-z and 0-9.
        """
        key = (tuple(str(d) for d in font_dirs) if font_dirs else None, max_fonts)
        cached = _FALLBACK_CACHE.get(key)
        if cached is not None:
            return cached
        dirs = [Path(d).expanduser() for d in (font_dirs or SYSTEM_FONT_DIRS)]
        if font_dirs is None:
            dirs += _package_font_dirs()
        fonts: list[FontFace] = []
        seen: set[str] = set()
        for path in find_font_files(dirs, limit=4 * max_fonts):
            info = analyze_face(path, 0)
            if info is None or info["hash"] in seen:
                continue
            seen.add(info["hash"])
            fonts.append(
                FontFace(
                    path=str(path),
                    name=info["name"],
                    caps_only=info["caps_only"],
                    missing=info["missing"],
                    package=str(Path(path).parent),
                )
            )
            if len(fonts) >= max_fonts:
                break
        if not fonts:
            raise NoFontError(
                "synth: no usable font found (searched "
                + ", ".join(str(d) for d in dirs)
                + "). Install one (Debian: `apt-get install fonts-dejavu-core`) or build a resource pack with "
                "`str-distill synth build-pack` and point $STR_DISTILL_SYNTH_PACK at it."
            )
        manifest = {
            "format": PACK_FORMAT,
            "kind": "fallback",
            "counts": {"fonts": len(fonts), "backgrounds": 0, "words": len(BUILTIN_WORDS)},
        }
        pack = cls(
            fonts=fonts, backgrounds=[], words=list(BUILTIN_WORDS), root=None, kind="fallback", manifest=manifest
        )
        _FALLBACK_CACHE[key] = pack
        return pack

    # ------------------------------------------------------------------- misc
    def decode_background(self, i: int) -> np.ndarray:
        """Decode background ``i`` to an RGB uint8 array (H, W, 3)."""
        import cv2

        buf = np.frombuffer(self.backgrounds[i], dtype=np.uint8)
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"background {i} could not be decoded")
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)

    def summary(self) -> str:
        """One line describing the pack."""
        where = str(self.root) if self.root else "fallback"
        return f"{where}: {len(self.fonts)} fonts, {len(self.backgrounds)} backgrounds, {len(self.words)} words"


def _package_font_dirs() -> list[Path]:
    out = []
    try:  # matplotlib ships DejaVu; useful on machines without system fonts
        import importlib.util

        spec = importlib.util.find_spec("matplotlib")
        if spec is not None and spec.origin:
            out.append(Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf")
    except (ImportError, ValueError):
        pass
    return out


def find_font_files(dirs: list[Path], limit: int | None = None) -> list[Path]:
    """Font files under ``dirs`` (recursive, sorted per folder, duplicates by resolved path removed)."""
    out: list[Path] = []
    seen: set[Path] = set()
    for d in dirs:
        if not d.is_dir():
            continue
        for p in sorted(d.rglob("*")):
            if p.suffix.lower() not in FONT_SUFFIXES or not p.is_file():
                continue
            rp = p.resolve()
            if rp in seen:
                continue
            seen.add(rp)
            out.append(p)
            if limit is not None and len(out) >= limit:
                return out
    return out


# ---------------------------------------------------------------------- face checks
def _mask_key(font: Any, text: str) -> tuple[tuple[int, int], bytes]:
    m = font.getmask(text, mode="L")
    return m.size, bytes(m)


def _ink(font: Any, text: str) -> bool:
    m = font.getmask(text, mode="L")
    return m.size[0] > 0 and m.size[1] > 0 and m.getbbox() is not None


def _font_tables(path: str | os.PathLike[str], index: int) -> dict[str, Any] | None:
    """cmap / names / glyph-name facts via fontTools (None if fontTools is missing or the file is unreadable)."""
    try:
        from fontTools.ttLib import TTFont
    except ImportError:
        return None
    try:
        tt = TTFont(str(path), fontNumber=index, lazy=True)
    except Exception:  # noqa: BLE001 - any parse failure means "unknown"
        return {"error": True}
    try:
        cmap = tt.getBestCmap()
        name = tt["name"] if "name" in tt else None

        def nm(*ids: int) -> str:
            if name is None:
                return ""
            for i in ids:
                rec = name.getDebugName(i)
                if rec:
                    return str(rec).strip()
            return ""

        family = nm(16, 1)
        style = nm(17, 2)
        post_names = False
        glyph_names: dict[str, str] = {}
        if cmap:
            fmt = tt["post"].formatType if "post" in tt else 3
            cff = "CFF " in tt
            post_names = cff or fmt in (1, 2)
            for ch in REQUIRED_CHARS + "$&":
                g = cmap.get(ord(ch))
                if g is not None:
                    glyph_names[ch] = g
        return {
            "error": False,
            "cmap": set(cmap) if cmap else None,
            "family": family,
            "style": style,
            "full": nm(4),
            "post_names": post_names,
            "glyph_names": glyph_names,
            "variable": "fvar" in tt,
        }
    except Exception:  # noqa: BLE001
        return {"error": True}
    finally:
        tt.close()


def _name_ok(ch: str, g: str) -> bool:
    base = g.split(".")[0]
    if base in (ch, f"uni{ord(ch):04X}", f"u{ord(ch):04X}", f"u{ord(ch):05X}"):
        return True
    return {"$": base == "dollar", "&": base == "ampersand"}.get(ch, False) or (
        ch.isdigit() and base == ("zero one two three four five six seven eight nine".split()[int(ch)])
    )


def _synthetic_name(g: str) -> bool:
    return g.startswith(("glyph", "cid", "gid", "g")) and g.lstrip("glyphcid").isdigit()


def analyze_face(path: str | os.PathLike[str], index: int = 0, size: int = 48) -> dict[str, Any] | None:
    """Check that a face can render scene text; return its facts, or None if it is rejected.

    A face is rejected when a glyph of A-Z/a-z/0-9 is blank or .notdef, the cmap is symbol-only, glyph names
    are non-standard (e.g. ``$`` drawn as sterling), a space draws ink, or the letters are not distinct.
    Use :func:`analyze_face_reason` to get the rejection reason.

    Returns:
        dict with ``name, family, style, caps_only, missing, hash, variable``.
    """
    res = analyze_face_reason(path, index, size)
    return res if isinstance(res, dict) else None


def analyze_face_reason(path: str | os.PathLike[str], index: int = 0, size: int = 48) -> dict[str, Any] | str:
    """Like :func:`analyze_face` but returns the rejection reason (str) instead of None."""
    from PIL import ImageFont

    if _DENY_FACES.search(Path(path).stem):
        return "symbol-font-denylist"
    tables = _font_tables(path, index)
    if tables is not None:
        if tables["error"]:
            return "unreadable"
        if tables["cmap"] is None:
            return "symbol-cmap"
        cmap = tables["cmap"]
        if any(ord(c) not in cmap for c in REQUIRED_CHARS):
            return "missing-alnum"
        names = tables["glyph_names"]
        if tables["post_names"] and names:
            real = {c: g for c, g in names.items() if not _synthetic_name(g)}
            if real:
                bad = [c for c, g in real.items() if c.isalnum() and not _name_ok(c, g)]
                if len(bad) > 6:
                    return "nonstandard-glyph-names"
                for c in "$&":
                    if c in real and not _name_ok(c, real[c]):
                        return "wrong-dollar-ampersand"
        missing = "".join(c for c in PRINTABLE if c != " " and ord(c) not in cmap)
    else:
        missing = ""
    try:
        font = ImageFont.truetype(str(path), size, index=index, layout_engine=ImageFont.Layout.BASIC)
    except Exception:  # noqa: BLE001
        return "pillow-cannot-open"
    try:
        notdef = _mask_key(font, _NOTDEF_PROBE)
        masks: dict[str, tuple[tuple[int, int], bytes]] = {}
        for c in REQUIRED_CHARS:
            if not _ink(font, c):
                return "blank-glyph"
            k = _mask_key(font, c)
            if k == notdef:
                return "notdef-glyph"
            masks[c] = k
        if _ink(font, " ") or _ink(font, "  "):
            return "ink-on-space"
        if len({masks[c] for c in REQUIRED_CHARS[:26]}) < 22 or len({masks[c] for c in "0123456789"}) < 9:
            return "letters-not-distinct"
        for c in "$&":
            if c not in missing:
                if not _ink(font, c) or _mask_key(font, c) == notdef:
                    missing += c
                elif _mask_key(font, c) == masks["S" if c == "$" else "E"]:
                    return "wrong-dollar-ampersand"
        # punctuation that is unmapped (no cmap: approximated by Pillow), blank or drawn as .notdef is "missing"
        for c in PRINTABLE:
            if c == " " or c in REQUIRED_CHARS or c in missing:
                continue
            if not _ink(font, c) or (tables is None and _mask_key(font, c) == notdef):
                missing += c
        caps_only = _caps_like(font, masks)
        rendered = font.getmask("Hamburgefonstiv QRWXYZ 0123456789 $&?!", mode="L")
        digest = hashlib.md5(bytes(rendered) + repr(rendered.size).encode()).hexdigest()
    except Exception:  # noqa: BLE001 - broken glyph programs
        return "render-error"
    family = (tables or {}).get("family") or Path(path).stem
    if _DENY_FACES.search(family) or _DENY_FACES.search((tables or {}).get("full") or ""):
        return "symbol-font-denylist"
    style = (tables or {}).get("style") or ""
    name = (tables or {}).get("full") or f"{family} {style}".strip()
    return {
        "name": name,
        "family": family,
        "style": style,
        "caps_only": caps_only,
        "missing": "".join(sorted(set(missing))),
        "hash": digest,
        "variable": bool((tables or {}).get("variable", False)),
    }


def _caps_like(font: Any, masks: dict[str, tuple[tuple[int, int], bytes]]) -> bool:
    """True for caps-only / small-caps faces (lower case drawn as capitals)."""
    same = sum(masks[c] == masks[c.upper()] for c in "abcdefghijklmnopqrstuvwxyz")
    if same >= 13:
        return True

    def top(c: str) -> float:
        return -font.getbbox(c, anchor="ls")[1]

    def bottom(c: str) -> float:
        return font.getbbox(c, anchor="ls")[3]

    xh = statistics.median(top(c) for c in "acemnorsuvwxz")
    asc = statistics.median(top(c) for c in "bdhkl")
    cap = statistics.median(top(c) for c in "HIKLMNE")
    desc = statistics.median(bottom(c) for c in "gpqy")
    if xh <= 0 or cap <= 0:
        return False
    # small caps: ascender letters no taller than x-height letters and no descenders
    return asc / xh < 1.12 and desc < 0.08 * cap
