"""``str-distill`` command line: one module per command, each exposing ``register(subparsers)``.

Also run as ``python -m str_distill``. Every command, sub-command included, reports bad arguments with its own
usage. The commands of :data:`TRAIN_COMMANDS` need the ``train`` extra; without it they stop with one line that
says how to install it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["TRAIN_COMMANDS", "TRAIN_EXTRA_MODULES", "CommandParser", "build_parser", "main", "missing_train_modules"]

COMMANDS = ("predict", "read", "models", "eval", "train", "pretrain", "data", "synth", "visualize", "convert",
            "export")

TRAIN_COMMANDS = frozenset({"train", "pretrain", "data", "synth"})
"""Commands that need ``pip install "str-distill[train]"``."""
TRAIN_EXTRA_MODULES = {"cv2": "opencv-python-headless", "lmdb": "lmdb", "fontTools": "fonttools"}
"""Modules of the ``train`` extra -> the pip package that provides each."""
TRAIN_EXTRA_HINT = 'pip install "str-distill[train]"'


class CommandParser(argparse.ArgumentParser):
    """An argument parser whose unrecognized arguments are an error of the (sub-)command that received them.

    argparse hands a sub-command's unknown arguments up to the top-level parser, whose error then shows the
    top-level usage; here the sub-command's parser reports them with its own usage. Sub-parsers inherit the class.
    """

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        """Parse like :meth:`argparse.ArgumentParser.parse_known_args`; unknown arguments exit with this usage."""
        ns, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return ns, extras


def missing_train_modules() -> list[str]:
    """The modules of the ``train`` extra that cannot be imported (empty when the extra is installed)."""
    missing = []
    for module in TRAIN_EXTRA_MODULES:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    return missing


def _extra_message(command: str, modules: Sequence[str]) -> str:
    names = ", ".join(f"{m} ({TRAIN_EXTRA_MODULES[m]})" for m in modules)
    return f"error: str-distill {command} needs the train extra (missing: {names}); install it: {TRAIN_EXTRA_HINT}"


def _missing_extra_module(e: BaseException) -> str | None:
    """The train-extra module whose absence caused ``e`` (also through ``__cause__``/``__context__``), if any."""
    seen: set[int] = set()
    err: BaseException | None = e
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        name = getattr(err, "name", None) if isinstance(err, ImportError) else None
        if name and name.partition(".")[0] in TRAIN_EXTRA_MODULES:
            return name.partition(".")[0]
        err = err.__cause__ or err.__context__
    return None


def build_parser() -> argparse.ArgumentParser:
    """The ``str-distill`` parser with every command of :data:`COMMANDS` registered."""
    from .. import __version__

    parser = CommandParser(prog="str-distill", description="Scene text recognition with str-distill.")
    parser.add_argument("--version", action="version", version=f"str-distill {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``str-distill`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if args.command in TRAIN_COMMANDS and (missing := missing_train_modules()):
        print(_extra_message(args.command, missing), file=sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # caused by a train-extra module imported deep inside any command: say so in one line
        module = _missing_extra_module(e)
        if module is None:
            raise
        print(_extra_message(args.command, [module]), file=sys.stderr)
        return 2
