"""Build the synthetic-data resource pack from Debian packages and/or local folders.

Steps (see ``docs/synth.md``):

1. ``apt-get update`` and ``apt-get download`` the font, word-list and background packages into a cache folder and
   unpack each with ``dpkg -x`` (no system change; ``--apt-mode install`` uses ``apt-get install`` instead for the
   font and word packages). ``--no-apt`` uses local folders only (``--font-dir``, ``--bg-dir``, ``--word-file``).
2. Filter font faces: A-Z, a-z, 0-9 must render (no blank / .notdef glyph), no symbol cmap or non-standard glyph
   names, a space must not draw ink, ``$`` / ``&`` must be the right glyphs; dedupe by family+style and by a hash
   of rendered text; flag caps-only / small-caps faces.
3. Pick up to ``--max-fonts`` faces round-robin over families, subset each to Latin-1 + euro, dashes and quotes
   (fontTools), save WOFF2 (needs ``brotli``) else WOFF (zlib) else plain TTF/OTF, checking Pillow renders it.
4. Backgrounds: images from wallpaper / texture packages (also inside ``.pk3`` zips), dropping normal/bump/gloss
   maps, flat images, images with transparency and near-duplicates; downsize to 256-384 px, JPEG q85.
5. Words: Debian ``wamerican-large`` (SCOWL), ASCII only, no possessives.
6. Write ``manifest.json`` (counts, sizes, fonts with package / licence / caps-only flag, backgrounds with
   package / licence) and enforce ``--max-size-mb`` by dropping backgrounds, then fonts.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import math
import multiprocessing as mp
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .resources import FONT_SUFFIXES, MANIFEST, PACK_FORMAT, REQUIRED_CHARS, analyze_face_reason
from .text import PRINTABLE, clean_words

logger = logging.getLogger(__name__)

# The Latin font packages measured in docs/synth (klee, noto-extra and rampart left out on purpose).
DEFAULT_FONT_PACKAGES: tuple[str, ...] = tuple(
    """
    fonts-3270 fonts-adf-accanthis fonts-adf-baskervald fonts-adf-berenis fonts-adf-gillius fonts-adf-ikarius
    fonts-adf-irianis fonts-adf-libris fonts-adf-mekanus fonts-adf-oldania fonts-adf-romande fonts-adf-solothurn
    fonts-adf-switzera fonts-adf-tribun fonts-adf-universalis fonts-adf-verana fonts-aenigma fonts-agave
    fonts-allerta fonts-amiga fonts-anonymous-pro fonts-apropal fonts-arapey fonts-arkpandora fonts-averia-gwf
    fonts-averia-sans-gwf fonts-averia-serif-gwf fonts-b612 fonts-babelstone-modern fonts-bajaderka
    fonts-bebas-neue fonts-beteckna fonts-blankenburg fonts-breip fonts-bwht fonts-cabin fonts-cabinsketch
    fonts-cantarell fonts-cardo fonts-century-catalogue fonts-cherrybomb fonts-clear-sans fonts-cmu fonts-comfortaa
    fonts-comic-neue fonts-compagnon fonts-courier-prime fonts-croscore fonts-crosextra-caladea
    fonts-crosextra-carlito fonts-dancingscript fonts-dejavu fonts-dejavu-core fonts-dejavu-extra
    fonts-dkg-handwriting fonts-dosis fonts-droid-fallback fonts-dseg fonts-dustin fonts-ebgaramond
    fonts-ebgaramond-extra fonts-ecolier-court fonts-ecolier-lignes-court fonts-elstob fonts-engadget
    fonts-essays1743 fonts-eurofurence fonts-f500 fonts-fantasma fonts-fantasque-sans fonts-fanwood
    fonts-femkeklaver fonts-ferrite-core fonts-firacode fonts-freefont-ttf fonts-gamaliel fonts-georgewilliams
    fonts-glasstty fonts-gnutypewriter fonts-go fonts-gotico-antiqua fonts-goudybookletter fonts-hack fonts-havana
    fonts-hermit fonts-humor-sans fonts-inconsolata fonts-inter fonts-inter-variable fonts-isabella
    fonts-jetbrains-mono fonts-joscelyn fonts-junction fonts-junicode fonts-jura fonts-karla fonts-karmilla
    fonts-kaushanscript fonts-klaudia-berenika fonts-kristi fonts-lato fonts-le-murmure fonts-league-mono
    fonts-league-spartan fonts-leckerli-one fonts-lemonada fonts-levien-museum fonts-levien-typoscript
    fonts-liberation fonts-liberation2 fonts-lindenhill fonts-linuxlibertine fonts-lmodern fonts-lobster
    fonts-lobstertwo fonts-lyx fonts-manrope fonts-millimetre fonts-monofur fonts-monoid fonts-monoid-halfloose
    fonts-monoid-halftight fonts-monoid-loose fonts-monoid-tight fonts-mononoki fonts-mph-2b-damase
    fonts-national-park fonts-noto-core fonts-noto-mono fonts-noto-ui-core fonts-ocr-a fonts-ocr-b fonts-okolaks
    fonts-oldstandard fonts-open-sans fonts-opendin fonts-osifont fonts-oxygen fonts-paratype fonts-pc
    fonts-pc-extra fonts-play fonts-povray fonts-prociono fonts-quattrocento fonts-quicksand fonts-radisnoir
    fonts-recommended fonts-roadgeek fonts-roboto fonts-roboto-fontface fonts-roboto-slab fonts-roboto-unhinted
    fonts-rocknroll fonts-routed-gothic fonts-rufscript fonts-sil-andika fonts-sil-andika-compact
    fonts-sil-andikanewbasic fonts-sil-charis fonts-sil-charis-compact fonts-sil-doulos fonts-sil-doulos-compact
    fonts-sil-galatia fonts-sil-gentium fonts-sil-gentium-basic fonts-sil-gentiumplus fonts-sil-gentiumplus-compact
    fonts-sixtyfour fonts-sjfonts fonts-solide-mirage fonts-sora fonts-staypuft fonts-stick fonts-stix
    fonts-summersby fonts-texgyre fonts-texgyre-math fonts-tiresias fonts-tomsontalks fonts-train
    fonts-triod-postnaja fonts-tuffy fonts-ubuntu-title fonts-uralic fonts-urw-base35 fonts-vollkorn
    fonts-yanone-kaffeesatz fonts-yusei-magic
    """.split()
)
TEXLIVE_FONT_PACKAGE = "texlive-fonts-extra"  # OTF/TTF only (the .pfb are optical-size duplicates)
DEFAULT_BG_PACKAGES: tuple[str, ...] = (
    "nexuiz-textures",
    "ufoai-textures",
    "openarena-data",
    "colobot-common-textures",
    "plasma-workspace-wallpapers",
    "mate-backgrounds",
    "lomiri-wallpapers",
    "ukui-wallpapers",
    "gnome-backgrounds",
    "desktop-base",
    "sway-backgrounds",
)
DEFAULT_WORD_PACKAGES: tuple[str, ...] = ("wamerican-large",)
LOW_WEIGHT_PACKAGES = {"fonts-aenigma": 0.15}  # 450 display faces, many caps-only or barely readable
# faces whose letters are not reliably legible: only numbers, prices and dates are drawn with them
_DIGIT_FACES = re.compile(r"DSEG7|7.?segment|seven.?segment", re.IGNORECASE)
DIGIT_KINDS = ("number", "price", "date")

# Latin-1 + euro, dashes, quotes, ellipsis, bullet
SUBSET_UNICODES: tuple[int, ...] = tuple(
    list(range(0x20, 0x7F))
    + list(range(0xA0, 0x100))
    + [0x20AC, 0x2022, 0x2026, 0x2039, 0x203A]
    + list(range(0x2010, 0x2016))
    + list(range(0x2018, 0x201F))
)
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tga", ".webp", ".bmp")
_ARCHIVE_SUFFIXES = (".pk3", ".zip")
_BAD_BG_NAME = re.compile(
    r"(_norm|_bump|_gloss|_glow|_nm\b|_sm\b|_spec|_local|_height|_alpha|_mask|_shirt|_pants|_luma|_reflect|_lm\b|"
    r"logo|icon|preview|thumb|screenshot|cursor|font|emblem|sprite|\bgfx/|/env/|/sky|_add\b|lightmap)",
    re.IGNORECASE,
)


@dataclass
class BuildOptions:
    """Options of :func:`build_pack` (mirrors the CLI)."""

    output: Path
    font_packages: Sequence[str] = DEFAULT_FONT_PACKAGES
    texlive: bool = True
    font_dirs: Sequence[Path] = ()
    bg_packages: Sequence[str] = DEFAULT_BG_PACKAGES
    bg_dirs: Sequence[Path] = ()
    word_packages: Sequence[str] = DEFAULT_WORD_PACKAGES
    word_files: Sequence[Path] = ()
    max_fonts: int = 1400
    max_backgrounds: int = 1000
    max_size_mb: float = 50.0
    use_apt: bool = True
    apt_update: bool = True
    apt_mode: str = "extract"
    cache_dir: Path | None = None
    jobs: int = 0
    seed: int = 0


# ================================================================= apt helpers
def _run(cmd: Sequence[str], check: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    logger.info("$ %s", " ".join(cmd[:8]) + (" ..." if len(cmd) > 8 else ""))
    return subprocess.run(list(cmd), check=check, text=True, capture_output=True, cwd=cwd)


def apt_download_extract(packages: Sequence[str], cache: Path) -> dict[str, Path]:
    """``apt-get download`` + ``dpkg -x`` each package into ``cache/root/<pkg>``; returns pkg -> root folder.

    Downloaded debs are kept in ``cache/debs`` and unpacked packages (marker file ``.extracted``) are reused;
    unknown packages are skipped with a warning.
    """
    debs, roots = cache / "debs", cache / "root"
    debs.mkdir(parents=True, exist_ok=True)
    roots.mkdir(parents=True, exist_ok=True)
    have = {d.name.split("_")[0] for d in debs.glob("*.deb")}
    fetch = [p for p in packages if not (roots / p / ".extracted").is_file() and p not in have]
    for i in range(0, len(fetch), 60):
        chunk = fetch[i : i + 60]
        res = _run(["apt-get", "download", *chunk], check=False, cwd=debs)
        if res.returncode != 0:  # one unknown name fails the whole batch: retry one by one
            for p in chunk:
                r1 = _run(["apt-get", "download", p], check=False, cwd=debs)
                if r1.returncode != 0:
                    logger.warning("apt-get download %s failed: %s", p, (r1.stderr.strip().splitlines() or [""])[-1])
    out: dict[str, Path] = {}
    for p in packages:
        root = roots / p
        if (root / ".extracted").is_file():
            out[p] = root
            continue
        cands = sorted(debs.glob(f"{p}_*.deb"))
        if not cands:
            logger.warning("package %s not available (skipped)", p)
            continue
        root.mkdir(parents=True, exist_ok=True)
        _run(["dpkg", "-x", str(cands[-1]), str(root)])
        ver = _run(["dpkg-deb", "-f", str(cands[-1]), "Version"]).stdout.strip()
        (root / ".extracted").write_text(ver + "\n")
        out[p] = root
    return out


def apt_install(packages: Sequence[str]) -> dict[str, list[Path]]:
    """``apt-get install`` the packages; returns pkg -> installed file list (``dpkg -L``)."""
    _run(["apt-get", "install", "-y", "--no-install-recommends", *packages], check=False)
    out: dict[str, list[Path]] = {}
    for p in packages:
        res = _run(["dpkg", "-L", p], check=False)
        if res.returncode == 0:
            out[p] = [Path(x) for x in res.stdout.split("\n") if x.strip()]
        else:
            logger.warning("package %s not installed (skipped)", p)
    return out


# ================================================================= licences
def package_license(root: Path, pkg: str) -> str:
    """Short licence summary from ``usr/share/doc/<pkg>/copyright`` (DEP-5 ``License:`` fields)."""
    cp = root / "usr/share/doc" / pkg / "copyright"
    if not cp.is_file():
        cp = Path("/usr/share/doc") / pkg / "copyright"
    try:
        text = cp.read_text(errors="replace")
    except OSError:
        return "unknown"
    names: list[str] = []
    for stanza in re.split(r"\n\s*\n", text):
        files = re.search(r"^Files:\s*(.*)$", stanza, re.MULTILINE)
        lic = re.search(r"^License:\s*(\S.*)$", stanza, re.MULTILINE)
        if files and lic and not files.group(1).strip().startswith("debian/"):
            name = lic.group(1).strip()
            if name not in names:
                names.append(name)
    if names:
        return "; ".join(names[:4])
    found = [k for k in ("OFL", "GPL", "Apache", "LPPL", "BSD", "MIT", "CC-BY", "public domain") if k in text]
    return "(unstructured) " + (", ".join(found) if found else "see copyright")


def texlive_licenses(root: Path, pkg: str) -> dict[str, str]:
    """texmf-dist folder/file -> licence, from Debian's ``Licenses.gz`` of a texlive package."""
    lf = root / "usr/share/doc" / pkg / "Licenses.gz"
    if not lf.is_file():
        return {}
    out: dict[str, str] = {}
    lic = ""
    for line in gzip.decompress(lf.read_bytes()).decode("utf-8", "replace").splitlines():
        m = re.match(r"^([\w.+-]+):\s*(.*)$", line)
        if m:
            lic = m.group(2).strip() or "unknown"
        elif line.startswith("texmf-dist/"):
            out[line[:-2] if line.endswith("/*") else line] = lic
    return out


