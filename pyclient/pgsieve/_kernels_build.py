"""cffi build script for pgsieve._kernels.

Compiles ext/kernels/pgs_kernels.c — the very file the PostgreSQL extension
links — so that quantized codes and scores computed in Python are
byte-identical to the server's.
"""

from __future__ import annotations

import os
import re

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
KDIR = os.path.join(ROOT, "ext", "kernels")


def _cdefs() -> str:
    """The public prototypes of pgs_kernels.h, minus preprocessor lines."""
    with open(os.path.join(KDIR, "pgs_kernels.h"), encoding="utf-8") as f:
        text = f.read()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    lines = [
        ln for ln in text.splitlines()
        if not ln.lstrip().startswith("#") and "extern \"C\"" not in ln and ln.strip() != "}"
    ]
    return "\n".join(lines)


ffibuilder = FFI()
ffibuilder.cdef(_cdefs())
ffibuilder.set_source(
    "pgsieve._kernels",
    '#include "pgs_kernels.h"',
    sources=[os.path.relpath(os.path.join(KDIR, "pgs_kernels.c"), ROOT)],
    include_dirs=[os.path.relpath(KDIR, ROOT)],
    extra_compile_args=["-O2", "-std=gnu99", "-fno-strict-aliasing"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
