"""All the code a response contains, located in it: what the reward scans.

Why not just :func:`vul2safe.extract.extract_code`: extraction picks ONE block (the answer
that evaluation runs), so a clean first block followed by a vulnerable one would be scored
on the clean block alone. The reward instead scans every piece of code in the response:

* **the answer** -- extract_code's code (fenced block, unfenced code, or a completion
  continuation), located by :func:`~srcode.rewards.spans.locate_code`;
* **every other fenced block** whose body is code: a block tagged with a known language is
  scanned as that language (a ``bash`` block by the scanners that cover shell; if none does,
  the answer counts as not fully scanned and earns no clean bonus) and, when it also reads
  as the task's language, as the task's language too (a wrong tag hides nothing); an
  untagged or unknown-tagged block (``text``, ``output``, ``diff``, ``pycon``) is scanned as
  the task's language when some *reading* of it parses as that language, and skipped as
  prose when none does;
* **code written outside the fences**: each run of non-blank lines (split further at prose
  lines when the whole run does not read as code) that some reading parses as the task's
  language and that holds a statement, so code pasted into the explanation is scanned too.

A *reading* of some lines is the lines as written, or with what commonly wraps code in
chat output taken off: HTML tags at a line's ends (``<pre><code>``; also with entities
such as ``&quot;`` unescaped, columns then approximate within a line), a line marker shared
by every line (``>`` quote, ``+``/``-``/`` `` diff -- removed ``-`` lines are blanked --,
``>>>``/``...`` doctest and ``$`` console prompts, whose output lines are blanked), a
``Label:`` before a one-line snippet, and the lines' common indentation (an indented
Markdown code block, a list item). The first reading that parses wins; each line keeps
where it starts in the response (:attr:`CodeSegment.starts`), so findings land on the
tokens that wrote them. One general mechanism, not one rule per wrapper: any wrapper that
leaves code parseable once stripped is scanned.

Fences are recognised by extract's own fence-line rule, so the two never disagree about
where a block starts and ends.
"""

from __future__ import annotations

import ast
import html
import io
import re
import tokenize
from dataclasses import dataclass, field

from srcode.rewards.spans import Span, _Lines, _located_span, locate_code
from vul2safe.extract import (
    _LANGUAGE_ALIASES,
    Extraction,
    _check,
    _dedent,
    _fence,
    _has_substance,
    _is_prose_line,
    canonical_language,
)
from vul2safe.schema import Finding, Severity

__all__ = ["CodeSegment", "code_segments", "defuse_suppressions", "inert_spans"]


@dataclass
class CodeSegment:
    """One piece of code in a response: its text as scanned, where it sits, what was found.

    ``offset`` is the response index of its first character (None: not found in the
    response), ``indent`` the blanks removed from its later lines (a fence inside a list),
    ``end`` the response index just past its last line. ``primary`` marks the answer.
    ``starts`` (a salvaged reading) gives the response index of each code line's first
    character instead of ``offset``/``indent``. ``optional`` marks a second reading of a
    block already scanned as its tagged language: its findings count, but a failed scan
    of it does not withhold the clean bonus. ``failed``: scanners cover its language but
    every one of them failed on it (not the same as no scanner for the language).
    """

    code: str
    language: str
    offset: int | None
    indent: int
    end: int
    primary: bool = False
    findings: list[Finding] = field(default_factory=list)
    scanned: bool = False
    starts: list[int] | None = None
    optional: bool = False
    failed: bool = False


Block = tuple[str, list[int], int, int, int]  # tag, line indices, offset, indent, end


