"""Builds sail_tinker._native with the project's CMake (the whole repository
is the CMake project; this directory is its python/ part) and packages it
with the pure-Python sources. Used by `pip install --no-build-isolation
./python`. The CMake build tree is <repo>/build/pip (configured here,
Release); SAIL_TINKER_BUILD_DIR names another one, which is used as it is
configured if it exists (e.g. build/dev)."""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


class CMakeExtension(Extension):
    def __init__(self, name: str) -> None:
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext: Extension) -> None:
        build_dir = os.environ.get("SAIL_TINKER_BUILD_DIR")
        if build_dir and os.path.exists(os.path.join(build_dir, "CMakeCache.txt")):
            # An existing build tree (e.g. build/dev): build the module in it
            # as it is configured.
            self._build(build_dir, ext)
            return
        build_dir = build_dir or os.path.join(ROOT, "build", "pip")
        configure = ["cmake", "-S", ROOT, "-B", build_dir, "-G", "Ninja",
                     "-DCMAKE_BUILD_TYPE=Release", "-DCMAKE_CXX_FLAGS_RELEASE=-O2 -DNDEBUG",
                     f"-DPython3_EXECUTABLE={sys.executable}",
                     "-DSAIL_TINKER_BUILD_TESTS=OFF", "-DSAIL_TINKER_BUILD_BENCH=OFF"]
        if shutil.which("ccache"):
            configure.append("-DCMAKE_CXX_COMPILER_LAUNCHER=ccache")
        subprocess.check_call(configure)
        self._build(build_dir, ext)

    def _build(self, build_dir: str, ext: Extension) -> None:
        jobs = os.environ.get("JOBS", str(os.cpu_count() or 1))
        subprocess.check_call(["cmake", "--build", build_dir, "--target", "sail_tinker_python",
                               "-j", jobs])
        built = glob.glob(os.path.join(build_dir, "python", "sail_tinker", "_native*.so"))
        if len(built) != 1:
            raise RuntimeError(f"expected one built module, found {built}")
        dest = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copyfile(built[0], dest)


setup(ext_modules=[CMakeExtension("sail_tinker._native")], cmdclass={"build_ext": CMakeBuild})
