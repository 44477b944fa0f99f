"""Lint of the extension script (sql/pgsieve--*.sql), after the rules of reference/reliability.md §9 and §11.9.

The script runs as superuser inside CREATE EXTENSION, in a schema the installing user may choose, so:

* it starts with ``\\echo Use "CREATE EXTENSION pgsieve" ... \\quit`` (psql must not run it by itself);
* no ``CREATE OR REPLACE`` and no ``IF NOT EXISTS`` (CVE-2022-2625: they adopt objects an attacker created
  first) — nor ``DROP ... IF EXISTS``, which has no business in an install script;
* ``@extschema@`` / ``@extowner@`` never inside a string or a dollar-quoted body (CVE-2023-39417);
* functions in SQL or a PL (parsed at call time) carry ``SET search_path`` ending in ``pg_temp``;
* every C function states its volatility and its parallel safety explicitly, and names a symbol that the C
  sources export with ``PG_FUNCTION_INFO_V1``; IMMUTABLE ones are ``PARALLEL SAFE``; aggregates state
  ``PARALLEL``.

Comments, strings and dollar-quoted bodies are tokenized properly, so words in comments do not count, and the
linter itself is tested on bad scripts (each rule must fire).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = sorted((REPO / "sql").glob("pgsieve--*.sql"))


@dataclass
class Statement:
    line: int
    code: str  # comments removed, strings and dollar bodies kept
    bare: str  # comments removed, strings and dollar bodies blanked: what SQL keywords are searched in
    quoted: list[str]  # contents of the strings and dollar-quoted bodies


_DOLLAR = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


def split_statements(text: str) -> list[Statement]:
    """Split a script on top-level semicolons; psql backslash lines end a statement of their own."""
    out: list[Statement] = []
    code: list[str] = []
    bare: list[str] = []
    quoted: list[str] = []
    start_line = 1
    line = 1
    i, n = 0, len(text)

    def flush() -> None:
        nonlocal code, bare, quoted, start_line
        if "".join(bare).strip():
            out.append(Statement(start_line, "".join(code).strip(), "".join(bare).strip(), quoted))
        code, bare, quoted = [], [], []
        start_line = line

    while i < n:
        ch = text[i]
        if not "".join(bare).strip():
            start_line = line
        if ch == "\n":
            line += 1
        if text.startswith("--", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            line += text.count("\n", i, j)
            i = j
            continue
        if ch == "\\" and (i == 0 or text[i - 1] == "\n") and not "".join(bare).strip():
            j = text.find("\n", i)
            j = n if j < 0 else j
            code.append(text[i:j])
            bare.append(text[i:j])
            flush()
            i = j
            continue
        if ch == "'" or ch == '"':
            j = i + 1
            while j < n:
                if text[j] == ch and j + 1 < n and text[j + 1] == ch:
                    j += 2
                    continue
                if text[j] == ch:
                    break
                j += 1
            body = text[i + 1:j]
            line += body.count("\n")
            code.append(text[i:j + 1])
            bare.append(ch + " " * 3 + ch if ch == "'" else text[i:j + 1])
            if ch == "'":
                quoted.append(body)
            i = j + 1
            continue
        m = _DOLLAR.match(text, i)
        if ch == "$" and m:
            tag = m.group(0)
            j = text.find(tag, m.end())
            j = n if j < 0 else j
            body = text[m.end():j]
            line += body.count("\n")
            code.append(text[i:j + len(tag)])
            bare.append("$$ $$")
            quoted.append(body)
            i = j + len(tag)
            continue
        if ch == ";":
            code.append(ch)
            bare.append(ch)
            i += 1
            flush()
            continue
        code.append(ch)
        bare.append(ch)
        i += 1
    flush()
    return out


_FUNC = re.compile(r"^CREATE\s+(?:OR\s+REPLACE\s+)?FUNCTION\s+([\w.\"]+)", re.I)
_LANG = re.compile(r"\bLANGUAGE\s+'?(\w+)'?", re.I)
_VOLATILITY = re.compile(r"\b(IMMUTABLE|STABLE|VOLATILE)\b", re.I)
_PARALLEL = re.compile(r"\bPARALLEL\s+(SAFE|RESTRICTED|UNSAFE)\b", re.I)
_AS_C = re.compile(r"\bAS\s+'MODULE_PATHNAME'\s*,\s*'(\w+)'", re.I)
_SEARCH_PATH = re.compile(r"\bSET\s+search_path\s*(?:=|TO)\s*([^;]*?)(?=\s+(?:AS|LANGUAGE|IMMUTABLE|STABLE|VOLATILE|"
                          r"STRICT|PARALLEL|COST|ROWS|SECURITY|SET|CALLED|RETURNS|$))", re.I)


def exported_symbols(ext_dir: Path = REPO / "ext") -> set[str]:
    syms: set[str] = set()
    for p in ext_dir.rglob("*.c"):
        syms.update(re.findall(r"PG_FUNCTION_INFO_V1\((\w+)\)", p.read_text(errors="replace")))
    return syms


def lint(text: str, symbols: set[str] | None = None) -> list[str]:
    """Every rule broken by the script text, as 'line N: what'."""
    problems: list[str] = []
    stmts = split_statements(text)
    # install scripts: \echo Use "CREATE EXTENSION x" ...; update scripts: \echo Use "ALTER EXTENSION x UPDATE ..."
    if not stmts or not re.match(
        r'^\\echo\s+Use\s+"(CREATE EXTENSION \w+|ALTER EXTENSION \w+ UPDATE\b[^"]*)".*\\quit\s*$', stmts[0].code
    ):
        problems.append('line 1: the script must start with \\echo Use "CREATE EXTENSION ..." ... \\quit')
    for st in stmts:
        where = f"line {st.line}"
        flat = " ".join(st.bare.split())
        if re.search(r"\bOR\s+REPLACE\b", flat, re.I):
            problems.append(f"{where}: OR REPLACE")
        if re.search(r"\bIF\s+(NOT\s+)?EXISTS\b", flat, re.I):
            problems.append(f"{where}: IF [NOT] EXISTS")
        for q in st.quoted:
            if re.search(r"@ext(schema|owner)(:[\w]+)?@", q):
                problems.append(f"{where}: @extschema@/@extowner@ inside a quoted string or body")
        m = _FUNC.match(flat)
        if m:
            name = m.group(1)
            lang = _LANG.search(flat)
            if lang is None:
                problems.append(f"{where}: function {name} has no LANGUAGE")
                continue
            language = lang.group(1).lower()
            vol = _VOLATILITY.search(flat)
            par = _PARALLEL.search(flat)
            if language == "c":
                if vol is None:
                    problems.append(f"{where}: C function {name} does not state its volatility")
                if par is None:
                    problems.append(f"{where}: C function {name} does not state its parallel safety")
                if vol and par and vol.group(1).upper() == "IMMUTABLE" and par.group(1).upper() != "SAFE":
                    problems.append(f"{where}: IMMUTABLE function {name} is not PARALLEL SAFE")
                sym = _AS_C.search(" ".join(st.code.split()))
                if sym is None:
                    problems.append(f"{where}: C function {name} does not name its symbol (AS 'MODULE_PATHNAME', 'sym')")
                elif symbols is not None and sym.group(1) not in symbols:
                    problems.append(f"{where}: C function {name}: no PG_FUNCTION_INFO_V1({sym.group(1)}) in ext/")
            elif language != "internal":
                sp = _SEARCH_PATH.search(flat)
                if sp is None:
                    problems.append(f"{where}: {language} function {name} has no SET search_path")
                elif not re.search(r"\bpg_temp\s*$", sp.group(1).strip().strip("'\""), re.I):
                    problems.append(f"{where}: {language} function {name}: search_path must end with pg_temp")
                if vol is None or par is None:
                    problems.append(f"{where}: function {name} does not state its volatility and parallel safety")
        if re.match(r"^CREATE\s+AGGREGATE\b", flat, re.I) and not re.search(r"\bPARALLEL\s*=\s*\w+", flat, re.I):
            problems.append(f"{where}: aggregate without PARALLEL = ...")
    return problems


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_extension_script_is_clean(script: Path) -> None:
    problems = lint(script.read_text(), exported_symbols())
    assert not problems, f"{script.name}:\n" + "\n".join(problems)


def test_script_exists_and_is_linted_in_full() -> None:
    assert SCRIPTS, "no sql/pgsieve--*.sql"
    control = (REPO / "ext" / "pgsieve.control").read_text()
    current = re.search(r"^default_version\s*=\s*'([^']+)'", control, re.M)
    assert current is not None, "ext/pgsieve.control has no default_version"
    text = (REPO / "sql" / f"pgsieve--{current.group(1)}.sql").read_text()
    stmts = split_statements(text)
    funcs = [s for s in stmts if _FUNC.match(" ".join(s.bare.split()))]
    # every CREATE FUNCTION of the script was seen as one statement
    assert len(funcs) == len(re.findall(r"^CREATE FUNCTION", text, re.M)) > 40
    assert any("pgsieve_index_check" in s.code for s in funcs)


HEADER = '\\echo Use "CREATE EXTENSION pgsieve" to load this file. \\quit\n'
GOOD_C = "CREATE FUNCTION f(int) RETURNS int AS 'MODULE_PATHNAME', 'f' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;\n"


@pytest.mark.parametrize(("script", "finding"), [
    ("CREATE FUNCTION f(int) RETURNS int AS 'MODULE_PATHNAME', 'f' LANGUAGE C;", "line 1: the script must start"),
    (HEADER + "CREATE OR REPLACE FUNCTION f(int) RETURNS int AS 'MODULE_PATHNAME', 'f' LANGUAGE C IMMUTABLE "
     "PARALLEL SAFE;", "OR REPLACE"),
    (HEADER + "CREATE TABLE IF NOT EXISTS t (a int);", "IF [NOT] EXISTS"),
    (HEADER + "DROP FUNCTION IF EXISTS g(int);", "IF [NOT] EXISTS"),
    (HEADER + "CREATE FUNCTION f(int) RETURNS int AS 'MODULE_PATHNAME', 'f' LANGUAGE C STRICT;",
     "does not state its volatility"),
    (HEADER + "CREATE FUNCTION f(int) RETURNS int AS 'MODULE_PATHNAME', 'f' LANGUAGE C STABLE;",
     "does not state its parallel safety"),
    (HEADER + "CREATE FUNCTION f(int) RETURNS int AS 'MODULE_PATHNAME', 'f' LANGUAGE C IMMUTABLE PARALLEL UNSAFE;",
     "is not PARALLEL SAFE"),
    (HEADER + "CREATE FUNCTION f(int) RETURNS int AS 'MODULE_PATHNAME', 'nope' LANGUAGE C IMMUTABLE PARALLEL SAFE;",
     "no PG_FUNCTION_INFO_V1(nope)"),
    (HEADER + "CREATE FUNCTION g(int) RETURNS int LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT $1 + 1 $$;",
     "has no SET search_path"),
    (HEADER + "CREATE FUNCTION g(int) RETURNS int LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_temp, "
     "pg_catalog AS $$ SELECT $1 $$;", "must end with pg_temp"),
    (HEADER + "CREATE FUNCTION g(int) RETURNS int LANGUAGE sql SET search_path = pg_catalog, pg_temp "
     "AS $$ SELECT @extschema@.f($1) $$;", "inside a quoted string or body"),
    (HEADER + "CREATE AGGREGATE a(int) (SFUNC = f, STYPE = int);", "aggregate without PARALLEL"),
])
def test_lint_rules_fire(script: str, finding: str) -> None:
    problems = lint(script, {"f"})
    assert any(finding in p for p in problems), problems


def test_lint_ignores_comments_and_strings() -> None:
    script = (HEADER + "-- never CREATE OR REPLACE, never IF NOT EXISTS\n/* OR REPLACE */\n" + GOOD_C
              + "COMMENT ON FUNCTION f(int) IS 'safe to run IF NOT EXISTS; OR REPLACE';\n"
              + "CREATE FUNCTION g(int) RETURNS int LANGUAGE sql IMMUTABLE PARALLEL SAFE "
              + "SET search_path = pg_catalog, pg_temp AS $b$ SELECT $1 -- ; OR REPLACE\n $b$;\n")
    assert lint(script, {"f"}) == []
    stmts = split_statements(script)
    assert [s.line for s in stmts] == [1, 4, 5, 6]
