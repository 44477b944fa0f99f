"""Build and install the pgsieve PostgreSQL extension (``ext/``) with PGXS.

``pgsieve ext install`` is the one way the extension gets into a PostgreSQL installation: the embedded server's
(default) or any PostgreSQL 15-18 that has pgvector (``--pg-config``).  It is cheap to repeat: ``make`` is
incremental and ``make install`` is skipped when the installed files already match the build.

Two things differ from a plain ``make install``:

* ``CFLAGS`` is always overridden.  ``pg_config`` records the flags PostgreSQL itself was built with; the
  embedded build used gcc 14 and records flags (``-Wmissing-variable-declarations``) older compilers reject.
  ``EXT_CFLAGS`` is PostgreSQL's own warning set minus that flag, so our sources get the same scrutiny.
* ``with_llvm=no``: distribution builds enable JIT bitcode, which would require clang; the bitcode is optional.
"""

from __future__ import annotations

import contextlib
import fcntl
import filecmp
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "EXT_CFLAGS",
    "ExtBuildError",
    "PgConfig",
    "build_extension",
    "ensure_extension",
    "find_source_root",
    "install_extension",
]

EXTENSION = "pgsieve"
SUPPORTED_MAJORS = range(15, 19)

#: PostgreSQL's standard warning flags (see its configure) that gcc >= 8 and clang accept, plus the code
#: generation flags PostgreSQL requires of extensions.
EXT_CFLAGS = " ".join(
    [
        "-O2",
        "-Wall",
        "-Wmissing-prototypes",
        "-Wpointer-arith",
        "-Wdeclaration-after-statement",
        "-Werror=vla",
        "-Wendif-labels",
        "-Wmissing-format-attribute",
        "-Wimplicit-fallthrough=3",
        "-Wcast-function-type",
        "-Wshadow=compatible-local",
        "-Wformat-security",
        "-Wno-format-truncation",
        "-Wno-stringop-truncation",
        "-fno-strict-aliasing",
        "-fwrapv",
        "-fexcess-precision=standard",
    ]
)


class ExtBuildError(RuntimeError):
    """The extension could not be built or installed; the message says what to do."""


