"""Stage 1, ``pairs``: keep the source pairs whose fix is a real, reviewable code change.

Every pair gets its unified diff (``difflib``, vulnerable → fixed). A pair is dropped, with
its reason recorded as ``"<code>: <detail>"`` (the code is what :data:`DROP_CODES` lists),
when it cannot teach anything or would swamp the teacher:

* ``empty`` — one version has no code;
* ``identical`` — both versions are the same text (a no-op "fix");
* ``too_long`` — a version is longer than ``max_lines`` (the teacher sees both versions);
* ``cosmetic`` — only whitespace or comments changed (compared after :func:`normalize_code`);
* ``diff_too_large`` — more than ``max_diff_lines`` changed lines: a refactoring that
  happens to contain a fix localises poorly and teaches style, not security;
* ``too_few_changes`` — fewer than ``min_changed_lines`` changed lines;
* ``duplicate`` — same normalised vulnerable *and* fixed code as an earlier pair (sources
  overlap: SVEN's C pairs also appear in PrimeVul-format files, SafeCoder reuses SVEN).

The comment/whitespace normaliser is a small lexer (strings kept verbatim, comments
removed) for C-family languages, Python and Ruby; Python keeps line structure and
indentation, which are part of its syntax.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from vul2safe.build import StageResult
from vul2safe.errors import UsageError

if TYPE_CHECKING:
    from vul2safe.build import BuildContext
    from vul2safe.build.records import RepairPair

STAGE = "pairs"
DROP_CODES: tuple[str, ...] = (
    "empty",
    "identical",
    "too_long",
    "cosmetic",
    "diff_too_large",
    "too_few_changes",
    "duplicate",
)


@dataclass
class PairsConfig:
    """Filters of the pairs stage. Defaults keep ~all of SVEN/SafeCoder's curated pairs and
    cut PrimeVul's long tail of huge functions and sweeping commits."""

    #: longest function (lines, either version) kept: two 400-line versions plus the
    #: instructions fit a 16k-token teacher context with room for the answer
    max_lines: int = 400
    #: most changed lines (deleted + added) kept: bigger diffs are mostly refactoring
    max_diff_lines: int = 120
    #: fewest changed lines kept (1: any real change)
    min_changed_lines: int = 1
    #: context lines in the stored unified diff (git's default)
    context_lines: int = 3
    #: drop pairs whose normalised code repeats an earlier pair
    drop_duplicates: bool = True

    def __post_init__(self) -> None:
        for name in ("max_lines", "max_diff_lines"):
            if getattr(self, name) < 1:
                raise UsageError(f"pairs.{name} must be >= 1, got {getattr(self, name)}")
        if self.min_changed_lines < 0 or self.context_lines < 0:
            raise UsageError("pairs.min_changed_lines and pairs.context_lines must be >= 0")
        if self.min_changed_lines > self.max_diff_lines:
            raise UsageError("pairs.min_changed_lines must not exceed pairs.max_diff_lines")


# ---------------------------------------------------------------- a small lexer


@dataclass(frozen=True)
class _Syntax:
    line_comments: tuple[str, ...] = ()
    block_comment: tuple[str, str] | None = None
    quotes: str = "\"'"  # strings ending at the line's end when unterminated
    multiline_quotes: str = ""  # template literals, Go raw strings
    raw_quotes: str = ""  # no backslash escapes inside
    triple_quotes: bool = False


_C = _Syntax(("//",), ("/*", "*/"))
_SYNTAX: dict[str, _Syntax] = {
    "c": _C,
    "cpp": _C,
    "objective_c": _C,
    "csharp": _C,
    "rust": _C,
    "java": _Syntax(("//",), ("/*", "*/"), triple_quotes=True),
    "kotlin": _Syntax(("//",), ("/*", "*/"), triple_quotes=True),
    "scala": _Syntax(("//",), ("/*", "*/"), triple_quotes=True),
    "swift": _Syntax(("//",), ("/*", "*/"), triple_quotes=True),
    "javascript": _Syntax(("//",), ("/*", "*/"), multiline_quotes="`"),
    "typescript": _Syntax(("//",), ("/*", "*/"), multiline_quotes="`"),
    "go": _Syntax(("//",), ("/*", "*/"), multiline_quotes="`", raw_quotes="`"),
    "php": _Syntax(("//", "#"), ("/*", "*/")),
    "python": _Syntax(("#",), triple_quotes=True),
    "ruby": _Syntax(("#",)),
}
#: languages whose indentation and line breaks are syntax
_LINE_SENSITIVE = frozenset({"python"})
_TOKEN = re.compile(r"\w+|\S")

Segment = tuple[str, int, int]  # ("code" | "string" | "comment", start, end)