def _fenced_blocks(response: str, lines: _Lines) -> tuple[list[Block], list[list[int]]]:
    """``(tag, body line indices, offset, indent, end)`` of each non-blank fenced block of
    ``response``, and the line indices of each run of non-blank lines outside the fences."""
    texts = [response[s:e] for s, e in zip(lines.starts, lines.ends, strict=True)]
    blocks: list[Block] = []
    outside: list[list[int]] = []
    run: list[int] = []

    def close_run() -> None:
        if run:
            outside.append(list(run))
            run.clear()

    i = 0
    while i < len(texts):
        opening = _fence(texts[i])
        if opening is None:
            if texts[i].strip():
                run.append(i)
            else:
                close_run()
            i += 1
            continue
        close_run()
        fence, indent = opening["fence"], len(opening["indent"])
        j = i + 1
        while j < len(texts):
            close = _fence(texts[j])
            if (
                close is not None
                and close["fence"][0] == fence[0]
                and len(close["fence"]) >= len(fence)
                and not close["info"].strip()
            ):
                break
            j += 1
        body = [k for k in range(i + 1, j) if texts[k].strip()]
        if body:
            first, last = body[0], body[-1]
            removed = len(texts[first]) - len(_dedent(texts[first], indent))
            info = opening["info"].strip().lstrip("{").lstrip(".")
            tag = info.split()[0].split(":")[0].rstrip("}").lower() if info else ""
            span = list(range(first, last + 1))
            blocks.append((tag, span, lines.starts[first] + removed, indent, lines.ends[last]))
        i = j + 1
    close_run()
    return blocks, outside


# --------------------------------------------------------------------------- readings

Reading = list[tuple[int, str]]  # (response index of the line's first kept char, text)

_TAG = r"</?[A-Za-z][\w-]*(?:\s[^<>\n]*)?/?>"
_LEAD_TAGS = re.compile(rf"[ \t]*(?:{_TAG}[ \t]*)+")
_TRAIL_TAGS = re.compile(rf"(?:[ \t]*{_TAG})+[ \t]*$")
_LABEL = re.compile(r"[ \t]*[A-Za-z][\w ,'()/-]{0,60}?:[ \t]+(?=\S)")
#: (marker, blank the lines without it): prompts' output lines are blanked, quotes refused
_MARKERS = (
    (re.compile(r"(?:>>>|\.\.\.)(?: |$)"), True),
    (re.compile(r"\$ "), True),
    (re.compile(r"> ?"), False),
)
_DIFF_DROP = re.compile(r"-|@@|\+\+\+ |\\ No newline")


def _strip_tags(reading: Reading) -> Reading:
    out = []
    for start, text in reading:
        lead = _LEAD_TAGS.match(text)
        cut = lead.end() if lead else 0
        out.append((start + cut, _TRAIL_TAGS.sub("", text[cut:])))
    return out


def _strip_marker(reading: Reading) -> list[Reading]:
    """The reading with a line marker shared by its lines taken off (zero or one result)."""
    nonblank = [text for _, text in reading if text.strip()]
    out: list[Reading] = []
    for marker, blank_others in _MARKERS:
        hits = [marker.match(text) for text in nonblank]
        if not any(hits) or (not blank_others and not all(hits)):
            continue
        stripped = []
        for start, text in reading:
            m = marker.match(text)
            stripped.append((start + m.end(), text[m.end() :]) if m else (start, ""))
        out.append(stripped)
    if any(text.startswith("+") for text in nonblank) and all(
        text[0] in "+- @\\" for text in nonblank
    ):
        out.append(
            [
                (start, "") if not text or _DIFF_DROP.match(text) else (start + 1, text[1:])
                for start, text in reading
            ]
        )
    return out


def _finish(reading: Reading, language: str, label: bool) -> tuple[str, list[int]] | None:
    """Trim prose/blank lines at the ends, dedent, and keep the reading if it is code."""
    while reading and (not reading[0][1].strip() or _is_prose_line(reading[0][1], language)):
        reading = reading[1:]
    while reading and (not reading[-1][1].strip() or _is_prose_line(reading[-1][1], language)):
        reading = reading[:-1]
    if not reading:
        return None
    if label:  # "One-liner: os.system(cmd)": the code after a prose label
        start, text = reading[0]
        m = _LABEL.match(text)
        if m is None:
            return None
        reading = [(start + m.end(), text[m.end() :]), *reading[1:]]
    blanks = [text[: len(text) - len(text.lstrip(" \t"))] for _, text in reading if text.strip()]
    cut = 0  # the common leading blanks (characters, not a path)
    while all(len(b) > cut and b[cut] == blanks[0][cut] for b in blanks):
        cut += 1
    starts = [start + cut if text.strip() else start for start, text in reading]
    code = "\n".join(text[cut:] if text.strip() else "" for _, text in reading) + "\n"
    if _check(code, language) is not None or not _has_substance(code, language):
        return None
    return code, starts


