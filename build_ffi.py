"""Builds rgrad._rgrad, the C engine, with cffi in out-of-line API mode.

setup.py hands `ffibuilder` to setuptools through cffi_modules. Setting
RGRAD_SANITIZE=1 in the environment builds with AddressSanitizer and
UndefinedBehaviorSanitizer (see README: "Checking the C core").
"""
import os
import pathlib

from cffi import FFI

HERE = pathlib.Path(__file__).resolve().parent
CSRC = HERE / "csrc"

cflags = ["-std=c11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
ldflags = ["-lm", "-pthread"]
if os.environ.get("RGRAD_SANITIZE"):
    san = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
           "-fno-omit-frame-pointer", "-g", "-O1"]
    cflags += san
    ldflags += san

ffibuilder = FFI()
ffibuilder.cdef((CSRC / "rgrad.cdef.h").read_text())
ffibuilder.set_source(
    "rgrad._rgrad",
    '#include "rgrad.h"',
    # setuptools wants source paths relative to the project root
    sources=[os.path.relpath(CSRC / "rgrad.c", os.getcwd())],
    include_dirs=[str(CSRC)],
    extra_compile_args=cflags,
    extra_link_args=ldflags,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
