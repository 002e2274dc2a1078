"""``str-distill synth``: build the resource pack, write a contact sheet, measure renderer throughput."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``synth`` command with ``build-pack``, ``sheet`` and ``bench`` sub-commands."""
    p = subparsers.add_parser("synth", help="synthetic word images: resource pack, contact sheet, benchmark")
    sub = p.add_subparsers(dest="synth_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    b = sub.add_parser("build-pack", help="build the font/background/word resource pack (uses apt-get)")
    b.add_argument("-o", "--output", default=".synth_pack", help="pack folder (default: .synth_pack)")
    b.add_argument(
        "--font-packages",
        nargs="*",
        default=None,
        metavar="PKG",
        help="Debian font packages (default: the measured Latin set; pass none for no packages)",
    )
    b.add_argument("--exclude-packages", nargs="*", default=[], metavar="PKG", help="drop these font packages")
    b.add_argument("--no-texlive", action="store_true", help="skip texlive-fonts-extra (500 MB download)")
    b.add_argument("--font-dir", action="append", default=[], help="local font folder (repeatable)")
    b.add_argument(
        "--bg-packages",
        nargs="*",
        default=None,
        metavar="PKG",
        help="Debian wallpaper/texture packages (default: the measured set)",
    )
    b.add_argument("--bg-dir", action="append", default=[], help="local background image folder (repeatable)")
    b.add_argument("--word-packages", nargs="*", default=None, metavar="PKG", help="default: wamerican-large")
    b.add_argument("--word-file", action="append", default=[], help="extra word list, one per line (repeatable)")
    b.add_argument("--max-fonts", type=int, default=1400)
    b.add_argument("--max-backgrounds", type=int, default=1000)
    b.add_argument("--max-size-mb", type=float, default=50.0, help="drop backgrounds, then fonts, above this")
    b.add_argument("--no-apt", action="store_true", help="no apt-get: local folders only")
    b.add_argument("--no-update", action="store_true", help="skip apt-get update")
    b.add_argument(
        "--apt-mode",
        choices=("extract", "install"),
        default="extract",
        help="extract: apt-get download + dpkg -x into the cache (default); install: apt-get install",
    )
    b.add_argument("--cache-dir", default=None, help="download/unpack cache (default ~/.cache/str-distill/...)")
    b.add_argument("-j", "--jobs", type=int, default=0, help="worker processes (default: all cores)")
    b.add_argument("--seed", type=int, default=0)
    b.set_defaults(func=cmd_build_pack)

    s = sub.add_parser("sheet", help="write a PNG contact sheet of rendered samples with their labels")
    s.add_argument("-o", "--output", default="sheet.png")
    s.add_argument("--n", type=int, default=64)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--cols", type=int, default=4)
    s.add_argument("--pack", default=None, help="pack folder (default: $STR_DISTILL_SYNTH_PACK, .synth_pack, fallback)")
    s.add_argument("--charset", default=None, help="restrict labels to these characters")
    s.set_defaults(func=cmd_sheet)

    m = sub.add_parser("bench", help="measure single-process rendering throughput (images/s per core)")
    m.add_argument("--n", type=int, default=1000, help="images to time (after warm-up)")
    m.add_argument("--warmup", type=int, default=200)
    m.add_argument("--pack", default=None)
    m.add_argument("--seed", type=int, default=0)
    m.set_defaults(func=cmd_bench)


def _setup_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("fontTools").setLevel(logging.ERROR)


def cmd_build_pack(args: argparse.Namespace) -> int:
    """``synth build-pack``."""
    from ..data.synth.build_pack import (
        DEFAULT_BG_PACKAGES,
        DEFAULT_FONT_PACKAGES,
        DEFAULT_WORD_PACKAGES,
        BuildOptions,
        build_pack,
    )

    _setup_logging()

    def pkgs(v: list[str] | None, default: tuple[str, ...]) -> list[str]:
        if v is None:
            return list(default)
        return [] if v == ["none"] else list(v)

    font_pkgs = [p for p in pkgs(args.font_packages, DEFAULT_FONT_PACKAGES) if p not in set(args.exclude_packages)]
    use_apt = not args.no_apt
    opts = BuildOptions(
        output=Path(args.output),
        font_packages=font_pkgs if use_apt else [],
        texlive=use_apt and not args.no_texlive and "texlive-fonts-extra" not in args.exclude_packages,
        font_dirs=[Path(d) for d in args.font_dir],
        bg_packages=pkgs(args.bg_packages, DEFAULT_BG_PACKAGES) if use_apt else [],
        bg_dirs=[Path(d) for d in args.bg_dir],
        word_packages=pkgs(args.word_packages, DEFAULT_WORD_PACKAGES) if use_apt else [],
        word_files=[Path(f) for f in args.word_file],
        max_fonts=args.max_fonts,
        max_backgrounds=args.max_backgrounds,
        max_size_mb=args.max_size_mb,
        use_apt=use_apt,
        apt_update=not args.no_update,
        apt_mode=args.apt_mode,
        cache_dir=Path(args.cache_dir) if args.cache_dir else None,
        jobs=args.jobs,
        seed=args.seed,
    )
    try:
        manifest = build_pack(opts)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    summary = {**manifest["counts"], **manifest["sizes"]}
    print(json.dumps(summary, indent=1))
    print(f"pack size: {manifest['sizes']['on_disk_bytes'] / 1e6:.1f} MB in {Path(args.output).resolve()}")
    return 0


def cmd_sheet(args: argparse.Namespace) -> int:
    """``synth sheet``."""
    from ..data.synth import SynthConfig
    from ..data.synth.sheet import write_contact_sheet

    _setup_logging()
    path = write_contact_sheet(
        args.output, n=args.n, seed=args.seed, pack=args.pack, config=SynthConfig(charset=args.charset), cols=args.cols
    )
    print(f"wrote {path}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """``synth bench``."""
    from ..data.synth.render import measure_throughput

    _setup_logging()
    res = measure_throughput(pack=args.pack, n=args.n, warmup=args.warmup, seed=args.seed)
    print(json.dumps(res, indent=1))
    return 0