def _read(reading: Reading, language: str) -> tuple[str, list[int]] | None:
    """The first reading of ``reading``'s lines that parses as ``language`` (module doc)."""
    bases = [reading, _strip_tags(reading)]
    if any("&" in text for _, text in reading):  # code in HTML is escaped: &quot; &lt; &amp;
        bases.append([(start, html.unescape(text)) for start, text in bases[1]])
    candidates = [r for base in bases for r in (base, *_strip_marker(base))]
    for label in (False, True):
        for candidate in candidates:
            found = _finish(candidate, language, label)
            if found is not None:
                return found
    return None


def _reading_of(response: str, lines: _Lines, indices: list[int]) -> Reading:
    return [(lines.starts[k], response[lines.starts[k] : lines.ends[k]]) for k in indices]


def _outside_code(
    response: str, lines: _Lines, run: list[int], language: str
) -> list[tuple[str, list[int]]]:
    """The code in a run of lines (outside the fences, or a fenced body that is not code as
    written): the whole run if some reading parses, else each piece between its prose
    lines that some reading parses."""
    found = _read(_reading_of(response, lines, run), language)
    if found is not None:
        return [found]
    pieces: list[list[int]] = [[]]
    for k in run:
        if _is_prose_line(response[lines.starts[k] : lines.ends[k]], language):
            pieces.append([])
        else:
            pieces[-1].append(k)
    if len(pieces) == 1:
        return []
    parts = (_read(_reading_of(response, lines, p), language) for p in pieces if p)
    return [part for part in parts if part is not None]


def _acts_as(code: str, language: str) -> bool:
    """Whether ``code`` (tagged as another language) also reads as ``language`` code that
    does something -- a call, an import, a definition, an assignment -- not a shell line
    such as ``rm -rf /tmp/x`` that happens to parse as a Python expression."""
    if _check(code, language) is not None:
        return False
    if language != "python":
        return _has_substance(code, language)
    tree = ast.parse(code)
    return any(
        isinstance(node, ast.Call)
        or (isinstance(node, ast.stmt) and not isinstance(node, ast.Expr))
        for node in ast.walk(tree)
    )


def _salvaged(code: str, starts: list[int], language: str, lines: _Lines) -> CodeSegment:
    end = lines.ends[lines.index_of(starts[-1])]
    return CodeSegment(code, language, starts[0], 0, end, starts=starts)


def code_segments(response: str, extraction: Extraction, language: str) -> list[CodeSegment]:
    """Every piece of code in ``response`` to scan, the answer first (see the module doc).

    ``extraction`` is extract_code's result for ``response`` and ``language`` the task's
    canonical language. A block that is the answer is not listed twice.
    """
    segments: list[CodeSegment] = []
    lines = _Lines.of(response)
    if extraction.code.strip():
        located = locate_code(response, extraction.code)
        offset, indent = located if located else (None, 0)
        end = offset + len(extraction.code.rstrip("\n")) if offset is not None else 0
        if offset is not None:  # the last line's end, dedented lines included
            end = lines.ends[lines.index_of(offset) + extraction.code.rstrip("\n").count("\n")]
        segments.append(CodeSegment(extraction.code, language, offset, indent, end, True))
    fenced, outside = _fenced_blocks(response, lines)

    def overlaps(start: int, end: int) -> bool:
        return any(
            s.offset is not None and start < max(s.end, s.offset + 1) and s.offset < end
            for s in segments
        )

    for tag, body, offset, indent, end in fenced:
        if overlaps(offset, end):
            continue
        code = "\n".join(_dedent(response[lines.starts[k] : lines.ends[k]], indent) for k in body)
        code += "\n"
        known = canonical_language(tag) if tag else ""
        parses = _check(code, language) is None
        if known in _LANGUAGE_ALIASES and (known != language or parses):
            segments.append(CodeSegment(code, known, offset, indent, end))
            if known != language and _acts_as(code, language):
                segments.append(CodeSegment(code, language, offset, indent, end, optional=True))
        elif parses:
            segments.append(CodeSegment(code, language, offset, indent, end))
        else:  # prose, program output or a REPL session in a fence: the readings that are code
            readings = _outside_code(response, lines, body, language)
            segments.extend(_salvaged(*found, language, lines) for found in readings)
            if not readings and known == language:  # broken code tagged as ours: scan it
                segments.append(CodeSegment(code, known, offset, indent, end))  # (it fails)
    for run in outside:
        if overlaps(lines.starts[run[0]], lines.ends[run[-1]]):
            continue
        for code, starts in _outside_code(response, lines, run, language):
            segments.append(_salvaged(code, starts, language, lines))
    return segments