# ================================================================= fonts
@dataclass
class _FontSrc:
    path: str
    index: int
    package: str
    license: str


def collect_font_sources(
    pkg_roots: dict[str, Path], font_dirs: Sequence[Path], installed: dict[str, list[Path]] | None = None
) -> list[_FontSrc]:
    """Font files (and faces of collections) from unpacked packages, installed packages and local folders."""
    from .resources import find_font_files

    srcs: list[_FontSrc] = []

    def add(path: Path, pkg: str, lic: str) -> None:
        if path.suffix.lower() in (".ttc", ".otc"):
            try:
                from fontTools.ttLib import TTCollection

                n = len(TTCollection(str(path), lazy=True).fonts)
            except Exception:  # noqa: BLE001
                return
            for i in range(n):
                srcs.append(_FontSrc(str(path), i, pkg, lic))
        else:
            srcs.append(_FontSrc(str(path), 0, pkg, lic))

    for pkg, root in sorted(pkg_roots.items()):
        lic = package_license(root, pkg)
        tl = texlive_licenses(root, pkg) if pkg.startswith("texlive") else {}
        for p in find_font_files([root / "usr/share"]):
            if p.suffix.lower() in (".woff", ".woff2"):  # web copies of the same faces
                continue
            if pkg.startswith("texlive"):
                rel = str(p.relative_to(root / "usr/share/texlive"))
                if "/fonts/opentype/" not in "/" + rel and "/fonts/truetype/" not in "/" + rel:
                    continue
                flic = tl.get(rel) or tl.get(str(Path(rel).parent)) or lic
                add(p, pkg, flic)
            else:
                add(p, pkg, lic)
    for pkg, files in sorted((installed or {}).items()):
        lic = package_license(Path("/"), pkg)
        for p in files:
            if p.suffix.lower() in FONT_SUFFIXES and p.suffix.lower() not in (".woff", ".woff2") and p.is_file():
                add(p, pkg, lic)
    for d in font_dirs:
        for p in find_font_files([Path(d)]):
            add(p, f"local:{d}", "local (check the font's own licence)")
    return srcs


