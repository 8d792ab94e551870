"""Every algorithm reference cited in the code resolves to a heading of docs/algorithm.md.

Comments, docstrings and other strings of every ``.py`` file under xtra/, tests/ and
benchmarks/ cite the algorithm's reference by id: spec sections (``A6.4``, ``B10.3``), departures
from the reference code (``D-EZ-2``, ``D-XT-4``), our decisions (``decision 3``), the reference
facts (``fact 9``), the parts (``Part A``) and the paper's equations (``Eq. 1``). Each cited id
must be the id of a heading of docs/algorithm.md (``### A6.4 Targets``): a subsection needs its
own heading, its parent's is not enough.

Only comment and string tokens are read (never code, so hex literals and identifiers cannot
match). Section ids are read where they are written as citations:

* after ``spec`` or ``see`` (``spec A3, A3.6, B2``; ``Spec A5 step 3``);
* inside parentheses (``(A3.1 / A3.2)``, ``(EZ's 400-step blocks, A2)``);
* as a label or a possessive (``A3.5: projection``, ``A3.1 step 8``, ``A4's formula``);
* anywhere, when the id has the shape of one of the reference's sections (A1..A10, B0..B10 and
  their subsections: ``as A1.6 describes``), so ``A57`` or ``B97`` never count without context.

Ranges (``A6.2-A6.4``, ``B10.3-5``, ``decisions 2-4``, ``Eq. 1-2``) stand for every id in them.
The other kinds (D-EZ-n, D-XT-n, decision n, fact n, Part X, Eq. n) count wherever they appear.
"""

from __future__ import annotations

import io
import re
import tokenize
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "algorithm.md"
SCANNED = ("xtra", "tests", "benchmarks")

# --------------------------------------------------------------------------- the matcher

_SEC = r"[AB]\d{1,2}(?:\.\d{1,2})?"  # A6, A6.4, B10.3 (no A100: hardware names are not ids)
_SEC_ONE = rf"(?<![\w.-]){_SEC}(?![\w]|\.\d)"
_SEC_RANGE = rf"{_SEC_ONE}(?:\s*[-–]\s*(?:{_SEC}|\d{{1,2}})(?![\w]|\.\d))?"
_SEC_LIST = rf"{_SEC_RANGE}(?:\s*(?:,|/|\band\b|\bor\b)\s*{_SEC_RANGE})*"
_NUMS = r"\d+(?:\s*(?:[-–]|,|/|\band\b)\s*\d+)*"

_AFTER_KEYWORD = re.compile(rf"\b(?:[Ss]pec|[Ss]ee)\s+({_SEC_LIST})")
_PARENS = re.compile(r"\(([^()]*)\)")
_LABEL = re.compile(rf"({_SEC_ONE})(?=:\s|'s\b|\s+steps?\s+\d)")
_BARE = re.compile(r"(?<![\w.-])([AB](?:10|\d)(?:\.\d{1,2})?)(?![\w]|\.\d)")
_SEC_IN_LIST = re.compile(rf"({_SEC})(?:\s*[-–]\s*({_SEC}|\d{{1,2}}))?(?![\w]|\.\d)")
_DEPARTURE = re.compile(r"\bD-(EZ|XT)-(\d+)\b")
_DECISION = re.compile(rf"\b[Dd]ecisions?\s+({_NUMS})")
_FACT = re.compile(rf"\b[Ff]acts?\s+({_NUMS})")
_EQUATION = re.compile(rf"\bEqs?\.\s*({_NUMS})")
_PART = re.compile(r"\bPart ([A-F])\b")


def _numbers(text: str) -> list[int]:
    """``"2-4, 7"`` -> [2, 3, 4, 7]."""
    out: list[int] = []
    for chunk in re.split(r"\s*(?:,|/|\band\b)\s*", text.strip()):
        ends = [int(x) for x in re.split(r"\s*[-–]\s*", chunk)]
        out.extend(range(ends[0], ends[-1] + 1) if ends[-1] >= ends[0] else ends)
    return out


