"""Pull the program out of a model's raw output, and say what kind of output it was.

Why one fixed rule: the numbers we report (pass@k, vulnerability rates) depend on which
text we hand to the tests and scanners. A rule that "tries two ways and keeps the better"
leaks test feedback into extraction and makes runs incomparable, so every output goes
through exactly one deterministic path, and the path taken is recorded in
``Extraction.rule``.

The rule
--------
Line endings are normalised to ``\\n`` first (output and prompt alike).

0. Empty or whitespace-only output -> ``no_code`` (rule ``empty``).
1. **Chat mode, output has fences** (a line starting with 3+ backticks or tildes, optionally
   indented; a block closes at a line of the same fence character, at least as long, with
   nothing after it). Empty blocks are ignored (all empty -> ``no_code``, rule
   ``fenced:empty``, or ``truncated`` when length cut right after an opening fence).
   Exactly ONE block is taken, never several:
   the first block whose tag is an alias of ``language`` (``fenced:first-matching-language``),
   else the first untagged block (``fenced:first-untagged``), else the first block
   (``fenced:first-block``). Later blocks are ignored even when they add functions: models
   use them for usage examples or "before/after" copies, and joining them breaks more
   programs than it fixes. If the chosen block never closes, the rule is ``unclosed-fence``:
   with ``finish_reason == "length"`` the status is ``truncated``, otherwise it is checked
   like any other code.
2. **Chat mode, no fences**: leading and trailing prose lines ("Sure! Here is the code:",
   "Explanation:", bullet lists, sentences) are dropped; the lines from the first to the last
   non-prose line are the code (``unfenced`` or ``unfenced:prose-stripped``). Prose in the
   middle stays, so the check below fails on it. Nothing left, or mostly prose left, or
   Python that is only bare names/constants, or another language with none of ``;{}()``
   -> ``no_code``.
3. **Completion mode**: the output continues the prompt; the caller assembles
   ``prompt + code``. If the output starts with the whole prompt (an API echoing it), that
   echo is removed first. If the first non-blank line opens a fence the model answered
   chat-style instead: rule 1 applies and the code is standalone (rule starts with
   ``fenced``/``unclosed-fence``, so the caller must NOT prepend the prompt). Otherwise the
   code is the output as is (``continuation``), cut just before the first fence line if any
   (``continuation:cut-at-fence``), since a fence there means the model left the code.
4. **Refusal**: when no code was found (rule 2 found none, or its code fails the check) and
   the output contains a refusal phrase ("I can't help with", "I cannot assist",
   "I'm sorry, but I can't", ...), the status is ``refusal``; in completion mode the
   first non-blank line is tested. Code that passes its check is never a refusal.
5. **Check**: Python is ``ast.parse``-d (completion mode continuation: ``prompt + code``;
   line numbers in ``detail`` count from the prompt's first line). Other languages get a
   light check: ``()[]{}`` balanced outside comments and string literals (shell skipped).
   Failure -> ``truncated`` if ``finish_reason == "length"`` and the code runs to the end of
   the output (nothing after it was dropped), else ``unparsable``; ``detail`` carries the
   error with its line.

Prompt echo in chat mode is kept: code that starts with the prompt text is still a full
program. In chat mode the code loses leading/trailing blank lines and ends with exactly one
newline; in completion mode the continuation is returned byte for byte (whitespace matters
when it is glued to the prompt). ``no_code`` and ``refusal`` carry ``code == ""``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Literal

from vul2safe.extract_checks import (  # noqa: F401  (srcode.rewards imports these from here)
    _bracket_error,
    _check,
    _has_substance,
    _is_prose_line,
    _is_refusal,
    _parse_python,
)

__all__ = ["Extraction", "OutputClass", "canonical_language", "extract_code"]


class OutputClass(str, Enum):
    """What a model output turned out to be (a column in result tables)."""

    ok = "ok"
    no_code = "no_code"
    unparsable = "unparsable"
    truncated = "truncated"
    refusal = "refusal"

    # Upper-case aliases so both spellings work; iteration yields only the names above.
    OK = "ok"
    NO_CODE = "no_code"
    UNPARSABLE = "unparsable"
    TRUNCATED = "truncated"
    REFUSAL = "refusal"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Extraction:
    """The code taken from one output, its class, and the rule that produced it.

    ``rule`` is recorded so that a surprising number can be traced back to how the code was
    obtained; ``detail`` explains a non-``ok`` status (e.g. the SyntaxError and its line).
    """

    code: str
    status: OutputClass
    rule: str
    detail: str = ""


# --------------------------------------------------------------------------------------
# languages

#: fence tags -> canonical names (spelled like ``vul2safe.languages``)
_LANGUAGE_ALIASES: dict[str, tuple[str, ...]] = {
    "python": ("python", "py", "python3", "py3"),
    "c": ("c", "h"),
    "cpp": ("cpp", "c++", "cc", "cxx", "hpp", "hh", "hxx"),
    "java": ("java",),
    "javascript": ("javascript", "js", "jsx", "mjs", "node", "nodejs"),
    "typescript": ("typescript", "ts", "tsx"),
    "csharp": ("csharp", "c#", "cs"),
    "go": ("go", "golang"),
    "rust": ("rust", "rs"),
    "php": ("php",),
    "ruby": ("ruby", "rb"),
    "kotlin": ("kotlin", "kt"),
    "swift": ("swift",),
    "objective_c": ("objective_c", "objective-c", "objc", "m"),
    "shell": ("shell", "sh", "bash", "zsh"),
}
_CANONICAL: dict[str, str] = {
    alias: name for name, aliases in _LANGUAGE_ALIASES.items() for alias in aliases
}


def canonical_language(name: str) -> str:
    """Map a language name or fence tag to its canonical name (unknown names: lower-cased)."""
    key = name.strip().lower()
    return _CANONICAL.get(key, key)


# --------------------------------------------------------------------------------------
# fences

_FENCE_RE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


@dataclass(frozen=True)
class _Block:
    tag: str
    body: str
    closed: bool


def _fence(line: str) -> re.Match[str] | None:
    """A fence line, or None. Backtick fences cannot carry backticks in their info string
    (that would be inline code such as ```x```)."""
    m = _FENCE_RE.match(line)
    if m is None or (m["fence"][0] == "`" and "`" in m["info"]):
        return None
    return m


def _tag(info: str) -> str:
    """Fence info string -> tag.

    ``python title="a.py"`` -> ``python``; ``{.python}`` -> ``python``; ``py:a.py`` -> ``py``.
    """
    info = info.strip().lstrip("{").lstrip(".")
    if not info:
        return ""
    return info.split()[0].split(":")[0].rstrip("}").lower()


def _dedent(line: str, indent: int) -> str:
    """Remove up to ``indent`` leading blanks (the fence's own indentation, e.g. in a list)."""
    i = 0
    while i < indent and i < len(line) and line[i] in " \t":
        i += 1
    return line[i:]


def _parse_fences(lines: list[str]) -> list[_Block]:
    blocks: list[_Block] = []
    i = 0
    while i < len(lines):
        m = _fence(lines[i])
        if m is None:
            i += 1
            continue
        fence, indent = m["fence"], len(m["indent"])
        body: list[str] = []
        closed = False
        j = i + 1
        while j < len(lines):
            c = _fence(lines[j])
            if (
                c is not None
                and c["fence"][0] == fence[0]
                and len(c["fence"]) >= len(fence)
                and not c["info"].strip()
            ):
                closed = True
                break
            body.append(_dedent(lines[j], indent))
            j += 1
        blocks.append(_Block(_tag(m["info"]), "\n".join(body), closed))
        i = j + 1
    return blocks


def _select(blocks: list[_Block], language: str) -> tuple[_Block, str]:
    for block in blocks:
        if block.tag and canonical_language(block.tag) == language:
            return block, "fenced:first-matching-language"
    for block in blocks:
        if not block.tag:
            return block, "fenced:first-untagged"
    return blocks[0], "fenced:first-block"


def _tidy(code: str) -> str:
    """Drop leading/trailing blank lines and end with one newline (chat-mode code)."""
    lines = code.split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines) + "\n" if lines else ""


