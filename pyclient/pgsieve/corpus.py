"""A real text corpus nobody here wrote: the Linux man-pages (Debian ``manpages``, ``manpages-dev``).

Benchmarks and demos need text we did not write ourselves, that every
developer machine can install offline-reproducibly (``apt-get install
manpages manpages-dev``), and that comes with natural queries.  Man pages fit:
each page's NAME line ("open, openat, creat \\- open and possibly create a
file") is a short human-written description of the page, which gives a
known-item retrieval task for free: the description is the query, the page's
other passages are the relevant documents.

The roff parser here is deliberately small: it understands the man(7)
macros the man-pages project uses (``.SH .SS .TP .IP .B .I .BR ...``), no-fill
blocks, tbl tables, ``.so`` includes and the escapes that appear in the
corpus, and drops the rest.  It is not a typesetter; it produces clean
prose for embedding.

The page list comes from dpkg's file lists of the two packages when present,
so the corpus does not change when other packages add man pages to the same
directories; otherwise ``/usr/share/man/man[1-8]`` is globbed.
"""

from __future__ import annotations

import gzip
import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

__all__ = [
    "Passage",
    "ManPage",
    "KnownItemQuery",
    "DEFAULT_PACKAGES",
    "DEFAULT_SKIP_SECTIONS",
    "manpage_files",
    "parse_roff",
    "strip_escapes",
    "read_manpage",
    "split_passages",
    "load_manpages",
    "known_item_queries",
    "qrels",
    "corpus_fingerprint",
]

MAN_ROOT = Path("/usr/share/man")
DEFAULT_PACKAGES: tuple[str, ...] = ("manpages", "manpages-dev")
#: Boilerplate sections that are identical across hundreds of pages and so
#: are noise for retrieval ("Standard C library (libc, -lc)").
DEFAULT_SKIP_SECTIONS: tuple[str, ...] = ("COLOPHON", "LIBRARY")
DPKG_INFO = Path("/var/lib/dpkg/info")


@dataclass(frozen=True)
class Passage:
    """One retrievable chunk of a man page section."""

    pid: str  # unique, stable: "open(2)#description.0"
    page: str  # "open(2)"
    section: str  # "DESCRIPTION"
    text: str

    @property
    def title(self) -> str:
        """What ingest stores as the title column: the page name."""
        return self.page


@dataclass
class ManPage:
    """A parsed page: its name and its sections' paragraphs, in order."""

    page: str
    path: Path
    sections: list[tuple[str, list[str]]] = field(default_factory=list)


@dataclass(frozen=True)
class KnownItemQuery:
    """A query (a page's NAME description) and the page passages it should find."""

    qid: str  # the page, e.g. "open(2)"
    text: str  # "open and possibly create a file"
    relevant: tuple[str, ...]  # pids of the page's passages other than NAME


# ---------------------------------------------------------------------------
# escapes
# ---------------------------------------------------------------------------

_NAMED_CHARS: dict[str, str] = {
    "em": "\u2014", "en": "\u2013", "hy": "-", "mi": "-", "aq": "'", "dq": '"', "bu": "\u2022",
    "co": "\u00a9", "rg": "\u00ae", "tm": "\u2122", "lq": "\u201c", "rq": "\u201d", "oq": "\u2018",
    "cq": "\u2019", "ga": "`", "ti": "~", "ha": "^", "rs": "\\", "pl": "+", "eq": "=", "+-": "\u00b1",
    "mu": "\u00d7", "di": "\u00f7", "de": "\u00b0", "dg": "\u2020", "sc": "\u00a7", "<=": "\u2264",
    ">=": "\u2265", "!=": "\u2260", "->": "\u2192", "<-": "\u2190", "ra": "\u27e9", "la": "\u27e8",
    "fm": "\u2032", "sd": "\u2033", "ua": "\u2191", "da": "\u2193", "sl": "/", "ba": "|", "br": "|",
    "lh": "", "rh": "", "shc": "", "mc": "\u00b5", "aa": "\u00b4", "ul": "_", "ru": "_", "ct": "\u00a2",
    "Tm": "\u2122", "R": "\u00ae", "^o": "\u00b0",
}
_ACCENTS = {"'": "\u0301", "`": "\u0300", "^": "\u0302", ":": "\u0308", "~": "\u0303", ",": "\u0327"}

