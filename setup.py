"""Build hook: the wheel carries the top-level ``weights_manifest.json`` inside the package."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithManifest(build_py):
    def run(self) -> None:
        super().run()
        src = Path(__file__).parent / "weights_manifest.json"
        dst = Path(self.build_lib) / "str_distill" / "weights_manifest.json"
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)


setup(cmdclass={"build_py": BuildPyWithManifest})