def _section_range(first: str, last: str | None) -> list[str]:
    """``("A6.2", "A6.4")`` -> A6.2, A6.3, A6.4; ``("B10.3", "5")`` -> B10.3..B10.5;
    ``("B2", "B10")`` -> B2..B10. A range across parents gives its two ends only."""
    if last is None:
        return [first]
    letter, major, minor = re.fullmatch(r"([AB])(\d+)(?:\.(\d+))?", first).groups()
    if last.isdigit():
        last = f"{letter}{major}.{last}" if minor is not None else f"{letter}{last}"
    l_letter, l_major, l_minor = re.fullmatch(r"([AB])(\d+)(?:\.(\d+))?", last).groups()
    if l_letter == letter and minor is None and l_minor is None and int(l_major) >= int(major):
        return [f"{letter}{m}" for m in range(int(major), int(l_major) + 1)]
    if l_letter == letter and l_major == major and minor is not None and l_minor is not None:
        if int(l_minor) >= int(minor):
            return [f"{letter}{major}.{m}" for m in range(int(minor), int(l_minor) + 1)]
    return [first, last]


def _sections_in(text: str) -> list[tuple[int, str]]:
    return [
        (m.start(), sid)
        for m in _SEC_IN_LIST.finditer(text)
        for sid in _section_range(m.group(1), m.group(2))
    ]


def find_citations(text: str) -> list[tuple[int, str]]:
    """The ids cited in one comment or string: ``[(offset in text, id)]``, sorted, one per
    place (an id found by two rules at one offset counts once)."""
    found: set[tuple[int, str]] = set()
    for m in _AFTER_KEYWORD.finditer(text):
        found.update((m.start(1) + off, sid) for off, sid in _sections_in(m.group(1)))
    for m in _PARENS.finditer(text):
        inner = m.group(1)
        for s in re.finditer(_SEC_RANGE, inner):
            found.update(
                (m.start(1) + s.start() + off, sid) for off, sid in _sections_in(s.group())
            )
    for pattern in (_LABEL, _BARE):
        found.update((m.start(1), m.group(1)) for m in pattern.finditer(text))
    for m in _DEPARTURE.finditer(text):
        found.add((m.start(), f"D-{m.group(1)}-{int(m.group(2))}"))
    for pattern, name in ((_DECISION, "decision"), (_FACT, "fact"), (_EQUATION, "Eq.")):
        for m in pattern.finditer(text):
            found.update((m.start(), f"{name} {n}") for n in _numbers(m.group(1)))
    for m in _PART.finditer(text):
        found.add((m.start(), f"Part {m.group(1)}"))
    return sorted(found)


# --------------------------------------------------------------------------- the document

_HEADING = re.compile(
    r"^#{1,6}\s+(?:(Part [A-F])|([AB]\d+(?:\.\d+)?)|(D-(?:EZ|XT)-\d+)"
    r"|Decision (\d+)|Fact (\d+)|Eq\. (\d+))(?![\w.]|\.\d)"
)


def heading_ids(markdown: str) -> set[str]:
    """The ids that headings of ``markdown`` define (``### A6.4 Targets`` -> ``A6.4``)."""
    ids = set()
    for line in markdown.splitlines():
        m = _HEADING.match(line)
        if not m:
            continue
        part, sec, dep, decision, fact, eq = m.groups()
        ids.add(
            part
            or sec
            or dep
            or (decision and f"decision {int(decision)}")
            or (fact and f"fact {int(fact)}")
            or f"Eq. {int(eq)}"
        )
    return ids


# --------------------------------------------------------------------------- the source


@dataclass(frozen=True)
class Citation:
    file: str
    line: int
    cid: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.cid}"


_TEXT_TOKENS = {tokenize.COMMENT, tokenize.STRING} | (
    {tokenize.FSTRING_MIDDLE} if hasattr(tokenize, "FSTRING_MIDDLE") else set()
)


def citations_in_source(source: str, file: str) -> list[Citation]:
    out = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in _TEXT_TOKENS:
            continue
        for offset, cid in find_citations(tok.string):
            out.append(Citation(file, tok.start[0] + tok.string.count("\n", 0, offset), cid))
    return out


def scanned_files() -> list[Path]:
    return sorted(
        p for d in SCANNED for p in (ROOT / d).rglob("*.py") if "__pycache__" not in p.parts
    )


# --------------------------------------------------------------------------- the tests


def test_every_cited_id_has_a_heading():
    assert DOC.is_file(), f"{DOC.relative_to(ROOT)} is missing"
    defined = heading_ids(DOC.read_text(encoding="utf-8"))
    cited = [
        c
        for path in scanned_files()
        for c in citations_in_source(
            path.read_text(encoding="utf-8"), path.relative_to(ROOT).as_posix()
        )
    ]
    assert len(cited) > 100, "the scan found almost no citations: is the matcher broken?"
    unresolved = [str(c) for c in cited if c.cid not in defined]
    if unresolved:
        pytest.fail(
            f"{len(unresolved)} citation(s) without a heading in docs/algorithm.md:\n"
            + "\n".join(unresolved),
            pytrace=False,
        )


