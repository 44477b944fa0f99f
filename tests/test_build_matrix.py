"""Build-only check: ext/ compiles warning-free against every PostgreSQL whose headers are installed, and the
version matrix runner (scripts/matrix.sh, called by scripts/test.sh).

The distribution's server headers are installed by scripts/install.sh (postgresql-server-dev-15 on Debian 12,
-17 on Debian 13).  Where apt also has pgvector for that major (Debian 13: postgresql-17-pgvector), install.sh
installs the server and pgvector too and scripts/matrix.sh runs the regress suite against it; Debian 12 has no
postgresql-15-pgvector, so PostgreSQL 15 is compiled here only.  The embedded PostgreSQL 18 runs the real tests.
Each build happens in a temporary copy of ext/ so the tree's own objects (built for the embedded server) are
left alone."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pgsieve import extbuild, server

REPO = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _pg_configs() -> list[str]:
    """Distribution pg_configs with server headers, plus the embedded one."""
    found = [
        p for p in sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_config")) if extbuild.PgConfig(p).has_server_headers
    ]
    return found + [str(server.pg_config_path())]


def test_distribution_headers_present() -> None:
    """install.sh installs the distribution's server headers; their absence in CI is a failure, not a skip."""
    if any(p.startswith("/usr/lib/postgresql/") for p in _pg_configs()):
        return
    message = "no /usr/lib/postgresql/*/bin/pg_config with server headers (install.sh installs postgresql-server-dev-NN)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


_WARNING = re.compile(r"^(?P<file>[^\s:]+):\d+:(?:\d+:)? (?:warning|error):", re.M)


@pytest.mark.parametrize("pg_config", _pg_configs())
def test_ext_builds_without_warnings(pg_config: str, tmp_path: Path) -> None:
    pg = extbuild.PgConfig(pg_config)
    assert pg.major in extbuild.SUPPORTED_MAJORS, pg.version
    shutil.copytree(REPO / "ext", tmp_path / "ext", ignore=shutil.ignore_patterns("*.o", "*.so", "*.bc"))
    shutil.copytree(REPO / "sql", tmp_path / "sql")
    output = extbuild.build_extension(pg, tmp_path / "ext")
    assert (tmp_path / "ext" / "pgsieve.so").is_file()
    # our sources are named relative to the build dir; PostgreSQL's headers by absolute path
    ours = [m.group(0) for m in _WARNING.finditer(output) if not m.group("file").startswith("/")]
    assert not ours, f"{pg.version}: warnings in pgsieve sources:\n" + "\n".join(
        line for line in output.splitlines() if "warning:" in line or "error:" in line
    )


# --- scripts/matrix.sh: the regress suite on every distribution PostgreSQL with pgvector ------------------------

MATRIX = REPO / "scripts" / "matrix.sh"


def test_matrix_names_why_a_major_is_compile_only() -> None:
    """Every distribution major without a server or pgvector is reported as compile-only, with apt's answer."""
    if not _compile_only():
        pytest.skip("every distribution PostgreSQL here has a server and pgvector: matrix.sh runs regress on each")
    out = subprocess.run(["bash", str(MATRIX)], capture_output=True, text=True, timeout=1800, cwd=REPO,
                         env=dict(os.environ, PGSIEVE_MATRIX_PG_CONFIGS=" ".join(_compile_only())))
    assert out.returncode == 0, out.stdout + out.stderr
    for pgc in _compile_only():
        pg = extbuild.PgConfig(pgc)
        line = next((x for x in out.stdout.splitlines() if x.startswith(f"matrix: {pg.version}:")), None)
        assert line is not None and "compile check only" in line, out.stdout
        if not pg.has_pgvector:
            assert f"apt-cache policy postgresql-{pg.major}-pgvector" in line, line


def _compile_only() -> list[str]:
    return [
        p for p in sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_config"))
        if not (extbuild.PgConfig(p).has_pgvector and (Path(p).parent / "postgres").is_file())
    ]


def test_matrix_runs_the_regress_suite(pg_extension: dict) -> None:
    """matrix.sh's regress path end to end (throwaway cluster, install from a copy, pg_regress), pointed at the
    embedded PostgreSQL so that it runs wherever the suite runs (CI on Debian 13 also runs it on PostgreSQL 17)."""
    pgc = str(server.pg_config_path())
    out = subprocess.run(["bash", str(MATRIX)], capture_output=True, text=True, timeout=1800, cwd=REPO,
                         env=dict(os.environ, PGSIEVE_MATRIX_PG_CONFIGS=pgc))
    version = extbuild.PgConfig(pgc).version
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert f"matrix: {version}: regress ok" in out.stdout, out.stdout
    assert re.search(r"All \d+ tests passed", out.stdout), out.stdout


# --- expected outputs of majors before 18 ------------------------------------------------------------------------

EXPECTED = REPO / "tests" / "regress" / "expected"


def without_disabled_lines(text: str) -> str:
    """PostgreSQL < 18 output of a regress file: EXPLAIN has no ``Disabled: true`` lines (new in 18), so each
    plan loses them and its ``(N rows)`` footer counts fewer."""
    out: list[str] = []
    removed = 0
    for line in text.split("\n"):
        if line.strip() == "Disabled: true":
            removed += 1
            continue
        m = re.match(r"^\((\d+) rows?\)$", line)
        if m and removed:
            n = int(m.group(1)) - removed
            line = f"({n} row{'s' if n != 1 else ''})"
            removed = 0
        out.append(line)
    return "\n".join(out)


def test_version_specific_expected_outputs_are_in_sync() -> None:
    """tests/regress/expected/X_1.out (pg_regress' alternative output, for 15-17) is X.out minus 18's
    ``Disabled: true`` lines; regenerate it with ``without_disabled_lines`` after changing X.out."""
    for out in sorted(EXPECTED.glob("*.out")):
        if re.search(r"_\d+\.out$", out.name):
            continue
        text = out.read_text()
        alt = EXPECTED / f"{out.stem}_1.out"
        if "Disabled: true" in text:
            assert alt.is_file(), f"{out.name} shows PostgreSQL 18's 'Disabled: true': add {alt.name} for 15-17"
            assert alt.read_text() == without_disabled_lines(text), f"{alt.name} is out of date with {out.name}"
        else:
            assert not alt.is_file(), f"{alt.name} has no reason to exist"


def test_version_guards_live_in_the_compat_header() -> None:
    offenders = [
        str(p.relative_to(REPO)) for p in sorted((REPO / "ext").rglob("*.[ch]"))
        if p.name != "pgsieve_compat.h" and re.search(r"\bPG_VERSION_NUM\b|\bPG_MAJORVERSION", p.read_text(errors="replace"))
    ]
    assert not offenders, f"version guards outside ext/pgsieve_compat.h: {offenders}"
