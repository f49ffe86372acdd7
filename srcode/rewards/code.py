"""All the code a response contains, located in it: what the reward scans.

Why not just :func:`vul2safe.extract.extract_code`: extraction picks ONE block (the answer
that evaluation runs), so a clean first block followed by a vulnerable one would be scored
on the clean block alone. The reward instead scans every piece of code in the response:

* **the answer** -- extract_code's code (fenced block, unfenced code, or a completion
  continuation), located by :func:`~srcode.rewards.spans.locate_code`;
* **every other fenced block** whose body is code: a block tagged with a known language is
  scanned as that language (a ``bash`` block by the scanners that cover shell; if none does,
  the answer counts as not fully scanned and earns no clean bonus); an untagged or
  unknown-tagged block (``text``, ``output``) is scanned as the task's language when it
  parses as that language, and skipped as prose when it does not;
* **code written outside the fences**: each run of consecutive non-prose lines (extract's
  prose heuristic) that parses as the task's language and holds a statement, so code pasted
  into the explanation is scanned too.

Fences are recognised by extract's own fence-line rule, so the two never disagree about
where a block starts and ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from srcode.rewards.spans import _dedent, _Lines, locate_code
from vul2safe.extract import (
    _LANGUAGE_ALIASES,
    Extraction,
    _check,
    _fence,
    _has_substance,
    _is_prose_line,
    canonical_language,
)
from vul2safe.schema import Finding

__all__ = ["CodeSegment", "code_segments"]


@dataclass
class CodeSegment:
    """One piece of code in a response: its text as scanned, where it sits, what was found.

    ``offset`` is the response index of its first character (None: not found in the
    response), ``indent`` the blanks removed from its later lines (a fence inside a list),
    ``end`` the response index just past its last line. ``primary`` marks the answer.
    """

    code: str
    language: str
    offset: int | None
    indent: int
    end: int
    primary: bool = False
    findings: list[Finding] = field(default_factory=list)
    scanned: bool = False


Block = tuple[str, str, int, int, int]  # tag, code, offset, indent, end


def _fenced_blocks(response: str) -> tuple[list[Block], list[Block]]:
    """``(tag, code, offset, indent, end)`` of each non-blank fenced block of ``response``,
    and of each run of non-blank lines outside the fences (tag ``""``)."""
    lines = _Lines.of(response)
    texts = [response[s:e] for s, e in zip(lines.starts, lines.ends, strict=True)]
    blocks: list[Block] = []
    outside: list[Block] = []
    run: list[int] = []

    def close_run() -> None:
        if run:
            code = "\n".join(texts[k] for k in run) + "\n"
            outside.append(("", code, lines.starts[run[0]], 0, lines.ends[run[-1]]))
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
            code = "\n".join(_dedent(texts[k], indent) for k in range(first, last + 1)) + "\n"
            removed = len(texts[first]) - len(_dedent(texts[first], indent))
            info = opening["info"].strip().lstrip("{").lstrip(".")
            tag = info.split()[0].split(":")[0].rstrip("}").lower() if info else ""
            blocks.append((tag, code, lines.starts[first] + removed, indent, lines.ends[last]))
        i = j + 1
    close_run()
    return blocks, outside


def _code_lines(code: str, language: str) -> str | None:
    """The code lines of an unfenced run (prose lines at its ends dropped), or None."""
    kept = code.split("\n")[:-1]
    while kept and _is_prose_line(kept[0], language):
        kept.pop(0)
    while kept and _is_prose_line(kept[-1], language):
        kept.pop()
    text = "\n".join(kept) + "\n"
    if not kept or _check(text, language) is not None or not _has_substance(text, language):
        return None
    return text


def code_segments(response: str, extraction: Extraction, language: str) -> list[CodeSegment]:
    """Every piece of code in ``response`` to scan, the answer first (see the module doc).

    ``extraction`` is extract_code's result for ``response`` and ``language`` the task's
    canonical language. A block that is the answer is not listed twice.
    """
    segments: list[CodeSegment] = []
    if extraction.code.strip():
        located = locate_code(response, extraction.code)
        offset, indent = located if located else (None, 0)
        end = offset + len(extraction.code.rstrip("\n")) if offset is not None else 0
        if offset is not None:  # the last line's end, dedented lines included
            lines = _Lines.of(response)
            end = lines.ends[lines.index_of(offset) + extraction.code.rstrip("\n").count("\n")]
        segments.append(CodeSegment(extraction.code, language, offset, indent, end, True))
    fenced, outside = _fenced_blocks(response)

    def overlaps(start: int, end: int) -> bool:
        return any(
            s.offset is not None and start < max(s.end, s.offset + 1) and s.offset < end
            for s in segments
        )

    for tag, code, offset, indent, end in fenced:
        if overlaps(offset, end):
            continue
        known = canonical_language(tag) if tag else ""
        if known in _LANGUAGE_ALIASES:
            block_language = known
        elif _check(code, language) is None:
            block_language = language  # untagged or e.g. ```text: code if it parses as code
        else:
            continue  # prose or program output in a fence
        segments.append(CodeSegment(code, block_language, offset, indent, end))
    for _, run, offset, _, end in outside:
        code = _code_lines(run, language)
        if code is None or overlaps(offset, end):
            continue
        located = locate_code(response[offset:end], code)
        if located is not None:
            start = offset + located[0]
            segments.append(CodeSegment(code, language, start, 0, start + len(code) - 1))
    return segments
