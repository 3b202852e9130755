"""Build the C helpers in place: `python native/build.py` writes app/_speedups*.so.

The server runs without them (`app.api.tensor_json` then parses with simdjson, numpy casts),
so a machine without a C compiler still serves; `make serve`, `make test` and the Dockerfile
build them.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from setuptools import Extension, setup

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from pow5_table import header  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="tensor-text-") as build:
        (Path(build) / "pow5_table.h").write_text(header())
        extension = Extension("app._speedups", [str((HERE / "speedups.c").relative_to(ROOT))], include_dirs=[build],
                              extra_compile_args=["-O3", "-std=c11", "-fno-strict-aliasing", "-Wall", "-Wextra"])
        setup(name="keras-serve-native", ext_modules=[extension], script_args=[
            "--quiet", "build_ext", "--inplace", "--build-temp", str(Path(build) / "tmp")])


if __name__ == "__main__":
    import os

    os.chdir(ROOT)
    main()