def _checked(
    code: str,
    *,
    source: str,
    language: str,
    rule: str,
    at_end: bool,
    finish_reason: str | None,
    note: str = "",
) -> Extraction:
    error = _check(source, language)
    if error is None:
        return Extraction(code, OutputClass.ok, rule, note)
    detail = f"{error}; {note}" if note else error
    if finish_reason == "length" and at_end:
        return Extraction(code, OutputClass.truncated, rule, detail)
    return Extraction(code, OutputClass.unparsable, rule, detail)


# --------------------------------------------------------------------------------------
# the paths


def _from_blocks(
    blocks: list[_Block], language: str, finish_reason: str | None, note: str = ""
) -> Extraction:
    candidates = [b for b in blocks if b.body.strip()]
    if not candidates:
        if finish_reason == "length" and not blocks[-1].closed:
            return Extraction(
                "", OutputClass.truncated, "unclosed-fence", "generation stopped at a fence"
            )
        return Extraction("", OutputClass.no_code, "fenced:empty", "every fenced block is empty")
    block, rule = _select(candidates, language)
    code = _tidy(block.body)
    if not block.closed:
        rule = "unclosed-fence"
        if finish_reason == "length":
            detail = "finish_reason=length inside an unclosed fence"
            return Extraction(code, OutputClass.truncated, rule, detail)
    return _checked(
        code,
        source=code,
        language=language,
        rule=rule,
        at_end=not block.closed,
        finish_reason=finish_reason,
        note=note,
    )