_ESCAPE_RE = re.compile(
    r"""\\(?:
        (?P<comment>["\#].*$)                               # \" comment to end of line
      | f(?:\[[^\]]*\]|\(..|.)                              # font change
      | s[-+]?(?:\d|\(\d\d|\[\d+\]|'\d+')                    # size change
      | \((?P<c2>..)                                        # \(xx named char
      | \[(?P<cl>[^\]]*)\]                                  # \[name] named char
      | \*(?:\((?P<s2>..)|\[(?P<sl>[^\]]*)\]|(?P<s1>.))     # string register
      | n[-+]?(?:\(..|\[[^\]]*\]|.)                          # number register
      | N'(?P<num>\d+)'                                     # \N'65' char by code
      | [hvwoxzbDHLlRSXZ]'[^']*'                            # motions, widths, drawing
      | [kgm](?:\(..|\[[^\]]*\]|.)                           # marks, formats, colours
      | \$(?:\d|\*|@)                                       # macro arguments
      | (?P<one>.)                                          # any other single-char escape
    )""",
    re.VERBOSE,
)
_SINGLE = {"-": "-", "e": "\\", "E": "\\", "\\": "\\", " ": " ", "~": " ", "0": " ", "'": "'",
           "`": "`", ".": ".", "t": "\t", "+": "+"}
_DROP = set("&:%|^,/c)!{}pqruaydrt")  # zero-width or layout-only escapes


def _named(name: str) -> str:
    if name in _NAMED_CHARS:
        return _NAMED_CHARS[name]
    if re.fullmatch(r"u[0-9A-Fa-f]{4,6}", name):
        return chr(int(name[1:], 16))
    if re.fullmatch(r"char\d+", name):
        return chr(int(name[4:]))
    if len(name) == 2 and name[0] in _ACCENTS:  # \['a] style accented letters
        import unicodedata

        return unicodedata.normalize("NFC", name[1] + _ACCENTS[name[0]])
    return ""


def _escape_sub(m: re.Match[str]) -> str:
    if m.group("comment") is not None:
        return ""
    for key in ("c2", "cl"):
        if m.group(key) is not None:
            return _named(m.group(key))
    for key in ("s2", "sl", "s1"):
        if m.group(key) is not None:
            return {"lq": "\u201c", "rq": "\u201d", "R": "\u00ae", "Tm": "\u2122", "-": "-"}.get(
                m.group(key), "")
    if m.group("num") is not None:
        return chr(int(m.group("num")))
    one = m.group("one")
    if one is not None:
        if one in _SINGLE:
            return _SINGLE[one]
        return "" if one in _DROP else one
    return ""


def strip_escapes(text: str) -> str:
    """Replace roff escapes with the characters they print (or nothing)."""
    if "\\" not in text:
        return text
    return _ESCAPE_RE.sub(_escape_sub, text)


_COMMENT_RE = re.compile(r"\\(.)")


def _cut_comment(line: str) -> str:
    """Remove a ``\\"`` / ``\\#`` comment, respecting escaped backslashes."""
    for m in _COMMENT_RE.finditer(line):
        if m.group(1) in ('"', "#"):
            return line[: m.start()]
    return line


def _ends_with_continuation(line: str) -> bool:
    """True if the line ends with an unescaped backslash (roff line continuation)."""
    stripped = line.rstrip("\n")
    run = len(stripped) - len(stripped.rstrip("\\"))
    return run % 2 == 1


def _split_args(rest: str) -> list[str]:
    """Split macro arguments: whitespace-separated, "double quoted" with "" for a quote."""
    args: list[str] = []
    i, n = 0, len(rest)
    while i < n:
        while i < n and rest[i] in " \t":
            i += 1
        if i >= n:
            break
        if rest[i] == '"':
            i += 1
            buf = []
            while i < n:
                if rest[i] == '"':
                    if i + 1 < n and rest[i + 1] == '"':
                        buf.append('"')
                        i += 2
                        continue
                    i += 1
                    break
                if rest[i] == "\\" and i + 1 < n:
                    buf.append(rest[i:i + 2])
                    i += 2
                    continue
                buf.append(rest[i])
                i += 1
            args.append("".join(buf))
        else:
            j = i
            while j < n and rest[j] not in " \t":
                j += 2 if rest[j] == "\\" and j + 1 < n else 1
            args.append(rest[i:j])
            i = j
    return args


