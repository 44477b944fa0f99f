"""cffi build script for pgsieve._kernels.

Compiles ext/kernels/pgs_kernels.c, pgs_maxsim.c and pgs_fde.c — the very files the
PostgreSQL extension links — so that quantized codes, scores and MUVERA FDEs
computed in Python are byte-identical to the server's.
"""

from __future__ import annotations

import os
import re

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
KDIR = os.path.join(ROOT, "ext", "kernels")


#: the kernel headers whose declarations Python sees, and their sources
HEADERS = ("pgs_kernels.h", "pgs_maxsim.h", "pgs_fde.h")
SOURCES = ("pgs_kernels.c", "pgs_maxsim.c", "pgs_fde.c")


def _cdefs() -> str:
    """The public declarations of the kernel headers, minus preprocessor lines."""
    parts = []
    for header in HEADERS:
        with open(os.path.join(KDIR, header), encoding="utf-8") as f:
            text = f.read()
        text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
        lines = [
            ln for ln in text.splitlines()
            if not ln.lstrip().startswith("#") and "extern \"C\"" not in ln and ln.strip() != "}"
        ]
        parts.append("\n".join(lines))
    return "\n".join(parts)


ffibuilder = FFI()
ffibuilder.cdef(_cdefs())
ffibuilder.set_source(
    "pgsieve._kernels",
    '#include "pgs_kernels.h"\n#include "pgs_maxsim.h"\n#include "pgs_fde.h"',
    sources=[os.path.relpath(os.path.join(KDIR, src), ROOT) for src in SOURCES],
    include_dirs=[os.path.relpath(KDIR, ROOT)],
    extra_compile_args=["-O2", "-std=gnu99", "-fno-strict-aliasing"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