def _string_end(code: str, start: int, quote: str, syntax: _Syntax) -> int:
    """End (exclusive) of the string literal opening at ``start`` with ``quote``."""
    n = len(code)
    if syntax.triple_quotes and quote in "\"'" and code.startswith(quote * 3, start):
        j = start + 3
        while j < n:
            if code[j] == "\\":
                j += 2
            elif code.startswith(quote * 3, j):
                return j + 3
            else:
                j += 1
        return n
    multiline = quote in syntax.multiline_quotes
    escapes = quote not in syntax.raw_quotes
    j = start + 1
    while j < n:
        char = code[j]
        if char == "\\" and escapes:
            j += 2
        elif char == quote:
            return j + 1
        elif char == "\n" and not multiline:
            return j  # unterminated on this line: stop, so one stray quote can't eat the file
        else:
            j += 1
    return n


def code_segments(code: str, language: str) -> list[Segment]:
    """Split ``code`` into code, string-literal and comment segments (covering every char).

    Languages without a table here are one code segment: nothing is treated as a comment.
    """
    syntax = _SYNTAX.get(language)
    if syntax is None:
        return [("code", 0, len(code))] if code else []
    starts = {m[0] for m in syntax.line_comments}
    starts.update(syntax.quotes + syntax.multiline_quotes)
    if syntax.block_comment:
        starts.add(syntax.block_comment[0][0])
    interesting = re.compile("[" + re.escape("".join(sorted(starts))) + "]")
    segments: list[Segment] = []
    n, i, code_start = len(code), 0, 0
    while True:
        found = interesting.search(code, i)
        if found is None:
            break
        i = found.start()
        kind, end = "", i + 1
        if syntax.block_comment and code.startswith(syntax.block_comment[0], i):
            close = code.find(syntax.block_comment[1], i + len(syntax.block_comment[0]))
            kind, end = "comment", (n if close < 0 else close + len(syntax.block_comment[1]))
        elif any(code.startswith(marker, i) for marker in syntax.line_comments):
            newline = code.find("\n", i)
            end = n if newline < 0 else newline
            if end > i and code[end - 1] == "\r":
                end -= 1
            kind = "comment"
        elif code[i] in syntax.quotes or code[i] in syntax.multiline_quotes:
            kind, end = "string", _string_end(code, i, code[i], syntax)
        if kind:
            if i > code_start:
                segments.append(("code", code_start, i))
            segments.append((kind, i, end))
            code_start = end
        i = end
    if code_start < n:
        segments.append(("code", code_start, n))
    return segments


def strip_comments(code: str, language: str) -> str:
    """``code`` with comments removed (line breaks inside block comments kept)."""
    return "".join(
        "\n" * code.count("\n", start, end) if kind == "comment" else code[start:end]
        for kind, start, end in code_segments(code, language)
    )


def normalize_code(code: str, language: str) -> str:
    """Comment- and layout-free form: equal for two versions that differ only cosmetically.

    Tokens (words, single punctuation, whole string literals) joined by one space; for
    Python each non-blank line also keeps its indentation.
    """
    keep_lines = language in _LINE_SENSITIVE
    parts: list[str] = []
    for kind, start, end in code_segments(code, language):
        text = code[start:end]
        if kind == "comment":
            continue
        if kind == "string":
            parts.append(text)
            continue
        for index, piece in enumerate(text.split("\n")):
            if index and keep_lines:
                indent = piece[: len(piece) - len(piece.lstrip(" \t"))]
                if parts and parts[-1].startswith("\n"):
                    parts[-1] = "\n" + indent  # the previous line was blank
                else:
                    parts.append("\n" + indent)
            parts.extend(_TOKEN.findall(piece))
    while parts and parts[-1].startswith("\n"):
        parts.pop()
    while parts and parts[0].startswith("\n"):
        parts.pop(0)
    return " ".join(parts)


def comment_only_lines(code: str, language: str) -> set[int]:
    """1-based numbers of lines (split on ``\\n``) holding a comment and nothing else."""
    in_comment = bytearray(len(code))
    for kind, start, end in code_segments(code, language):
        if kind == "comment":
            in_comment[start:end] = b"\x01" * (end - start)
    result: set[int] = set()
    offset = 0
    for number, line in enumerate(code.split("\n"), start=1):
        visible = [offset + k for k, char in enumerate(line) if not char.isspace()]
        if visible and all(in_comment[k] for k in visible):
            result.add(number)
        offset += len(line) + 1
    return result


# ---------------------------------------------------------------- diffs