def test_headings_are_unique():
    keys = [
        cid for line in DOC.read_text(encoding="utf-8").splitlines() for cid in heading_ids(line)
    ]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    assert not duplicates, f"ids with more than one heading in docs/algorithm.md: {duplicates}"


# Ids that exist nowhere, built at run time so that this file's own text never cites them.
UNKNOWN_SECTION = "A" + "99"
UNKNOWN_DEPARTURE = "D-EZ-" + "99"
UNKNOWN_SUBSECTION = "A7." + "9"

DOC_SAMPLE = """\
## Part A EfficientZero
### A6 Self-play, replay and targets
### A6.4 Targets
#### A7.1 Augmentation
### D-EZ-2 Parent-Q leak
### Decision 3 Combining losses
### Fact 9 Acting temperature
### Eq. 1 The finetuning objective
"""


@pytest.mark.parametrize(
    ("text", "ids"),
    [
        ("Targets of one batch (spec A6.4).", ["A6.4"]),
        ("(A6)", ["A6"]),
        ("# A7.1 step 2: two augmentations", ["A7.1"]),
        ("as A6.4 describes", ["A6.4"]),
        ("see D-EZ-2 and decision 3; fact 9 (Part A, Eq. 1)", None),
    ],
)
def test_matcher_resolves(text, ids):
    defined = heading_ids(DOC_SAMPLE)
    cited = [cid for _, cid in find_citations(text)]
    if ids is not None:
        assert cited == ids
    assert cited and all(cid in defined for cid in cited), (cited, defined)


@pytest.mark.parametrize(
    ("text", "missing"),
    [
        (f"see spec {UNKNOWN_SECTION} for details", [UNKNOWN_SECTION]),
        (f"the leak ({UNKNOWN_DEPARTURE})", [UNKNOWN_DEPARTURE]),
        (f"# {UNKNOWN_SECTION}: a label", [UNKNOWN_SECTION]),
        (f"as {UNKNOWN_SUBSECTION} describes", [UNKNOWN_SUBSECTION]),
        ("spec A6.5", ["A6.5"]),  # only A6 and A6.4 exist: a parent does not cover its child
        ("(spec A6.2-A6.4)", ["A6.2", "A6.3"]),
        ("decisions 2-3", ["decision 2"]),
        ("App. B Eq. 4", ["Eq. 4"]),
    ],
)
def test_matcher_rejects(text, missing):
    defined = heading_ids(DOC_SAMPLE)
    cited = [cid for _, cid in find_citations(text)]
    assert sorted(c for c in cited if c not in defined) == sorted(missing)


def test_matcher_ignores_what_is_not_a_citation():
    for text in (
        "0x9E3779B97F4A7C15 and 0x94D049BB133111EB",  # hex digests
        "B97 B133111 A57 games",  # bare tokens outside any citation context
        "trained on an A100 (A100 GPU, 80 GB)",  # hardware names
        "obs [B, S+K, C, H, W] (B, K)",  # shape letters
        "in fact the batch",
    ):
        assert find_citations(text) == [], text


def test_ranges_and_lists_expand():
    cited = [cid for _, cid in find_citations("(spec B10.3-5; A3.3-A3.4, B5-B8; Eq. 1-2)")]
    assert cited == [
        "B10.3",
        "B10.4",
        "B10.5",
        "A3.3",
        "A3.4",
        "B5",
        "B6",
        "B7",
        "B8",
        "Eq. 1",
        "Eq. 2",
    ]
    assert [cid for _, cid in find_citations("spec A3, A3.6, B2 and B3")] == [
        "A3",
        "A3.6",
        "B2",
        "B3",
    ]


def test_line_numbers_point_at_the_citation():
    source = f'x = 1\n"""Doc.\n\nSee spec A6.4.\n"""\n# ({UNKNOWN_DEPARTURE})\n'
    got = [str(c) for c in citations_in_source(source, "m.py")]
    assert got == ["m.py:4: A6.4", f"m.py:6: {UNKNOWN_DEPARTURE}"]