# ---------------------------------------------------------------------------
# roff -> sections of paragraphs
# ---------------------------------------------------------------------------

_IGNORED_TAGS = {"\u2022", "-", "*", "o", ""}


class _Builder:
    """Accumulates paragraphs per .SH section while the parser walks the lines."""

    def __init__(self) -> None:
        self.sections: list[tuple[str, list[str]]] = []
        self.lines: list[tuple[str, bool]] = []  # (text, nofill)
        self.nofill = False
        self.glue = False  # previous text ended with \c: join without a space
        self.pending: Optional[str] = None  # "SH"/"SS" awaiting its heading on the next line
        self.title = ""
        self.volume = ""

    def text(self, s: str) -> None:
        if self.pending == "SH":
            self.pending = None
            self.start_section(s)
            return
        if self.pending == "SS":
            self.pending = None
            self.flush()
            self.text(s)
            self.flush()
            return
        if not self.sections:
            return  # text before the first .SH (after .TH) is not page content
        glue = s.endswith("\\c")
        s = strip_escapes(s[:-2] if glue else s)
        if self.glue and self.lines:
            prev, nf = self.lines[-1]
            self.lines[-1] = (prev + s, nf)
        else:
            self.lines.append((s, self.nofill))
        self.glue = glue

    def flush(self) -> None:
        """End the current paragraph (a blank line, .PP, .TP, .IP, a heading...)."""
        if self.sections and self.lines:
            out: list[str] = []
            for s, nofill in self.lines:
                s = re.sub(r"[ \t]+", " ", s).strip() if not nofill else s.rstrip().expandtabs(8)
                if not s:
                    continue
                if out and not nofill and not out[-1].endswith("\n"):
                    out.append(" " + s)
                else:
                    out.append(s)
                if nofill:
                    out.append("\n")
            para = "".join(out).strip("\n").rstrip()
            if para.strip():
                self.sections[-1][1].append(para)
        self.lines = []
        self.glue = False

    def start_section(self, heading: str) -> None:
        self.flush()
        head = re.sub(r"\s+", " ", strip_escapes(heading)).strip().upper()
        self.sections.append((head, []))


def _tbl_line(line: str) -> str:
    """A tbl data row as plain text: cells separated by two spaces, T{ T} dropped."""
    cells = [c.replace("T{", "").replace("T}", "").strip() for c in line.split("\t")]
    return "  ".join(c for c in cells if c)


def parse_roff(text: str, include: Optional[Callable[[str], Optional[str]]] = None) -> tuple[str, str, list[tuple[str, list[str]]]]:
    """Parse man(7) roff source into ``(title, volume, [(heading, [paragraph, ...]), ...])``.

    ``include(target)`` returns the text of a ``.so`` target (or None to skip it).
    """
    b = _Builder()
    _parse_lines(text.splitlines(), b, include, depth=0)
    b.flush()
    return b.title, b.volume, b.sections


def _logical_lines(raw: Iterable[str]) -> list[str]:
    """Cut comments and join backslash-continued lines."""
    out: list[str] = []
    buf = ""
    for line in raw:
        line = _cut_comment(line)
        if _ends_with_continuation(line):
            buf += line[:-1]
            continue
        out.append(buf + line)
        buf = ""
    if buf:
        out.append(buf)
    return out


def _parse_lines(raw: Sequence[str], b: _Builder, include: Optional[Callable[[str], Optional[str]]], depth: int) -> None:
    lines = _logical_lines(raw)
    i = 0
    table: Optional[str] = None  # None, "format" (skipping tbl spec) or "data"
    while i < len(lines):
        line = lines[i]
        i += 1
        if table is not None and not re.match(r"^[.']\s*TE\b", line):
            if table == "format":
                if line.rstrip().endswith("."):
                    table = "data"
                continue
            if line.startswith(".T&"):  # a new format section follows
                table = "format"
                continue
            if line.strip() in ("_", "="):
                continue
            if not line.startswith((".", "'")):
                b.text(_tbl_line(line))
                continue
        if line.startswith((".", "'")):
            i = _request(line, lines, i, b, include, depth)
            if line[1:].strip().startswith("TS"):
                b.flush()
                b.nofill, table = True, "format"
            elif line[1:].strip().startswith("TE"):
                table = None
                b.flush()
                b.nofill = False
            continue
        if not line.strip():
            if not b.nofill:
                b.flush()
            else:
                b.lines.append(("", True))
            continue
        b.text(line)


