"""Stage 3, ``localize``: where in each pair the weakness and the fix are, as exact spans.

The token-level reward (``srcode/rewards.py``) penalises tokens inside *vulnerable spans* of
the vulnerable function and rewards tokens that reproduce *secure spans* of the fixed one,
so both must be exact character offsets into ``pair.vulnerable`` / ``pair.fixed`` (Python
``str`` indices: code points, so multi-byte characters count as one).

* **Diff**: :func:`diff_line_spans` is a line diff (``difflib``, no junk heuristic) whose
  change groups are then slid down past repeated lines, as ``git diff`` does, so an
  ambiguous blank line or closing brace lands where a human reviewer expects it. Deleted
  and replaced lines of the vulnerable version are its vulnerable lines; added and
  replacing lines of the fixed version are its secure lines. Line terminators are not
  compared, so a CRLF ↔ LF conversion is not a change.
* **Teacher**: when the reflect stage left ``pair.reflection["vulnerable_lines"]`` (1-based
  line numbers of the vulnerable function, or code lines as text), those refine the diff:
  named lines inside the diff narrow it; named lines outside it (the unchanged unchecked
  use a fix guards against) are added; when the teacher names only lines outside a
  non-empty diff, both are kept. Named lines that do not exist are ignored and counted.

Spans cover whole lines, terminator included (``[start, end)``), adjacent lines merged.
Pairs with neither a vulnerable nor a secure span are dropped (``no_spans``).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from vul2safe.build import StageResult
from vul2safe.build.pairs import comment_only_lines

if TYPE_CHECKING:
    from vul2safe.build import BuildContext
    from vul2safe.build.records import RepairPair

STAGE = "localize"
_NUMBERED = re.compile(r"^\s*(?:line\s*)?(\d+)\s*[:|.)]\s?(.*)$", re.IGNORECASE | re.DOTALL)


@dataclass
class LocalizeConfig:
    """Options of the localize stage."""

    #: refine the diff with the teacher's ``vulnerable_lines`` when the reflect stage ran
    use_teacher: bool = True
    #: leave lines holding only a comment out of the spans: a comment is neither the
    #: weakness nor the fix, and rewarding its tokens teaches nothing about security
    skip_comment_lines: bool = False
    #: drop pairs that end up with no span at all (they carry no token-level signal)
    drop_without_spans: bool = True


# ---------------------------------------------------------------- lines and diffs


def split_lines(text: str) -> list[str]:
    """Lines with their terminators, split on ``\\n`` only (as compilers and scanners count
    lines; ``str.splitlines`` would also split on form feeds and U+2028)."""
    if not text:
        return []
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _slide_down(lines: list[str], changed: list[bool]) -> list[bool]:
    """git's compaction: move each change group down while the line after it equals its
    first line (the diff stays valid; only the ambiguous placement changes)."""
    flags = changed[:]
    n, i = len(flags), 0
    while i < n:
        if not flags[i]:
            i += 1
            continue
        start = i
        while i < n and flags[i]:
            i += 1
        end = i
        while end < n and not flags[end] and lines[start] == lines[end]:
            flags[start], flags[end] = False, True
            start, end = start + 1, end + 1
            while end < n and flags[end]:
                end += 1
        i = end
    return flags


def diff_line_spans(before: str, after: str) -> tuple[list[int], list[int]]:
    """``(deleted, added)``: 1-based numbers of the lines of ``before`` the diff removes or
    replaces, and of the lines of ``after`` it adds or puts in their place."""
    old = [line.rstrip("\r\n") for line in split_lines(before)]
    new = [line.rstrip("\r\n") for line in split_lines(after)]
    old_changed, new_changed = [False] * len(old), [False] * len(new)
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal":
            old_changed[i1:i2] = [True] * (i2 - i1)
            new_changed[j1:j2] = [True] * (j2 - j1)
    old_changed = _slide_down(old, old_changed)
    new_changed = _slide_down(new, new_changed)
    return (
        [k + 1 for k, flag in enumerate(old_changed) if flag],
        [k + 1 for k, flag in enumerate(new_changed) if flag],
    )


def line_char_spans(text: str, line_numbers: list[int] | set[int]) -> list[list[int]]:
    """``[[start, end), ...]`` character spans of whole lines (terminator included),
    consecutive lines merged; numbers outside the text are ignored."""
    lines = split_lines(text)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    spans: list[list[int]] = []
    for number in sorted(set(line_numbers)):
        if not 1 <= number <= len(lines):
            continue
        start, end = starts[number - 1], starts[number]
        if spans and spans[-1][1] == start:
            spans[-1][1] = end
        else:
            spans.append([start, end])
    return spans


# ---------------------------------------------------------------- the teacher's lines


def _squash(text: str) -> str:
    return " ".join(text.split())


def resolve_teacher_lines(
    code: str, items: Any, near: list[int] | set[int] | tuple[int, ...] = ()
) -> tuple[list[int], int]:
    """The teacher's ``vulnerable_lines`` → ``(line numbers, ignored count)``.

    An item is a 1-based number, a numeric string, ``"12: code"``, a code line (matched
    ignoring whitespace; a snippet of several lines matches line by line), or a dict with
    ``line``/``line_no``/``lineno`` or ``code``/``text``. A code line found several times
    resolves to the occurrence(s) nearest the diff lines ``near``. Items naming nothing
    in ``code`` are ignored and counted: teachers hallucinate line numbers.
    """
    lines = split_lines(code)
    squashed = [_squash(line) for line in lines]
    near_lines = sorted(set(near))
    found: set[int] = set()
    ignored = 0

    def by_number(number: int) -> bool:
        if 1 <= number <= len(lines):
            found.add(number)
            return True
        return False

    def by_text(text: str) -> bool:
        hit = False
        for piece in text.split("\n"):
            target = _squash(piece)
            if not target:
                continue
            hits = [k + 1 for k, line in enumerate(squashed) if line == target]
            if not hits:
                continue
            if near_lines and len(hits) > 1:
                distance = {h: min(abs(h - d) for d in near_lines) for h in hits}
                best = min(distance.values())
                hits = [h for h in hits if distance[h] == best]
            found.update(hits)
            hit = True
        return hit

    if items is None or items == "" or items == []:
        return [], 0
    if isinstance(items, str | int | dict):
        items = [items]
    for item in items:
        ok = False
        if isinstance(item, dict):
            number = next((item[k] for k in ("line", "line_no", "lineno") if k in item), None)
            text = next((item[k] for k in ("code", "text") if k in item), None)
            if isinstance(number, int) and not isinstance(number, bool):
                ok = by_number(number)
            if not ok and isinstance(text, str):
                ok = by_text(text)
        elif isinstance(item, int) and not isinstance(item, bool):
            ok = by_number(item)
        elif isinstance(item, str):
            numbered = _NUMBERED.match(item)
            if numbered:
                number, rest = int(numbered.group(1)), numbered.group(2)
                if not rest.strip() or (
                    1 <= number <= len(lines) and squashed[number - 1] == _squash(rest)
                ):
                    ok = by_number(number)
                else:
                    ok = by_text(rest) or by_text(item)
            else:
                ok = by_text(item)
        if not ok:
            ignored += 1
    return sorted(found), ignored


def _combine(diff_lines: list[int], teacher: list[int]) -> list[int]:
    """The teacher narrows the hunks it overlaps and adds the lines it names outside them;
    a teacher that names only lines outside a non-empty diff does not overrule it."""
    if not teacher:
        return diff_lines
    if not diff_lines or set(teacher) & set(diff_lines):
        return teacher
    return sorted(set(diff_lines) | set(teacher))


# ---------------------------------------------------------------- one pair, the stage


def localize_pair(pair: RepairPair, config: LocalizeConfig | None = None) -> dict[str, Any]:
    """The ``spans`` record of one pair (also returned when it is empty)."""
    config = config or LocalizeConfig()
    deleted, added = diff_line_spans(pair.vulnerable, pair.fixed)
    vulnerable, method, ignored = deleted, "diff", 0
    reflection = pair.reflection or {}
    if config.use_teacher and reflection.get("vulnerable_lines"):
        teacher, ignored = resolve_teacher_lines(
            pair.vulnerable, reflection["vulnerable_lines"], deleted
        )
        if teacher:
            vulnerable, method = _combine(deleted, teacher), "diff+teacher"
    secure = added
    if config.skip_comment_lines:
        skip_old = comment_only_lines(pair.vulnerable, pair.language)
        skip_new = comment_only_lines(pair.fixed, pair.language)
        vulnerable = [k for k in vulnerable if k not in skip_old]
        secure = [k for k in secure if k not in skip_new]
    return {
        "vulnerable_spans": line_char_spans(pair.vulnerable, vulnerable),
        "secure_spans": line_char_spans(pair.fixed, secure),
        "vulnerable_lines": list(vulnerable),
        "secure_lines": list(secure),
        "method": method,
        "teacher_lines_ignored": ignored,
    }


def config_from(ctx: BuildContext | Any) -> LocalizeConfig:
    """``ctx.config.localize`` as a :class:`LocalizeConfig` (dict/model accepted too)."""
    value = getattr(getattr(ctx, "config", None), "localize", None)
    if value is None:
        return LocalizeConfig()
    if isinstance(value, LocalizeConfig):
        return value
    names = [f.name for f in fields(LocalizeConfig)]
    if isinstance(value, dict):
        return LocalizeConfig(**{k: v for k, v in value.items() if k in names})
    return LocalizeConfig(**{k: getattr(value, k) for k in names if hasattr(value, k)})


def run_stage(pairs: list[RepairPair], ctx: BuildContext | Any) -> StageResult:
    """Set ``pair.spans`` on every pair; drop those without any span (reason recorded)."""
    config = config_from(ctx)
    progress = getattr(ctx, "progress", None)
    result = StageResult()
    methods: dict[str, int] = {"diff": 0, "diff+teacher": 0}
    ignored_total = ignored_pairs = 0
    for done, pair in enumerate(pairs, start=1):
        pair.spans = localize_pair(pair, config)
        methods[pair.spans["method"]] += 1
        if pair.spans["teacher_lines_ignored"]:
            ignored_total += pair.spans["teacher_lines_ignored"]
            ignored_pairs += 1
        if config.drop_without_spans and not (
            pair.spans["vulnerable_spans"] or pair.spans["secure_spans"]
        ):
            pair.drop_reason = "no_spans: no changed line and no teacher-named line"
            result.dropped.append(pair)
        else:
            result.kept.append(pair)
        if progress is not None and (done % 100 == 0 or done == len(pairs)):
            progress(STAGE, done, len(pairs))
    result.stats = {
        "input": len(pairs),
        "kept": len(result.kept),
        "dropped": {"no_spans": len(result.dropped)} if result.dropped else {},
        "methods": methods,
        "teacher_lines_ignored": ignored_total,
        "pairs_with_ignored_teacher_lines": ignored_pairs,
        "config": {f.name: getattr(config, f.name) for f in fields(config)},
    }
    return result


__all__ = [
    "LocalizeConfig",
    "config_from",
    "diff_line_spans",
    "line_char_spans",
    "localize_pair",
    "resolve_teacher_lines",
    "run_stage",
    "split_lines",
]