def _analyze_task(args: tuple[int, str, int]) -> tuple[int, dict[str, Any] | str]:
    k, path, index = args
    try:
        return k, analyze_face_reason(path, index)
    except Exception as e:  # noqa: BLE001
        return k, f"error:{type(e).__name__}"


def _brotli_available() -> bool:
    try:
        import brotli  # noqa: F401
    except ImportError:
        return False
    return True


def subset_face(path: str, index: int, out_stem: Path) -> tuple[Path, str] | None:
    """Subset one face to :data:`SUBSET_UNICODES`; write WOFF2 / WOFF / plain sfnt (first that Pillow renders).

    Returns (written path, printable-ASCII characters the subset does not map) or None.
    """
    from fontTools import subset
    from PIL import ImageFont

    logging.getLogger("fontTools").setLevel(logging.ERROR)

    flavors: list[str | None] = (["woff2"] if _brotli_available() else []) + ["woff", None]
    for flavor in flavors:
        opts = subset.Options()
        opts.flavor = flavor
        opts.hinting = False
        opts.desubroutinize = False
        opts.notdef_outline = True
        opts.glyph_names = False
        opts.name_IDs = [0, 1, 2, 3, 4, 5, 6, 16, 17]
        opts.font_number = index
        # The renderer uses Pillow's BASIC layout (legacy 'kern' table only), so OpenType layout tables are dead
        # weight (and 4x slower to subset); colour/bitmap tables are dropped too (SVG would also need lxml).
        opts.layout_features = ["kern"]
        opts.drop_tables += ["GPOS", "GSUB", "GDEF", "JSTF", "MATH", "SVG", "sbix", "CBDT", "CBLC", "COLR", "CPAL"]
        try:
            font = subset.load_font(path, opts, dontLoadGlyphNames=True)
            sub = subset.Subsetter(opts)
            sub.populate(unicodes=SUBSET_UNICODES)
            sub.subset(font)
            cmap = font.getBestCmap() or {}
            buf = io.BytesIO()
            subset.save_font(font, buf, opts)
            font.close()
        except Exception as e:  # noqa: BLE001
            logger.debug("subset %s (%s) failed: %s", path, flavor, e)
            continue
        data = buf.getvalue()
        try:
            ft = ImageFont.truetype(io.BytesIO(data), 32, layout_engine=ImageFont.Layout.BASIC)
            notdef = bytes(ft.getmask("\U0010fffd"))
            if any(bytes(ft.getmask(c)) == notdef for c in REQUIRED_CHARS):
                continue
        except Exception:  # noqa: BLE001
            continue
        is_cff = data[:4] == b"OTTO" or (flavor is not None and b"CFF " in data[:200])
        ext = {"woff2": ".woff2", "woff": ".woff"}.get(flavor or "", ".otf" if is_cff else ".ttf")
        out = out_stem.with_suffix(ext)
        out.write_bytes(data)
        missing = "".join(c for c in PRINTABLE if c != " " and ord(c) not in cmap)
        return out, missing
    return None