def _skip_block(lines: Sequence[str], i: int, start_line: str) -> int:
    """Skip a conditional's ``\\{ ... \\}`` block starting on start_line."""
    if "\\{" not in start_line:
        return i
    depth = start_line.count("\\{") - start_line.count("\\}")
    while depth > 0 and i < len(lines):
        depth += lines[i].count("\\{") - lines[i].count("\\}")
        i += 1
    return i


def _request(line: str, lines: Sequence[str], i: int, b: _Builder,
             include: Optional[Callable[[str], Optional[str]]], depth: int) -> int:
    """Handle one control line; returns the index of the next line to read."""
    m = re.match(r"^[.']\s*([^\s\\]+)\s*(.*)$", line)
    if not m:
        return i
    name, rest = m.group(1), m.group(2)
    args = _split_args(rest)
    if name == "TH":
        b.title = strip_escapes(args[0]) if args else ""
        b.volume = strip_escapes(args[1]) if len(args) > 1 else ""
    elif name == "SH":
        if args:
            b.start_section(" ".join(args))
        else:
            b.flush()
            b.pending = "SH"
    elif name == "SS":
        b.flush()
        if args:
            b.text(" ".join(args))
            b.flush()
        else:
            b.pending = "SS"
    elif name in ("B", "I", "SM", "SB"):
        if args:
            b.text(" ".join(args))
    elif name in ("BR", "BI", "IB", "IR", "RB", "RI"):
        b.text("".join(args))
    elif name in ("PP", "P", "LP", "HP", "sp", "TP", "TQ", "bp", "PD"):
        if name != "PD":
            b.flush()
    elif name == "IP":
        b.flush()
        tag = strip_escapes(args[0]).strip() if args else ""
        if tag not in _IGNORED_TAGS:
            b.text(args[0])
    elif name in ("nf", "EX"):
        b.flush()
        b.nofill = True
    elif name in ("fi", "EE"):
        b.flush()
        b.nofill = False
    elif name in ("UE", "ME"):
        if args:  # trailing punctuation glued to the link text
            if b.lines:
                prev, nf = b.lines[-1]
                b.lines[-1] = (prev + strip_escapes("".join(args)), nf)
            else:
                b.text("".join(args))
    elif name == "SY":
        b.flush()
        if args:
            b.text(args[0])
    elif name == "OP":
        b.text("[" + " ".join(args) + "]")
    elif name == "YS":
        b.flush()
    elif name == "q":  # tzfile(5)'s quoting macro
        if args:
            b.text("\u201c" + args[0] + "\u201d" + "".join(args[1:]))
    elif name in ("de", "am", "ig"):
        end = ".." if name != "ig" or not args else "." + args[0]
        while i < len(lines) and lines[i].strip() != end:
            i += 1
        i += 1
    elif name in ("if", "ie", "el"):
        i = _skip_block(lines, i, line)
    elif name == "so" and args and include is not None and depth < 3:
        target = include(args[0])
        if target is not None:
            _parse_lines(target.splitlines(), b, include, depth + 1)
    # everything else (.RS .RE .in .ad .na .nh .hy .ft .ti .ta .ne .nr .ds .UR .MT ...)
    # only affects layout or is a link target: dropped
    return i


# ---------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------

_MAN_FILE_RE = re.compile(r"^(?P<name>.+)\.(?P<sect>[1-8][a-z]*)\.gz$")


def _section_dir(path: Path) -> int:
    return int(path.parent.name[3:]) if re.fullmatch(r"man[1-8]", path.parent.name) else 99


def _page_name(path: Path) -> str:
    m = _MAN_FILE_RE.match(path.name)
    if not m:
        raise ValueError(f"not a man page file name: {path.name}")
    return f"{m.group('name')}({m.group('sect')})"