def _no_code(text: str, rule: str, detail: str) -> Extraction:
    if _is_refusal(text):
        return Extraction("", OutputClass.refusal, rule, "refusal phrase and no code")
    return Extraction("", OutputClass.no_code, rule, detail)


def _from_unfenced_chat(text: str, language: str, finish_reason: str | None) -> Extraction:
    lines = text.split("\n")
    nonblank = [i for i, line in enumerate(lines) if line.strip()]
    code_lines = [i for i in nonblank if not _is_prose_line(lines[i], language)]
    if not code_lines:
        return _no_code(text, "unfenced", "only prose")
    first, last = code_lines[0], code_lines[-1]
    stripped = first != nonblank[0] or last != nonblank[-1]
    rule = "unfenced:prose-stripped" if stripped else "unfenced"
    kept = lines[first : last + 1]
    kept_nonblank = [line for line in kept if line.strip()]
    if 2 * sum(_is_prose_line(line, language) for line in kept_nonblank) > len(kept_nonblank):
        return _no_code(text, rule, "mostly prose")
    code = _tidy("\n".join(kept))
    error = _check(code, language)
    if error is None:
        if not _has_substance(code, language):
            return _no_code(text, rule, "no statements that look like code")
        return Extraction(code, OutputClass.ok, rule)
    if _is_refusal(text):
        return Extraction("", OutputClass.refusal, rule, "refusal phrase and no valid code")
    at_end = last == nonblank[-1]
    status = (
        OutputClass.truncated if finish_reason == "length" and at_end else OutputClass.unparsable
    )
    return Extraction(code, status, rule, error)


def _from_completion(
    text: str, language: str, prompt: str | None, finish_reason: str | None
) -> Extraction:
    note = ""
    if prompt and prompt.strip() and text.startswith(prompt):
        text = text[len(prompt) :]
        note = "prompt echo removed"
        if not text.strip():
            return Extraction(
                "", OutputClass.no_code, "continuation", "output only echoes the prompt"
            )
    lines = text.split("\n")
    first_line = next(line for line in lines if line.strip())
    if _fence(first_line) is not None:
        return _from_blocks(_parse_fences(lines), language, finish_reason, note)
    if _is_refusal(first_line):
        return Extraction("", OutputClass.refusal, "continuation", "refusal phrase and no code")
    cut = next((i for i, line in enumerate(lines) if _fence(line) is not None), None)
    if cut is None:
        code, rule = text, "continuation"
    else:
        code = "".join(line + "\n" for line in lines[:cut])
        rule = "continuation:cut-at-fence"  # non-empty: the first non-blank line is code
    return _checked(
        code,
        source=(prompt or "") + code,
        language=language,
        rule=rule,
        at_end=cut is None,
        finish_reason=finish_reason,
        note=note,
    )


def extract_code(
    output: str,
    *,
    language: str,
    prompt: str | None = None,
    mode: Literal["chat", "completion"] = "chat",
    finish_reason: str | None = None,
) -> Extraction:
    """Extract the program from ``output`` by the single rule in the module docstring.

    ``language`` is a name or alias (``"py"``, ``"c++"``); ``prompt`` matters only in
    completion mode (echo removal, and Python is checked as ``prompt + code``);
    ``finish_reason`` is the API's value, and only ``"length"`` changes anything.
    """
    if mode not in ("chat", "completion"):
        raise ValueError(f"mode must be 'chat' or 'completion', got {mode!r}")
    lang = canonical_language(language)
    text = output.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        return Extraction("", OutputClass.no_code, "empty", "output is empty or whitespace")
    if mode == "completion":
        norm_prompt = None if prompt is None else prompt.replace("\r\n", "\n").replace("\r", "\n")
        return _from_completion(text, lang, norm_prompt, finish_reason)
    blocks = _parse_fences(text.split("\n"))
    if blocks:
        return _from_blocks(blocks, lang, finish_reason)
    return _from_unfenced_chat(text, lang, finish_reason)
