"""Man-page corpus: roff parsing on known snippets, and the real installed pages."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest

from pgsieve import corpus as C

MAN = Path("/usr/share/man")
needs_manpages = pytest.mark.skipif(
    not (MAN / "man2" / "open.2.gz").is_file(),
    reason="Debian manpages/manpages-dev not installed (apt-get install -y manpages manpages-dev)")


# -- escapes and arguments ----------------------------------------------------

@pytest.mark.parametrize("src, out", [
    (r"\fBopen\fP(2) and \fIpath\fR", "open(2) and path"),
    (r"\f[B]bold\f[] \f(CWcode\fP", "bold code"),
    (r"a \- b \(em c \[en] d", "a - b \u2014 c \u2013 d"),
    (r"\[aq]x\[aq] \(dqy\(dq \*(lqz\*(rq", "'x' \"y\" \u201cz\u201d"),
    (r"back\eslash \\ and\ space", "back\\slash \\ and space"),
    (r"\&.dot \%hy\:phen", ".dot hyphen"),
    (r"text \" a comment", "text "),
    (r"\s-1SMALL\s0 \s+2big\s0", "SMALL big"),
    (r"\[u00E9]t\['e] \N'65'", "\u00e9t\u00e9 A"),
    (r"tab\w'abc'\h'2n'x", "tabx"),
])
def test_strip_escapes(src: str, out: str) -> None:
    assert C.strip_escapes(src) == out


def test_split_args_quoting() -> None:
    assert C._split_args(r'"int open(const char *" pathname ", int " flags );') == [
        "int open(const char *", "pathname", ", int ", "flags", ");"]
    assert C._split_args(r'one "two ""quoted"" words" \fBthree\ four\fP') == [
        "one", 'two "quoted" words', r"\fBthree\ four\fP"]
    assert C._split_args("") == []


# -- parser -------------------------------------------------------------------

SNIPPET = r""".\" a comment line
.TH DEMO 3 2024-01-01 "test"
.SH NAME
demo, demo2 \- do a demo thing
.SH SYNOPSIS
.nf
.B #include <demo.h>
.PP
.BI "int demo(int " fd ", const char *" s );
.fi
.SH DESCRIPTION
The
.BR demo ()
function does
.I things
with
.IR fd ,
carefully.\c
.B glued
.PP
.de XX
this macro body is not text
..
.if n \{\
conditional text
.\}
.SS Options
.TP
.B \-v
Be verbose.
.IP \(bu 2
A bullet item.
.IP (1)
A numbered item.
.TS
tab(;);
l l.
KEY	VALUE
T{
.B long
T}	cell
.TE
.EX
int x = 1;
    indented();
.EE
After
the example.
.SH "SEE ALSO"
.BR other (7)
"""


def test_parse_roff_snippet() -> None:
    title, volume, sections = C.parse_roff(SNIPPET)
    assert (title, volume) == ("DEMO", "3")
    heads = [h for h, _ in sections]
    assert heads == ["NAME", "SYNOPSIS", "DESCRIPTION", "SEE ALSO"]
    s = dict(sections)
    assert s["NAME"] == ["demo, demo2 - do a demo thing"]
    assert s["SYNOPSIS"] == ["#include <demo.h>", "int demo(int fd, const char *s);"]
    desc = s["DESCRIPTION"]
    assert desc[0] == "The demo() function does things with fd, carefully.glued"
    assert "Options" in desc
    assert "-v Be verbose." in desc
    assert "A bullet item." in desc  # bullet tag dropped
    assert "(1) A numbered item." in desc
    table = [p for p in desc if p.startswith("KEY  VALUE\n")]  # tbl spec lines skipped, cells kept
    assert len(table) == 1 and "long" in table[0] and "cell" in table[0]
    assert "int x = 1;\n    indented();" in desc  # no-fill keeps lines and indentation
    assert desc[-1] == "After the example."
    joined = "\n".join(p for _, ps in sections for p in ps)
    assert "macro body" not in joined and "conditional" not in joined and "comment" not in joined
    assert "tab(;)" not in joined and "\\" not in joined
    assert s["SEE ALSO"] == ["other(7)"]


def test_so_include_resolved_and_alias_detected(tmp_path: Path) -> None:
    (tmp_path / "man7").mkdir()
    (tmp_path / "man3").mkdir()
    with gzip.open(tmp_path / "man7" / "shared.7.gz", "wt") as f:
        f.write(".SH DESCRIPTION\nShared text.\n")
    with gzip.open(tmp_path / "man3" / "host.3.gz", "wt") as f:
        f.write('.TH host 3\n.SH NAME\nhost \\- includes\n.so man7/shared.7\n.SH NOTES\nEnd.\n')
    with gzip.open(tmp_path / "man3" / "alias.3.gz", "wt") as f:
        f.write('.\\" SPDX\n.so man7/shared.7\n')
    assert C.read_manpage(tmp_path / "man3" / "alias.3.gz", tmp_path) is None
    page = C.read_manpage(tmp_path / "man3" / "host.3.gz", tmp_path)
    assert page is not None and page.page == "host(3)"
    assert [h for h, _ in page.sections] == ["NAME", "DESCRIPTION", "NOTES"]
    assert dict(page.sections)["DESCRIPTION"] == ["Shared text."]
    # globbing a non-dpkg tree: the alias file is listed but yields no passages
    files = C.manpage_files(tmp_path, packages=None)
    assert [p.name for p in files] == ["alias.3.gz", "host.3.gz", "shared.7.gz"]
    passages = C.load_manpages(root=tmp_path, packages=None)
    assert sorted({p.page for p in passages}) == ["host(3)", "shared(7)"]


# -- chunking -----------------------------------------------------------------

def test_chunk_sizes() -> None:
    paras = [" ".join(f"w{i}_{j}." for j in range(n)) for i, n in enumerate([50, 90, 30, 260, 40, 10, 70])]
    chunks = C._chunk(paras, 120, 200)
    sizes = [len(c.split()) for c in chunks]
    assert sum(sizes) == 550  # nothing lost or duplicated
    assert all(s <= 200 for s in sizes[:-1]) and all(s >= 60 for s in sizes), sizes
    assert max(sizes) <= 260
    words = " ".join(chunks).split()
    assert words == " ".join(paras).split()  # order kept
    assert C._chunk(["short one."], 120, 200) == ["short one."]
    with pytest.raises(ValueError):
        C.split_passages(C.ManPage("x(1)", Path("x")), min_words=300, max_words=200)


# -- the real corpus ------------------------------------------------------------

@needs_manpages
def test_open2_page() -> None:
    page = C.read_manpage(MAN / "man2" / "open.2.gz")
    assert page is not None and page.page == "open(2)"
    heads = [h for h, _ in page.sections]
    assert heads[:3] == ["NAME", "LIBRARY", "SYNOPSIS"] and "DESCRIPTION" in heads
    passages = C.split_passages(page)
    assert "LIBRARY" not in {p.section for p in passages}  # boilerplate skipped
    assert passages[0].pid == "open(2)#name.0"
    desc = [p for p in passages if p.section == "DESCRIPTION"]
    assert len(desc) >= 5 and all(len(p.text.split()) <= 260 for p in desc)
    assert "The open() system call opens the file specified by pathname." in desc[0].text
    q = C.known_item_queries(passages)
    assert len(q) == 1 and q[0].qid == "open(2)" and q[0].text == "open and possibly create a file"
    assert "open(2)#name.0" not in q[0].relevant and len(q[0].relevant) == len(passages) - 1


@needs_manpages
def test_symlinks_and_aliases_skipped() -> None:
    files = C.manpage_files()
    names = {p.name for p in files}
    assert "open.2.gz" in names and "creat.2.gz" not in names  # creat.2 is a symlink to open.2
    alias = MAN / "man3" / "queue.3.gz"
    if alias.is_file() and not alias.is_symlink():
        assert C.read_manpage(alias) is None


@needs_manpages
def test_load_subset_deterministic_and_clean() -> None:
    a = C.load_manpages(max_pages=40)
    b = C.load_manpages(max_pages=40)
    assert a == b and C.corpus_fingerprint(a) == C.corpus_fingerprint(b)
    assert len({p.page for p in a}) == 40
    assert len({p.pid for p in a}) == len(a)
    for p in a:
        assert p.text.strip() and p.title == p.page
        assert not re.search(r"\\f[BIRP(\[]|\\\(..", p.text), p.pid
        assert not re.search(r"(^|\n)\.(SH|SS|TP|IP|PP|BR|IR|B|I|nf|fi|TS|TE)\b", p.text), p.pid
    two = C.load_manpages(max_pages=5, sections=[2])
    assert all(p.page.endswith("(2)") for p in two) and len({p.page for p in two}) == 5


@needs_manpages
def test_full_corpus_size_and_queries() -> None:
    passages = C.load_manpages()
    pages = {p.page for p in passages}
    assert len(pages) > 1000 and len(passages) > 8000  # the man-pages project: ~1100 real pages
    queries = C.known_item_queries(passages)
    assert len(queries) > 1000
    byq = {q.qid: q for q in queries}
    assert byq["kill(2)"].text == "send signal to a process"
    assert byq["malloc(3)"].text.startswith("allocate and free dynamic memory")
    rel = C.qrels(queries)
    assert all(pid.startswith(qid + "#") for qid, d in rel.items() for pid in d)
