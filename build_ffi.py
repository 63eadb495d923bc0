"""Builds rgrad._rgrad, the C engine, with cffi in out-of-line API mode.

setup.py hands `ffibuilder` to setuptools through cffi_modules. The flags
follow the compiler setuptools will use: MSVC on Windows, otherwise a
GCC-compatible one (GCC, Clang, MinGW's GCC; CC=clang picks Clang). Setting
RGRAD_SANITIZE=1 in the environment builds with AddressSanitizer and
UndefinedBehaviorSanitizer (GCC and Clang only; see README: "Checking the C
core").
"""
import os
import pathlib
import sys
import sysconfig

from cffi import FFI

HERE = pathlib.Path(__file__).resolve().parent
CSRC = HERE / "csrc"

# A Python built with MinGW (MSYS2) reports a "mingw" platform and builds
# with GCC; python.org's Windows Python builds with MSVC.
MSVC = sys.platform == "win32" and not sysconfig.get_platform().startswith("mingw")

if MSVC:
    # /std:c11 for _Static_assert and designated initialisers (VS 2019 16.8+)
    cflags = ["/std:c11", "/O2"]
    ldflags = []
else:
    # -ffp-contract=off: a * b + c stays two roundings, as in Python. GCC
    # contracts nothing under -std=c11 anyway, but Clang contracts within
    # an expression by default where the CPU has FMA (arm64), which would
    # change the bits of every op that multiplies and adds.
    cflags = ["-std=c11", "-O2", "-ffp-contract=off", "-Wall", "-Wextra",
              "-Wno-unused-parameter"]
    ldflags = ["-lm"] if sys.platform == "win32" else ["-lm", "-pthread"]
    if os.environ.get("RGRAD_SANITIZE"):
        san = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
               "-fno-omit-frame-pointer", "-g", "-O1"]
        cflags += san
        ldflags += san

ffibuilder = FFI()
ffibuilder.cdef((CSRC / "rgrad.cdef.h").read_text())
ffibuilder.set_source(
    "rgrad._rgrad",
    # gil.h: which calls release the GIL (the rest keep it)
    '#include "rgrad.h"\n#include "gil.h"',
    # setuptools wants source paths relative to the project root
    sources=[os.path.relpath(CSRC / name, os.getcwd())
             for name in ("rgrad.c", "objects.c", "batch.c", "batch_kernels.c", "higher.c",
                          "tape.c", "pool.c", "collect.c")],
    include_dirs=[str(CSRC)],
    depends=[str(CSRC / name)
             for name in ("rgrad.h", "rgrad.cdef.h", "platform.h", "arena.h", "batch.h", "ops.h",
                          "gil.h", "pool.h")],
    extra_compile_args=cflags,
    extra_link_args=ldflags,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