# ------------------------------------------------------------------- comments, strings

_C_INERT = re.compile(r'//[^\n]*|/\*.*?\*/|"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'', re.DOTALL)
_C_FAMILY = frozenset({"c", "cpp", "java", "javascript", "typescript", "csharp", "go", "rust"})


def _inert_positions(code: str, language: str) -> list[tuple[int, int, int, int]]:
    """``(line, col, end_line, end_col)`` (1-based, end exclusive) of each comment and
    string literal of ``code``: text that does nothing when the code runs."""
    if language == "python":
        try:
            tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
        except (tokenize.TokenError, SyntaxError):
            return []
        return [
            (t.start[0], t.start[1] + 1, t.end[0], t.end[1] + 1)
            for t in tokens
            if t.type in (tokenize.COMMENT, tokenize.STRING)
        ]
    if language not in _C_FAMILY:
        return []

    def where(index: int) -> tuple[int, int]:
        return code.count("\n", 0, index) + 1, index - (code.rfind("\n", 0, index) + 1) + 1

    return [(*where(m.start()), *where(m.end())) for m in _C_INERT.finditer(code)]


def inert_spans(response: str, segments: list[CodeSegment]) -> list[Span]:
    """Response spans of the comments and string literals of every located segment.

    Why: a copy of the reference fix inside a comment or a string literal reproduces
    nothing the program does, so it must not earn the secure-span bonus.
    """
    lines = _Lines.of(response)
    spans: list[Span] = []
    for segment in segments:
        if segment.offset is None:
            continue
        for line, col, end_line, end_col in _inert_positions(segment.code, segment.language):
            region = Finding("", "", Severity.LOW, "", "", "", line, end_line, col, end_col)
            span = _located_span(
                response, lines, region, segment.offset, segment.indent, segment.starts
            )
            if span is not None:
                spans.append(span)
    return spans


# ------------------------------------------------------------------------ suppressions

#: directives that change how a tool reads the code: scanners' inline "do not report
#: this" (Bandit ``# nosec``, Semgrep ``nosemgrep``, flawfinder/ITS4/RATS ``ignore``,
#: cppcheck ``cppcheck-suppress``, CodeQL/LGTM ``lgtm``, clang-tidy ``NOLINT``) and a
#: Python source-encoding declaration (``# coding: ascii`` makes Bandit fail on the file)
_SUPPRESSION = re.compile(
    r"\b(?:nosec|nosemgrep|(?:flawfinder|its4|rats)\s*:\s*ignore|cppcheck-suppress\w*"
    r"|lgtm|nolint\w*|coding(?=[:=]))",
    re.IGNORECASE,
)


def defuse_suppressions(code: str) -> str:
    """``code`` with every directive of :data:`_SUPPRESSION` blotted out, same length.

    Why: the scanned code is the policy's own output. Honouring ``# nosec`` would let it
    silence any finding with a comment, the cheapest hack there is, and an encoding
    declaration makes the scanner read other text than the one we parsed (or fail). Each
    character of a directive becomes ``_`` so every line and column, hence every
    finding's span, is unchanged.
    """
    return _SUPPRESSION.sub(lambda m: "_" * len(m.group()), code)