class PgConfig:
    """The answers of one ``pg_config`` binary that a build needs."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_file() or not os.access(self.path, os.X_OK):
            raise ExtBuildError(
                f"pg_config not found or not executable: {self.path} "
                "(pass the pg_config of the PostgreSQL to install into, e.g. --pg-config /usr/lib/postgresql/17/bin/pg_config)"
            )
        self.version = self._ask("--version")  # "PostgreSQL 18.6"
        match = re.search(r"(\d+)", self.version)
        if match is None:
            raise ExtBuildError(f"{self.path} --version printed {self.version!r}; is it a PostgreSQL pg_config?")
        self.major = int(match.group(1))
        self.sharedir = Path(self._ask("--sharedir"))
        self.pkglibdir = Path(self._ask("--pkglibdir"))
        self.includedir_server = Path(self._ask("--includedir-server"))

    def _ask(self, flag: str) -> str:
        try:
            out = subprocess.run([str(self.path), flag], check=True, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError) as exc:
            raise ExtBuildError(f"{self.path} {flag} failed: {exc}") from exc
        return out.stdout.strip()

    @property
    def has_pgvector(self) -> bool:
        """pgvector is installed where this PostgreSQL looks for extensions."""
        return (self.sharedir / "extension" / "vector.control").is_file()

    @property
    def has_server_headers(self) -> bool:
        """The server development headers (Debian: postgresql-server-dev-NN) are installed."""
        return (self.includedir_server / "postgres.h").is_file()


def find_source_root() -> Path:
    """The pgsieve source tree: ``$PGSIEVE_SOURCE_DIR``, else the checkout this package was installed from.

    The extension is built from source on the target machine (the C must match the server's headers), so a
    wheel without the source tree cannot install it.
    """
    candidates: list[Path] = []
    env = os.environ.get("PGSIEVE_SOURCE_DIR")
    if env:
        candidates.append(Path(env).expanduser().resolve())
    candidates.append(Path(__file__).resolve().parents[2])  # <root>/pyclient/pgsieve/extbuild.py
    for root in candidates:
        if (root / "ext" / "Makefile").is_file() and (root / "ext" / f"{EXTENSION}.control").is_file():
            return root
    raise ExtBuildError(
        "cannot find the pgsieve source tree (ext/Makefile) at "
        + ", ".join(str(c) for c in candidates)
        + "; install pgsieve from a checkout (pip install -e .) or set PGSIEVE_SOURCE_DIR"
    )


def _make(ext_dir: Path, pg: PgConfig, *targets: str) -> str:
    """Run make in ``ext_dir`` with our flags; return its combined output, ExtBuildError with it on failure."""
    cmd = [
        "make",
        "-C",
        str(ext_dir),
        f"-j{os.cpu_count() or 1}",
        f"PG_CONFIG={pg.path}",
        f"CFLAGS={EXT_CFLAGS}",
        "with_llvm=no",
        *targets,
    ]
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=1800)
    except FileNotFoundError as exc:
        raise ExtBuildError("`make` not found: install a C toolchain (Debian: apt-get install build-essential)") from exc
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise ExtBuildError(f"make {' '.join(targets) or 'all'} failed in {ext_dir} ({pg.version}, {pg.path}):\n{output[-6000:]}")
    return output


@contextlib.contextmanager
def _build_lock(root: Path) -> Iterator[Path]:
    """Serialise builds of one source tree (tests, CLI and install.sh may run at once); yields the state dir."""
    state = root / "build"
    state.mkdir(exist_ok=True)
    with open(state / "ext-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield state
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def build_extension(pg: PgConfig, ext_dir: Path, *, clean: bool = False, stamp: Path | None = None) -> str:
    """Compile ``ext_dir`` against ``pg``; return make's output (it holds any compiler warnings).

    Objects are only valid for the PostgreSQL they were compiled against, and make cannot see a change of
    pg_config, so ``stamp`` (a file outside the source tree) records it and a mismatch forces ``make clean``.
    """
    if not pg.has_server_headers:
        raise ExtBuildError(
            f"PostgreSQL server headers missing for {pg.path} ({pg.includedir_server}/postgres.h); "
            f"Debian/Ubuntu: apt-get install postgresql-server-dev-{pg.major}"
        )
    ident = json.dumps({"pg_config": str(pg.path), "version": pg.version, "cflags": EXT_CFLAGS})
    if clean or (stamp is not None and (not stamp.is_file() or stamp.read_text() != ident)):
        _make(ext_dir, pg, "clean")
    output = _make(ext_dir, pg)
    if stamp is not None:
        stamp.write_text(ident)
    return output


def _install_plan(root: Path, pg: PgConfig) -> list[tuple[Path, Path]]:
    """(built file, installed location) pairs that ``make install`` writes."""
    ext_dir = root / "ext"
    so = ext_dir / f"{EXTENSION}.so"
    pairs = [(so, pg.pkglibdir / so.name)]
    pairs.append((ext_dir / f"{EXTENSION}.control", pg.sharedir / "extension" / f"{EXTENSION}.control"))
    for script in sorted((root / "sql").glob(f"{EXTENSION}--*.sql")):
        pairs.append((script, pg.sharedir / "extension" / script.name))
    return pairs


def _up_to_date(pairs: list[tuple[Path, Path]]) -> bool:
    return all(dst.is_file() and filecmp.cmp(src, dst, shallow=False) for src, dst in pairs)


def install_extension(pg_config: str | os.PathLike[str] | None = None, *, force: bool = False) -> dict[str, Any]:
    """Build ``ext/`` and install it into the PostgreSQL of ``pg_config`` (default: the embedded server's).

    Returns what happened: ``installed`` is False when the installed files were already identical.  ``force``
    rebuilds from clean and reinstalls.  Raises ExtBuildError with an actionable message otherwise.
    """
    if pg_config is None:
        from . import server

        pg_config = server.pg_config_path()
    pg = PgConfig(pg_config)
    if pg.major not in SUPPORTED_MAJORS:
        raise ExtBuildError(f"pgsieve supports PostgreSQL 15-18; {pg.path} is {pg.version}")
    if not pg.has_pgvector:
        raise ExtBuildError(
            f"pgvector is not installed for {pg.version} ({pg.sharedir}/extension/vector.control is missing); "
            "pgsieve requires it: install pgvector for this PostgreSQL first "
            f"(Debian/Ubuntu with the PGDG repository: apt-get install postgresql-{pg.major}-pgvector)"
        )
    root = find_source_root()
    with _build_lock(root) as state:
        build_extension(pg, root / "ext", clean=force, stamp=state / "ext-build-stamp.json")
        pairs = _install_plan(root, pg)
        missing = [str(src) for src, _ in pairs if not src.is_file()]
        if missing:
            raise ExtBuildError(f"build finished but these files are missing: {', '.join(missing)}")
        installed = force or not _up_to_date(pairs)
        if installed:
            _make(root / "ext", pg, "install")
            if not _up_to_date(pairs):
                raise ExtBuildError(f"make install did not install {EXTENSION} into {pg.pkglibdir} / {pg.sharedir}")
    return {
        "pg_config": str(pg.path),
        "pg_version": pg.version,
        "installed": installed,
        "files": [str(dst) for _, dst in pairs],
    }


def ensure_extension(conn: Any) -> None:
    """Create pgvector and pgsieve in the connected database if they are missing (psycopg connection).

    Client-side convenience for applications and tests; the extension's own scripts never use IF NOT EXISTS.
    Transaction control stays with the caller (commit if the connection is not in autocommit mode).
    """
    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    conn.execute(f"CREATE EXTENSION IF NOT EXISTS {EXTENSION}")