def _dpkg_files(packages: Sequence[str], root: Path) -> Optional[list[Path]]:
    """Files the packages installed under root/man[1-8], from dpkg's lists (None if unknown)."""
    found: list[Path] = []
    any_list = False
    for pkg in packages:
        for lst in (DPKG_INFO / f"{pkg}.list", *DPKG_INFO.glob(f"{pkg}:*.list")):
            if not lst.is_file():
                continue
            any_list = True
            for entry in lst.read_text(encoding="utf-8", errors="replace").splitlines():
                p = Path(entry)
                if p.suffix == ".gz" and p.parent.parent == root and re.fullmatch(r"man[1-8]", p.parent.name):
                    found.append(p)
    return found if any_list else None


def manpage_files(root: Path | str = MAN_ROOT, packages: Optional[Sequence[str]] = DEFAULT_PACKAGES,
                  sections: Optional[Iterable[int | str]] = None) -> list[Path]:
    """Real (non-symlink) page files, sorted by (section, file name).

    Symlinks are aliases of another page (``creat.2`` -> ``open.2``) and are
    skipped so no text appears twice.  ``packages=None`` globs the directories.
    """
    root = Path(root)
    files = _dpkg_files(packages, root) if packages else None
    if files is None:
        files = list(root.glob("man[1-8]/*.gz"))
    wanted = None if sections is None else {int(str(s)[0]) for s in sections}
    out = [p for p in set(files)
           if p.is_file() and not p.is_symlink() and _MAN_FILE_RE.match(p.name)
           and (wanted is None or _section_dir(p) in wanted)]
    return sorted(out, key=lambda p: (_section_dir(p), p.name))


def _read_gz(path: Path) -> str:
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        return f.read()


def _is_alias(text: str) -> bool:
    """A page whose only content is ``.so other/page`` (an alias, like a symlink)."""
    content = [ln for ln in (_cut_comment(x).strip() for x in text.splitlines()) if ln and ln != "."]
    return bool(content) and all(ln.startswith((".so", "'so")) for ln in content)


def read_manpage(path: Path | str, root: Path | str = MAN_ROOT) -> Optional[ManPage]:
    """Parse one page file; None for ``.so`` aliases (their target is read on its own)."""
    path, root = Path(path), Path(root)
    text = _read_gz(path)
    if _is_alias(text):
        return None

    def include(target: str) -> Optional[str]:
        for cand in (root / target, root / (target + ".gz")):
            if cand.is_file():
                return _read_gz(cand) if cand.suffix == ".gz" else cand.read_text(errors="replace")
        return None

    _, _, sections = parse_roff(text, include)
    return ManPage(_page_name(path), path, sections)


# ---------------------------------------------------------------------------
# passages
# ---------------------------------------------------------------------------