def _subset_task(args: tuple[int, str, int, str]) -> tuple[int, tuple[str, str] | None]:
    k, path, index, stem = args
    try:
        res = subset_face(path, index, Path(stem))
    except Exception:  # noqa: BLE001
        res = None
    return k, (None if res is None else (str(res[0]), res[1]))


def select_faces(faces: list[dict[str, Any]], max_fonts: int, seed: int) -> list[dict[str, Any]]:
    """Round-robin over families (shuffled with ``seed``) so that a cap keeps as many families as possible."""
    fam: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for f in faces:
        fam[f["family"].lower()].append(f)
    names = sorted(fam)
    rng = random.Random(seed)
    rng.shuffle(names)
    # low-weight packages go last within each round
    names.sort(key=lambda n: LOW_WEIGHT_PACKAGES.get(fam[n][0]["package"], 1.0) < 1.0)
    out: list[dict[str, Any]] = []
    rnd = 0
    while len(out) < max_fonts:
        added = False
        for n in names:
            if rnd < len(fam[n]):
                out.append(fam[n][rnd])
                added = True
                if len(out) >= max_fonts:
                    break
        if not added:
            break
        rnd += 1
    return out


# ================================================================= backgrounds
@dataclass
class _BgSrc:
    path: str  # file, or archive path
    member: str  # member inside an archive ("" for files)
    package: str
    license: str