def _lines(text: str) -> list[str]:
    """Lines without terminators: a CRLF ↔ LF conversion is not a code change."""
    parts = text.split("\n")
    if parts[-1] == "":
        parts.pop()  # a final newline ends the last line, it does not start another
    return [line.rstrip("\r") for line in parts]


def unified_diff(before: str, after: str, context: int = 3) -> str:
    """The ``vulnerable → fixed`` unified diff as text ('' when the lines are equal)."""
    lines = list(
        difflib.unified_diff(
            _lines(before), _lines(after), "vulnerable", "fixed", n=context, lineterm=""
        )
    )
    return "\n".join(lines) + "\n" if lines else ""


def changed_line_counts(before: str, after: str) -> tuple[int, int]:
    """``(deleted, added)`` line counts of the line diff."""
    matcher = difflib.SequenceMatcher(None, _lines(before), _lines(after), autojunk=False)
    deleted = added = 0
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal":
            deleted += i2 - i1
            added += j2 - j1
    return deleted, added


# ---------------------------------------------------------------- the stage


def config_from(ctx: BuildContext | Any) -> PairsConfig:
    """``ctx.config.pairs`` as a :class:`PairsConfig` (a dict or model with the same fields
    also works); defaults when the build config has none."""
    value = getattr(getattr(ctx, "config", None), "pairs", None)
    if value is None:
        return PairsConfig()
    if isinstance(value, PairsConfig):
        return value
    names = [f.name for f in fields(PairsConfig)]
    if isinstance(value, dict):
        return PairsConfig(**{k: v for k, v in value.items() if k in names})
    return PairsConfig(**{k: getattr(value, k) for k in names if hasattr(value, k)})


def check_pair(pair: RepairPair, config: PairsConfig) -> str | None:
    """Why ``pair`` should be dropped (``"<code>: <detail>"``), ignoring duplicates; also
    stores its unified diff on ``pair.diff``."""
    if not pair.vulnerable.strip() or not pair.fixed.strip():
        side = "vulnerable" if not pair.vulnerable.strip() else "fixed"
        return f"empty: the {side} version has no code"
    if pair.vulnerable == pair.fixed:
        return "identical: the fix does not change the function"
    pair.diff = unified_diff(pair.vulnerable, pair.fixed, config.context_lines)
    longest = max(len(_lines(pair.vulnerable)), len(_lines(pair.fixed)))
    if longest > config.max_lines:
        return f"too_long: {longest} lines > max_lines {config.max_lines}"
    if normalize_code(pair.vulnerable, pair.language) == normalize_code(pair.fixed, pair.language):
        return "cosmetic: only whitespace or comments change"
    deleted, added = changed_line_counts(pair.vulnerable, pair.fixed)
    if deleted + added > config.max_diff_lines:
        return f"diff_too_large: {deleted + added} changed lines > {config.max_diff_lines}"
    if deleted + added < config.min_changed_lines:
        return f"too_few_changes: {deleted + added} changed lines < {config.min_changed_lines}"
    return None


def _fingerprint(pair: RepairPair) -> str:
    text = "\0".join(
        (
            pair.language,
            normalize_code(pair.vulnerable, pair.language),
            normalize_code(pair.fixed, pair.language),
        )
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def run_stage(pairs: list[RepairPair], ctx: BuildContext | Any) -> StageResult:
    """Diff every pair and split them into kept and dropped (reason on each dropped one)."""
    config = config_from(ctx)
    progress = getattr(ctx, "progress", None)
    result = StageResult()
    first_seen: dict[str, str] = {}
    dropped: dict[str, int] = dict.fromkeys(DROP_CODES, 0)
    for done, pair in enumerate(pairs, start=1):
        reason = check_pair(pair, config)
        if reason is None and config.drop_duplicates:
            key = _fingerprint(pair)
            if key in first_seen:
                reason = f"duplicate: same normalised code as {first_seen[key]}"
            else:
                first_seen[key] = pair.pair_id
        if reason is None:
            result.kept.append(pair)
        else:
            pair.drop_reason = reason
            dropped[reason.split(":", 1)[0]] += 1
            result.dropped.append(pair)
        if progress is not None and (done % 100 == 0 or done == len(pairs)):
            progress(STAGE, done, len(pairs))
    result.stats = {
        "input": len(pairs),
        "kept": len(result.kept),
        "dropped": {code: count for code, count in dropped.items() if count},
        "config": {f.name: getattr(config, f.name) for f in fields(config)},
    }
    return result


__all__ = [
    "DROP_CODES",
    "PairsConfig",
    "changed_line_counts",
    "check_pair",
    "code_segments",
    "comment_only_lines",
    "config_from",
    "normalize_code",
    "run_stage",
    "strip_comments",
    "unified_diff",
]