def _slug(heading: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", heading.lower()).strip("-") or "section"


def _units(paragraph: str, max_words: int) -> list[str]:
    """Split a paragraph into sentences (prose) or lines (code), none over max_words."""
    parts = paragraph.split("\n") if "\n" in paragraph else re.split(r"(?<=[.!?])\s+(?=\S)", paragraph)
    out: list[str] = []
    for part in parts:
        words = part.split()
        if len(words) <= max_words:
            out.append(part)
        else:
            out.extend(" ".join(words[j:j + max_words]) for j in range(0, len(words), max_words))
    return [u for u in out if u.strip()]


def _chunk(paragraphs: Sequence[str], min_words: int, max_words: int) -> list[str]:
    """Pack paragraphs into chunks of about min_words..max_words words.

    Cuts prefer paragraph boundaries once a chunk has min_words; a paragraph
    longer than what is left is split between sentences; a short tail is
    merged back into the previous chunk.
    """
    chunks: list[list[str]] = []
    cur: list[str] = []
    n = 0
    for para in paragraphs:
        para_words = len(para.split())
        units = _units(para, max_words)
        sep = "\n" if "\n" in para else " "
        for k, unit in enumerate(units):
            w = len(unit.split())
            boundary_cut = k == 0 and n >= min_words and n + para_words > max_words
            if cur and (n + w > max_words or boundary_cut):
                chunks.append(cur)
                cur, n = [], 0
            cur.append(("\n" if k == 0 and cur else (sep if cur else "")) + unit)
            n += w
    if cur:
        chunks.append(cur)
    texts = ["".join(c).strip() for c in chunks]
    if len(texts) >= 2:
        tail, prev = len(texts[-1].split()), len(texts[-2].split())
        if tail < min_words // 2 and tail + prev <= max_words + min_words // 2:
            texts[-2:] = [texts[-2] + "\n" + texts[-1]]
    return [t for t in texts if t]


def split_passages(page: ManPage, min_words: int = 120, max_words: int = 200,
                   skip_sections: Sequence[str] = DEFAULT_SKIP_SECTIONS) -> list[Passage]:
    """Passages of one page: per .SH section, chunked to ~min_words..max_words words."""
    if not 0 < min_words <= max_words:
        raise ValueError(f"need 0 < min_words <= max_words, got {min_words}, {max_words}")
    out: list[Passage] = []
    seen: dict[str, int] = {}
    for heading, paragraphs in page.sections:
        if heading in skip_sections or not paragraphs:
            continue
        slug = _slug(heading)
        seen[slug] = seen.get(slug, 0) + 1
        if seen[slug] > 1:
            slug = f"{slug}~{seen[slug]}"
        for j, text in enumerate(_chunk(paragraphs, min_words, max_words)):
            out.append(Passage(f"{page.page}#{slug}.{j}", page.page, heading, text))
    return out


def load_manpages(max_pages: Optional[int] = None, sections: Optional[Iterable[int | str]] = None,
                  root: Path | str = MAN_ROOT, packages: Optional[Sequence[str]] = DEFAULT_PACKAGES,
                  min_words: int = 120, max_words: int = 200) -> list[Passage]:
    """Passages of the first ``max_pages`` real pages (sorted by section, name).

    Raises FileNotFoundError with the install command when no pages exist.
    """
    if max_pages is not None and max_pages < 1:
        raise ValueError(f"max_pages must be >= 1, got {max_pages}")
    files = manpage_files(root, packages, sections)
    if not files:
        raise FileNotFoundError(
            f"no man pages found under {root} for packages {packages}: "
            "apt-get install -y manpages manpages-dev (and make sure dpkg does not exclude /usr/share/man)")
    passages: list[Passage] = []
    pages = 0
    for path in files:
        page = read_manpage(path, root)
        if page is None:
            continue
        got = split_passages(page, min_words, max_words)
        if not got:
            continue
        passages.extend(got)
        pages += 1
        if max_pages is not None and pages >= max_pages:
            break
    return passages


# ---------------------------------------------------------------------------
# queries
# ---------------------------------------------------------------------------

_NAME_SPLIT = re.compile(r"\s+[-\u2013\u2014]\s+")


def known_item_queries(passages: Sequence[Passage]) -> list[KnownItemQuery]:
    """One query per page: its NAME description; relevant = its non-NAME passages.

    Pages without a NAME description, or with nothing but NAME, get no query.
    Order follows the first appearance of each page in ``passages``.
    """
    by_page: dict[str, list[Passage]] = {}
    for p in passages:
        by_page.setdefault(p.page, []).append(p)
    out: list[KnownItemQuery] = []
    for page, group in by_page.items():
        name_text = " ".join(p.text for p in group if p.section == "NAME")
        parts = _NAME_SPLIT.split(re.sub(r"\s+", " ", name_text), maxsplit=1)
        relevant = tuple(p.pid for p in group if p.section != "NAME")
        if len(parts) == 2 and parts[1].strip() and relevant:
            out.append(KnownItemQuery(page, parts[1].strip(), relevant))
    return out


def qrels(queries: Sequence[KnownItemQuery]) -> dict[str, dict[str, int]]:
    """TREC-style dict-of-dict relevance judgments (what ranx / ir_measures read)."""
    return {q.qid: {pid: 1 for pid in q.relevant} for q in queries}


def corpus_fingerprint(passages: Sequence[Passage]) -> str:
    """Stable hash of the passages (ids and text): a cache key for their embeddings."""
    h = hashlib.sha256()
    for p in passages:
        for part in (p.pid, p.page, p.section, p.text):
            h.update(part.encode("utf-8"))
            h.update(b"\0")
    return h.hexdigest()[:16]