def collect_bg_sources(pkg_roots: dict[str, Path], bg_dirs: Sequence[Path]) -> list[_BgSrc]:
    """Candidate background images (files and ``.pk3``/``.zip`` members), name-filtered."""
    out: list[_BgSrc] = []

    def scan(root: Path, pkg: str, lic: str) -> None:
        for p in sorted(root.rglob("*")):
            if not p.is_file():
                continue
            suf = p.suffix.lower()
            rel = str(p.relative_to(root))
            if suf in _IMAGE_SUFFIXES and not _BAD_BG_NAME.search(rel):
                out.append(_BgSrc(str(p), "", pkg, lic))
            elif suf in _ARCHIVE_SUFFIXES:
                try:
                    with zipfile.ZipFile(p) as z:
                        for m in z.namelist():
                            if m.lower().endswith(_IMAGE_SUFFIXES) and not _BAD_BG_NAME.search(m):
                                out.append(_BgSrc(str(p), m, pkg, lic))
                except zipfile.BadZipFile:
                    continue

    for pkg, root in sorted(pkg_roots.items()):
        scan(root / "usr/share", pkg, package_license(root, pkg))
    for d in bg_dirs:
        scan(Path(d), f"local:{d}", "local (check the image's own licence)")
    return out


def _bg_task(args: tuple[int, str, str, str, int]) -> tuple[int, tuple[bytes, int, int, str] | str]:
    """Load, filter and downsize one background; returns (jpeg bytes, w, h, dhash) or a rejection reason."""
    k, path, member, _pkg, side = args
    import numpy as np
    from PIL import Image

    try:
        if member:
            with zipfile.ZipFile(path) as z:
                raw = z.read(member)
            im = Image.open(io.BytesIO(raw))
        else:
            im = Image.open(path)
        im.draft("RGB", (side * 2, side * 2))
        if min(im.size) < 96:
            return k, "small"
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            a = np.asarray(im.convert("RGBA"))[:, :, 3]
            if (a < 200).mean() > 0.02:
                return k, "transparent"
        im = im.convert("RGB")
        w, h = im.size
        s = side / max(w, h)
        if s < 1:
            im = im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.LANCZOS)
        if min(im.size) < 64:
            return k, "small"
        arr = np.asarray(im, dtype=np.float32)
        mean = arr.reshape(-1, 3).mean(axis=0)
        lum = arr @ np.float32([0.299, 0.587, 0.114])
        if float(lum.std()) < 6.0:
            return k, "flat"
        if mean[2] > 180 and abs(mean[0] - 128) < 40 and abs(mean[1] - 128) < 40:
            return k, "normal-map"
        small = np.asarray(im.convert("L").resize((17, 16), Image.BILINEAR), dtype=np.int16)
        bits = (small[:, 1:] > small[:, :-1]).flatten()
        dh = f"{int(''.join('1' if b else '0' for b in bits), 2):064x}"
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=85, optimize=True)
        return k, (buf.getvalue(), im.size[0], im.size[1], dh)
    except Exception as e:  # noqa: BLE001
        return k, f"error:{type(e).__name__}"


