"""Span localisation: agreement with SVEN's curated line changes, and exact offsets."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from vul2safe.build.localize import (
    LocalizeConfig,
    diff_line_spans,
    line_char_spans,
    localize_pair,
    resolve_teacher_lines,
    run_stage,
    split_lines,
)
from vul2safe.build.records import RepairPair
from vul2safe.build.source import load_sources


def _pair(vulnerable: str, fixed: str, reflection: dict | None = None) -> RepairPair:
    return RepairPair("t:0", "test", "c", vulnerable, fixed, reflection=reflection)


def _text(code: str, spans: list[list[int]]) -> list[str]:
    return [code[start:end] for start, end in spans]


# ---------------------------------------------------------------- real SVEN pairs


def test_agreement_with_sven_line_changes(shared_data: Path) -> None:
    """Our diff lines vs SVEN's own ``line_changes`` on all 720 training pairs.

    SVEN's lines are partly hand-curated (it never lists Python ``#`` or C ``//`` comment
    lines, and sometimes omits a changed signature line), so agreement is high but not
    perfect. Measured: P 0.955, R 0.990, F1 0.972, exact 0.925.
    """
    pairs = load_sources([f"sven:{shared_data / 'sven' / 'train'}"])
    assert len(pairs) == 720
    tp = fp = fn = exact = 0
    side_counts = {"deleted": [0, 0, 0], "added": [0, 0, 0]}
    for pair in pairs:
        spans = localize_pair(pair)
        changes = pair.metadata["line_changes"]
        truth = {
            "deleted": {c["line_no"] for c in changes["deleted"]},
            "added": {c["line_no"] for c in changes["added"]},
        }
        ours = {"deleted": set(spans["vulnerable_lines"]), "added": set(spans["secure_lines"])}
        for side in ("deleted", "added"):
            hit, extra, missed = (
                len(ours[side] & truth[side]),
                len(ours[side] - truth[side]),
                len(truth[side] - ours[side]),
            )
            tp, fp, fn = tp + hit, fp + extra, fn + missed
            counts = side_counts[side]
            counts[0], counts[1], counts[2] = counts[0] + hit, counts[1] + extra, counts[2] + missed
        exact += ours == truth
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    f1 = 2 * precision * recall / (precision + recall)
    rate = exact / len(pairs)
    print(
        f"\nSVEN agreement (720 pairs, {tp + fn} SVEN lines): precision {precision:.4f} "
        f"recall {recall:.4f} F1 {f1:.4f} exact-match {rate:.4f}"
    )
    for side, (hit, extra, missed) in side_counts.items():
        p, r = hit / (hit + extra), hit / (hit + missed)
        print(f"  {side:7s} lines: precision {p:.4f} recall {r:.4f} F1 {2 * p * r / (p + r):.4f}")
    assert f1 >= 0.97
    assert precision >= 0.95
    assert recall >= 0.985
    assert rate >= 0.92


def test_char_offsets_match_sven_exactly(shared_data: Path) -> None:
    """Where we and SVEN name the same line, SVEN's character offsets are ours, and every
    span is exactly the text of its lines."""
    pairs = load_sources([f"sven:{shared_data / 'sven' / 'train'}"])
    checked = 0
    for pair in pairs:
        spans = localize_pair(pair)
        for side, code, key in (
            ("deleted", pair.vulnerable, "vulnerable"),
            ("added", pair.fixed, "secure"),
        ):
            lines = split_lines(code)
            ours = spans[f"{key}_lines"]
            assert "".join(_text(code, spans[f"{key}_spans"])) == "".join(
                lines[n - 1] for n in ours
            )
            starts = {n: sum(len(line) for line in lines[: n - 1]) for n in ours}
            for change in pair.metadata["line_changes"][side]:
                number = change["line_no"]
                if number not in starts:
                    continue
                assert change["char_start"] == starts[number]
                # SVEN ends the function's last line with a newline the code lacks
                last = number == len(lines)
                assert lines[number - 1] == change["line"] or (
                    last and change["line"].startswith(lines[number - 1])
                )
                checked += 1
    assert checked > 4000


def test_stage_on_sven_keeps_every_pair_with_a_change(shared_data: Path) -> None:
    pairs = load_sources([f"sven:{shared_data / 'sven' / 'train'}"])
    result = run_stage(pairs, types.SimpleNamespace(config=None))
    identical = sum(p.vulnerable == p.fixed for p in pairs)
    assert result.stats["dropped"] == {"no_spans": identical}
    assert result.stats["methods"] == {"diff": 720, "diff+teacher": 0}
    assert all(p.spans and p.spans["method"] == "diff" for p in result.kept)


# ---------------------------------------------------------------- hand-made cases


def test_crlf_line_endings() -> None:
    before = "int f(int n)\r\n{\r\n    return n;\r\n}\r\n"
    after = "int f(int n)\r\n{\r\n    return n > 0 ? n : 0;\r\n}\r\n"
    spans = localize_pair(_pair(before, after))
    assert spans["vulnerable_lines"] == [3] and spans["secure_lines"] == [3]
    assert _text(before, spans["vulnerable_spans"]) == ["    return n;\r\n"]
    assert _text(after, spans["secure_spans"]) == ["    return n > 0 ? n : 0;\r\n"]
    # a fix that also converted CRLF to LF still localises to the real change
    spans = localize_pair(_pair(before, after.replace("\r\n", "\n")))
    assert spans["vulnerable_lines"] == [3] and spans["secure_lines"] == [3]


def test_multibyte_characters_use_str_offsets() -> None:
    before = 'msg = "héllo wörld €😀"\nsize = len(msg)\nbuf = msg[:size]\n'
    after = 'msg = "héllo wörld €😀"\nsize = len(msg.encode())\nbuf = msg[:size]\n'
    spans = localize_pair(_pair(before, after))
    assert spans["vulnerable_spans"] == [[23, 39]]
    assert _text(before, spans["vulnerable_spans"]) == ["size = len(msg)\n"]
    assert _text(after, spans["secure_spans"]) == ["size = len(msg.encode())\n"]
    assert len(before.encode("utf-8")) > len(before)  # byte offsets would be wrong here


def test_deletion_only_fix() -> None:
    before = "void f(void)\n{\n    debug_dump(secret);\n    work();\n}\n"
    after = "void f(void)\n{\n    work();\n}\n"
    spans = localize_pair(_pair(before, after))
    assert spans["vulnerable_lines"] == [3] and spans["secure_lines"] == []
    assert _text(before, spans["vulnerable_spans"]) == ["    debug_dump(secret);\n"]
    assert spans["secure_spans"] == []
    result = run_stage([_pair(before, after)], types.SimpleNamespace(config=None))
    assert len(result.kept) == 1


def test_addition_only_fix() -> None:
    before = "int get(int *a, int i)\n{\n    return a[i];\n}"
    after = (
        "int get(int *a, int i)\n{\n    if (i < 0 || i >= N)\n        return -1;\n"
        "    return a[i];\n}"
    )
    spans = localize_pair(_pair(before, after))
    assert spans["vulnerable_lines"] == [] and spans["vulnerable_spans"] == []
    assert spans["secure_lines"] == [3, 4]
    assert _text(after, spans["secure_spans"]) == ["    if (i < 0 || i >= N)\n        return -1;\n"]
    # the teacher names the unchanged line that was vulnerable: it becomes the span
    teacher = {"vulnerable_lines": ["return a[i];"]}
    spans = localize_pair(_pair(before, after, teacher))
    assert spans["method"] == "diff+teacher"
    assert _text(before, spans["vulnerable_spans"]) == ["    return a[i];\n"]


def test_last_line_without_newline() -> None:
    spans = localize_pair(_pair("a\nb", "a\nc"))
    assert _text("a\nb", spans["vulnerable_spans"]) == ["b"]
    assert _text("a\nc", spans["secure_spans"]) == ["c"]


BEFORE = (
    "int copy(char *dst, const char *src, size_t n)\n"  # 1
    "{\n"  # 2
    "    size_t len = strlen(src);\n"  # 3
    '    log("copy %zu", len);\n'  # 4
    "    memcpy(dst, src, len);\n"  # 5
    "    dst[len] = 0;\n"  # 6
    "    return 0;\n"  # 7
    "}\n"  # 8
)
AFTER = (
    "int copy(char *dst, const char *src, size_t n)\n"
    "{\n"
    "    size_t len = strnlen(src, n - 1);\n"
    '    log("copy %zu of %zu", len, n);\n'
    "    memcpy(dst, src, len);\n"
    "    dst[len] = 0;\n"
    "    return 0;\n"
    "}\n"
)


def test_teacher_lines_narrow_the_hunk() -> None:
    assert localize_pair(_pair(BEFORE, AFTER))["vulnerable_lines"] == [3, 4]
    spans = localize_pair(_pair(BEFORE, AFTER, {"vulnerable_lines": [3, 5]}))
    # line 4 (a log message) is dropped, line 5 (the unchanged memcpy) is added
    assert spans["vulnerable_lines"] == [3, 5]
    assert spans["method"] == "diff+teacher"
    assert _text(BEFORE, spans["vulnerable_spans"]) == [
        "    size_t len = strlen(src);\n",
        "    memcpy(dst, src, len);\n",
    ]
    assert spans["secure_lines"] == [3, 4]  # the fixed side is the diff's


def test_teacher_lines_as_text_numbers_and_dicts() -> None:
    teacher = {
        "vulnerable_lines": [
            "size_t   len = strlen(src);",  # whitespace differs
            "5: memcpy(dst, src, len);",
            {"line": 6, "code": "dst[len] = 0;"},
            "99",  # no such line
            "free(dst);",  # not in the code
            42,  # no such line
            True,  # not a line at all
        ]
    }
    spans = localize_pair(_pair(BEFORE, AFTER, teacher))
    assert spans["vulnerable_lines"] == [3, 5, 6]
    assert spans["teacher_lines_ignored"] == 4
    result = run_stage([_pair(BEFORE, AFTER, teacher)], types.SimpleNamespace(config=None))
    assert result.stats["teacher_lines_ignored"] == 4
    assert result.stats["pairs_with_ignored_teacher_lines"] == 1
    assert result.stats["methods"] == {"diff": 0, "diff+teacher": 1}


def test_teacher_lines_all_wrong_fall_back_to_the_diff() -> None:
    spans = localize_pair(_pair(BEFORE, AFTER, {"vulnerable_lines": [0, 77, "nope();"]}))
    assert spans["vulnerable_lines"] == [3, 4]
    assert spans["method"] == "diff"
    assert spans["teacher_lines_ignored"] == 3


def test_teacher_disjoint_from_a_nonempty_diff_does_not_overrule_it() -> None:
    spans = localize_pair(_pair(BEFORE, AFTER, {"vulnerable_lines": [7]}))
    assert spans["vulnerable_lines"] == [3, 4, 7]


def test_repeated_teacher_line_resolves_nearest_the_diff() -> None:
    code = "x();\nfree(p);\ny();\nz();\nw();\nfree(p);\nv = p->n;\n"
    lines, ignored = resolve_teacher_lines(code, ["free(p);"], near=[7])
    assert (lines, ignored) == ([6], 0)
    assert resolve_teacher_lines(code, ["free(p);"])[0] == [2, 6]  # no diff: all of them
    assert resolve_teacher_lines(code, "free(p);\nv = p->n;", near=[1])[0] == [2, 7]


def test_teacher_can_be_switched_off() -> None:
    pair = _pair(BEFORE, AFTER, {"vulnerable_lines": [5]})
    config = types.SimpleNamespace(localize=LocalizeConfig(use_teacher=False))
    result = run_stage([pair], types.SimpleNamespace(config=config))
    assert result.kept[0].spans["vulnerable_lines"] == [3, 4]


def test_comment_lines_can_be_left_out() -> None:
    before = "int f(int n)\n{\n    return n;\n}\n"
    after = "int f(int n)\n{\n    // never negative\n    return n < 0 ? 0 : n;\n}\n"
    assert localize_pair(_pair(before, after))["secure_lines"] == [3, 4]
    spans = localize_pair(_pair(before, after), LocalizeConfig(skip_comment_lines=True))
    assert spans["secure_lines"] == [4]


def test_pairs_without_any_span_are_dropped() -> None:
    same = _pair("int x;\n", "int x;\n")
    crlf = RepairPair("t:1", "test", "c", "int x;\r\n", "int x;\n")
    changed = RepairPair("t:2", "test", "c", "int x;\n", "long x;\n")
    ctx = types.SimpleNamespace(config=types.SimpleNamespace(localize={"use_teacher": True}))
    result = run_stage([same, crlf, changed], ctx)
    assert [p.pair_id for p in result.kept] == ["t:2"]
    assert [p.drop_reason for p in result.dropped] == [
        "no_spans: no changed line and no teacher-named line"
    ] * 2
    assert result.dropped[0].spans["vulnerable_spans"] == []
    kept = run_stage([same], types.SimpleNamespace(config={"unused": 1}))
    assert kept.stats["dropped"] == {"no_spans": 1}
    keep_all = types.SimpleNamespace(localize=LocalizeConfig(drop_without_spans=False))
    assert len(run_stage([same], types.SimpleNamespace(config=keep_all)).kept) == 1


# ---------------------------------------------------------------- the primitives


def test_diff_line_spans_slides_like_git() -> None:
    # an inserted "x" plus a blank line is ambiguous; git shows it after the blank line
    assert diff_line_spans("a\n\nb\n", "a\n\nx\n\nb\n") == ([], [3, 4])
    assert diff_line_spans("a\n}\n}\n", "a\n}\n") == ([3], [])
    assert diff_line_spans("", "a\n") == ([], [1])
    assert diff_line_spans("a\nb\n", "a\nb\n") == ([], [])


def test_split_lines_only_on_newline() -> None:
    assert split_lines("a\fb\u2028c\rd\n") == ["a\fb\u2028c\rd\n"]
    assert split_lines("a\nb") == ["a\n", "b"]
    assert split_lines("a\n") == ["a\n"]
    assert split_lines("") == []


def test_line_char_spans_merge_adjacent_lines() -> None:
    text = "ab\ncd\nef\ngh"
    assert line_char_spans(text, [1, 2, 4, 9]) == [[0, 6], [9, 11]]
    assert line_char_spans(text, []) == []


@pytest.mark.parametrize("items", [None, [], ""])
def test_no_teacher_lines(items: object) -> None:
    assert resolve_teacher_lines("a\n", items) == ([], 0)