def _hamming(a: str, b: str) -> int:
    return bin(int(a, 16) ^ int(b, 16)).count("1")


# ================================================================= words
def load_words(files: Iterable[Path], max_len: int = 25) -> list[str]:
    """Printable-ASCII words without spaces or possessive ``'s``, deduplicated, order kept."""
    words: list[str] = []
    for f in files:
        raw = Path(f).read_bytes()
        if str(f).endswith(".gz"):
            raw = gzip.decompress(raw)
        words.extend(w for w in raw.decode("utf-8", "ignore").split("\n") if not w.strip().endswith("'s"))
    return clean_words(words, max_len)


# ================================================================= main
class _Inline:
    """Stand-in for a process pool when jobs == 1 (tests, debugging)."""

    def __enter__(self) -> _Inline:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def imap_unordered(self, func: Any, tasks: Iterable[Any], chunksize: int = 1) -> Iterable[Any]:
        return map(func, tasks)


def _pool(jobs: int) -> Any:
    if jobs <= 1:
        return _Inline()
    ctx = mp.get_context("fork") if sys.platform.startswith("linux") else mp.get_context()
    return ctx.Pool(jobs)


def _dir_size(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def build_pack(opts: BuildOptions) -> dict[str, Any]:
    """Build a resource pack into ``opts.output`` (replaced only when the build succeeds); returns the manifest."""
    tmp = Path(tempfile.mkdtemp(prefix="str-distill-pack-"))  # moved to ``out`` when complete
    try:
        return _build(opts, tmp)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _build(opts: BuildOptions, tmp: Path) -> dict[str, Any]:
    t0 = time.time()
    jobs = opts.jobs or max(1, os.cpu_count() or 1)
    out = Path(opts.output).expanduser().resolve()
    cache = Path(opts.cache_dir or Path.home() / ".cache" / "str-distill" / "synth-build").expanduser().resolve()
    cache.mkdir(parents=True, exist_ok=True)
    (tmp / "fonts").mkdir()
    (tmp / "backgrounds").mkdir()

    # ---- 1. packages
    font_pkgs = list(opts.font_packages) + ([TEXLIVE_FONT_PACKAGE] if opts.texlive else [])
    font_roots: dict[str, Path] = {}
    installed: dict[str, list[Path]] = {}
    bg_roots: dict[str, Path] = {}
    word_roots: dict[str, Path] = {}
    if opts.use_apt:
        if not shutil.which("apt-get"):
            raise RuntimeError("apt-get not found: use --no-apt with --font-dir / --bg-dir / --word-file")
        if opts.apt_update:
            _run(["apt-get", "update"], check=False)
        if opts.apt_mode == "install":
            small = [p for p in font_pkgs if p != TEXLIVE_FONT_PACKAGE]
            installed = apt_install(small + list(opts.word_packages))
            if opts.texlive:
                font_roots = apt_download_extract([TEXLIVE_FONT_PACKAGE], cache)
        else:
            font_roots = apt_download_extract(font_pkgs, cache)
            word_roots = apt_download_extract(list(opts.word_packages), cache)
        bg_roots = apt_download_extract(list(opts.bg_packages), cache)
        logger.info("packages ready (%.0f s)", time.time() - t0)

    # ---- 2. fonts: analyse + dedupe
    srcs = collect_font_sources(
        font_roots, opts.font_dirs, {p: f for p, f in installed.items() if p not in opts.word_packages}
    )
    logger.info("%d font faces to check", len(srcs))
    results: list[dict[str, Any] | str] = [""] * len(srcs)
    with _pool(jobs) as pool:
        for k, res in pool.imap_unordered(_analyze_task, [(k, s.path, s.index) for k, s in enumerate(srcs)], 8):
            results[k] = res
    reasons: dict[str, int] = defaultdict(int)
    faces: list[dict[str, Any]] = []
    seen_hash: set[str] = set()
    seen_name: set[tuple[str, str]] = set()
    for s, res in zip(srcs, results):
        if isinstance(res, str):
            reasons[res.split(":")[0]] += 1
            continue
        key = (res["family"].lower(), res["style"].lower())
        if res["hash"] in seen_hash or key in seen_name:
            reasons["duplicate"] += 1
            continue
        seen_hash.add(res["hash"])
        seen_name.add(key)
        faces.append({**res, "src": s.path, "index": s.index, "package": s.package, "license": s.license})
    logger.info("fonts: %d checked, %d unique pass; rejected: %s", len(srcs), len(faces), dict(reasons))
    chosen = select_faces(faces, opts.max_fonts, opts.seed)

    # ---- 3. subset
    tasks = [(k, f["src"], f["index"], str(tmp / "fonts" / f"{k:05d}")) for k, f in enumerate(chosen)]
    subs: list[tuple[str, str] | None] = [None] * len(chosen)
    with _pool(jobs) as pool:
        for k, res in pool.imap_unordered(_subset_task, tasks, 4):
            subs[k] = res
    fam_count: dict[str, int] = defaultdict(int)
    for f, sres in zip(chosen, subs):
        if sres is not None:
            fam_count[f["family"].lower()] += 1
    font_entries = []
    for f, sres in zip(chosen, subs):
        if sres is None:
            reasons["subset-failed"] += 1
            continue
        fpath, missing = sres
        w = LOW_WEIGHT_PACKAGES.get(f["package"], 1.0) / math.sqrt(fam_count[f["family"].lower()])
        digits_only = bool(_DIGIT_FACES.search(f["name"] + " " + f["family"]))
        if digits_only:  # letters are not legible on 7-segment displays
            missing += "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
        font_entries.append(
            {
                "file": f"fonts/{Path(fpath).name}",
                "name": f["name"],
                "family": f["family"],
                "style": f["style"],
                "package": f["package"],
                "license": f["license"],
                "source_file": Path(f["src"]).name,
                "caps_only": f["caps_only"],
                "missing": "".join(sorted(set(missing) | set(f["missing"]))),
                "weight": round(w, 4),
                "kinds": list(DIGIT_KINDS) if digits_only else [],
                "bytes": Path(fpath).stat().st_size,
            }
        )
    logger.info("fonts: %d subset and written (%.0f s)", len(font_entries), time.time() - t0)

    # ---- 4. backgrounds
    bg_srcs = collect_bg_sources(bg_roots, opts.bg_dirs)
    by_pkg: dict[str, list[_BgSrc]] = defaultdict(list)
    for b in bg_srcs:
        by_pkg[b.package].append(b)
    rng = random.Random(opts.seed)
    order: list[_BgSrc] = []
    queues = []
    for pkg in sorted(by_pkg):
        q = by_pkg[pkg][:]
        rng.shuffle(q)
        queues.append(q)
    while any(queues):  # interleave packages so a cap keeps all sources
        for q in queues:
            if q:
                order.append(q.pop())
    bg_entries: list[dict[str, Any]] = []
    hashes: list[str] = []
    bg_reasons: dict[str, int] = defaultdict(int)
    budget = opts.max_backgrounds
    pos = 0
    with _pool(jobs) as pool:
        while len(bg_entries) < budget and pos < len(order):
            batch = order[pos : pos + max(64, (budget - len(bg_entries)) * 2)]
            tasks = [(pos + i, b.path, b.member, b.package, rng.randint(256, 384)) for i, b in enumerate(batch)]
            pos += len(batch)
            got: dict[int, Any] = dict(pool.imap_unordered(_bg_task, tasks, 4))
            for k in sorted(got):
                res = got[k]
                if isinstance(res, str):
                    bg_reasons[res.split(":")[0]] += 1
                    continue
                data, w, h, dh = res
                if any(_hamming(dh, o) <= 12 for o in hashes):
                    bg_reasons["duplicate"] += 1
                    continue
                hashes.append(dh)
                b = order[k]
                name = f"backgrounds/{len(bg_entries):05d}.jpg"
                (tmp / name).write_bytes(data)
                bg_entries.append(
                    {
                        "file": name,
                        "package": b.package,
                        "license": b.license,
                        "source": (Path(b.path).name + ":" + b.member) if b.member else Path(b.path).name,
                        "w": w,
                        "h": h,
                        "bytes": len(data),
                    }
                )
                if len(bg_entries) >= budget:
                    break
    logger.info(
        "backgrounds: %d written from %d candidates; rejected: %s (%.0f s)",
        len(bg_entries),
        len(bg_srcs),
        dict(bg_reasons),
        time.time() - t0,
    )

    # ---- 5. words
    word_files: list[Path] = list(opts.word_files)
    for _pkg, root in sorted(word_roots.items()):
        word_files += sorted(p for p in (root / "usr/share/dict").glob("*") if p.is_file() and "README" not in p.name)
    for pkg, files in installed.items():
        if pkg in opts.word_packages:
            word_files += [p for p in files if "/usr/share/dict/" in str(p) and p.is_file()]
    words = load_words(word_files)
    words_entry: dict[str, Any] = {"file": None, "count": 0, "sources": list(opts.word_packages)}
    if words:
        data = gzip.compress(("\n".join(words) + "\n").encode("ascii"), 9, mtime=0)
        (tmp / "words.txt.gz").write_bytes(data)
        words_entry.update(file="words.txt.gz", count=len(words), bytes=len(data))
    else:
        logger.warning("no word list: the renderer will use its built-in words")

    # ---- 6. size cap, manifest
    limit = int(opts.max_size_mb * 1e6)

    def total() -> int:
        return sum(e["bytes"] for e in font_entries) + sum(e["bytes"] for e in bg_entries) + words_entry.get("bytes", 0)

    dropped_bg = dropped_fonts = 0
    while total() > limit and bg_entries:
        e = bg_entries.pop()
        (tmp / e["file"]).unlink()
        dropped_bg += 1
    while total() > limit and len(font_entries) > 1:
        e = font_entries.pop()
        (tmp / e["file"]).unlink()
        dropped_fonts += 1
    if dropped_bg or dropped_fonts:
        logger.warning(
            "size cap %.0f MB: dropped %d backgrounds and %d fonts", opts.max_size_mb, dropped_bg, dropped_fonts
        )
    if not font_entries:
        raise RuntimeError("no usable font face found; nothing written")

    packages: dict[str, dict[str, str]] = {}
    for pkg, root in {**font_roots, **bg_roots, **word_roots}.items():
        marker = root / ".extracted"
        packages[pkg] = {
            "version": marker.read_text().strip() if marker.is_file() else "",
            "license": package_license(root, pkg),
        }
    for pkg in installed:
        packages.setdefault(pkg, {"version": "installed", "license": package_license(Path("/"), pkg)})
    manifest: dict[str, Any] = {
        "format": PACK_FORMAT,
        "version": 1,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "build": {
            "seconds": round(time.time() - t0, 1),
            "max_fonts": opts.max_fonts,
            "max_backgrounds": opts.max_backgrounds,
            "max_size_mb": opts.max_size_mb,
            "font_format": "woff2" if _brotli_available() else "woff (zlib; brotli not installed)",
            "subset": "Latin-1 + euro, dashes, quotes, ellipsis, bullet",
            "faces_checked": len(srcs),
            "faces_unique": len(faces),
            "rejected": dict(reasons),
            "background_candidates": len(bg_srcs),
            "backgrounds_rejected": dict(bg_reasons),
        },
        "counts": {
            "fonts": len(font_entries),
            "caps_only_fonts": sum(e["caps_only"] for e in font_entries),
            "families": len({e["family"].lower() for e in font_entries}),
            "backgrounds": len(bg_entries),
            "words": words_entry["count"],
        },
        "sizes": {
            "fonts_bytes": sum(e["bytes"] for e in font_entries),
            "backgrounds_bytes": sum(e["bytes"] for e in bg_entries),
            "words_bytes": words_entry.get("bytes", 0),
            "total_bytes": total(),
        },
        "packages": packages,
        "words": words_entry,
        "fonts": font_entries,
        "backgrounds": bg_entries,
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(tmp), str(out))
    os.chmod(out, 0o755)  # mkdtemp made it private
    manifest["sizes"]["on_disk_bytes"] = _dir_size(out)
    logger.info(
        "pack written to %s: %d fonts, %d backgrounds, %d words, %.1f MB (%.0f s)",
        out,
        len(font_entries),
        len(bg_entries),
        words_entry["count"],
        manifest["sizes"]["on_disk_bytes"] / 1e6,
        time.time() - t0,
    )
    return manifest
