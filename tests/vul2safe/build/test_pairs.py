"""The pairs stage: diffs and drop reasons, on real sources and on hand-made pairs."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from vul2safe.build import BuildContext, StageResult
from vul2safe.build.pairs import (
    DROP_CODES,
    PairsConfig,
    changed_line_counts,
    code_segments,
    comment_only_lines,
    normalize_code,
    run_stage,
    strip_comments,
    unified_diff,
)
from vul2safe.build.records import RepairPair
from vul2safe.build.source import load_sources
from vul2safe.errors import UsageError


def _ctx(**overrides: object) -> types.SimpleNamespace:
    return types.SimpleNamespace(config=types.SimpleNamespace(pairs=PairsConfig(**overrides)))


def _pair(vulnerable: str, fixed: str, language: str = "c", n: int = 0) -> RepairPair:
    return RepairPair(f"t:{n}", "test", language, vulnerable, fixed)


def _reason(pair: RepairPair, **overrides: object) -> str | None:
    result = run_stage([pair], _ctx(**overrides))
    return result.dropped[0].drop_reason if result.dropped else None


# ---------------------------------------------------------------- real data

EXPECTED = {
    # measured on the shared data with the default PairsConfig
    "sven": (720, 684, {"identical": 4, "too_long": 29, "cosmetic": 1, "duplicate": 2}),
    "safecoder": (
        421,
        402,
        {"identical": 1, "too_long": 3, "cosmetic": 2, "diff_too_large": 1, "duplicate": 12},
    ),
    "primevul": (378, 343, {"identical": 4, "too_long": 29, "cosmetic": 1, "duplicate": 1}),
}


@pytest.mark.parametrize(
    ("name", "location"),
    [
        ("sven", "sven"),
        ("safecoder", "safecoder/sec-new-desc-train.jsonl"),
        ("primevul", "primevul-format/sven_c_train_paired.jsonl"),
    ],
)
def test_drop_counts_on_real_sources(name: str, location: str, shared_data: Path) -> None:
    pairs = load_sources([f"{name}:{shared_data / location}"])
    result = run_stage(pairs, _ctx())
    print(
        f"\npairs stage on {name}: {result.stats['input']} in, {result.stats['kept']} kept, "
        f"dropped {result.stats['dropped']}"
    )
    assert (result.stats["input"], result.stats["kept"], result.stats["dropped"]) == EXPECTED[name]
    assert len(result.kept) + len(result.dropped) == len(pairs)
    for pair in result.kept:
        assert pair.drop_reason is None
        assert pair.diff.startswith("--- vulnerable\n+++ fixed\n@@ ")
    for pair in result.dropped:
        assert pair.drop_reason and pair.drop_reason.split(":", 1)[0] in DROP_CODES


def test_overlapping_sources_are_deduplicated(shared_data: Path) -> None:
    """The PrimeVul-format file holds SVEN's C/C++ pairs again: each is a duplicate."""
    pairs = load_sources(
        [f"sven:{shared_data / 'sven'}", f"primevul:{shared_data / 'primevul-format'}"]
    )
    result = run_stage(pairs, _ctx())
    assert result.stats["kept"] == 684
    duplicates = [p for p in result.dropped if p.drop_reason.startswith("duplicate")]
    assert {p.source for p in duplicates} >= {"primevul"}
    assert all(p.source == "sven" for p in result.kept)
    kept_ids = {p.pair_id for p in result.kept}
    for pair in duplicates:
        assert pair.drop_reason.removeprefix("duplicate: same normalised code as ") in kept_ids


def test_duplicates_can_be_kept(shared_data: Path) -> None:
    pairs = load_sources([f"safecoder:{shared_data / 'safecoder'}"])
    result = run_stage(pairs, _ctx(drop_duplicates=False))
    assert "duplicate" not in result.stats["dropped"]
    assert result.stats["kept"] == 414


# ---------------------------------------------------------------- hand-made pairs

VULN = "int f(char *s)\n{\n    char b[8];\n    strcpy(b, s);\n    return 0;\n}\n"
FIXED = "int f(char *s)\n{\n    char b[8];\n    strncpy(b, s, sizeof b - 1);\n    return 0;\n}\n"


def test_a_real_change_is_kept_with_its_diff() -> None:
    pair = _pair(VULN, FIXED)
    result = run_stage([pair], _ctx())
    assert result.kept == [pair] and pair.drop_reason is None
    assert "-    strcpy(b, s);\n+    strncpy(b, s, sizeof b - 1);\n" in pair.diff
    assert changed_line_counts(VULN, FIXED) == (1, 1)


def test_empty_and_identical() -> None:
    assert _reason(_pair("  \n", FIXED)).startswith("empty: the vulnerable version")
    assert _reason(_pair(VULN, "")).startswith("empty: the fixed version")
    assert _reason(_pair(VULN, VULN)).startswith("identical:")


def test_whitespace_and_comment_only_changes_are_cosmetic() -> None:
    reindented = VULN.replace("    ", "\t").replace("strcpy(b, s)", "strcpy( b,s )")
    assert _reason(_pair(VULN, reindented)).startswith("cosmetic:")
    commented = VULN.replace("return 0;", "return 0; // done").replace(
        "char b[8];", "/* buffer */ char b[8];\n    /* a\n       block */"
    )
    assert _reason(_pair(VULN, commented)).startswith("cosmetic:")
    crlf = VULN.replace("\n", "\r\n")
    assert _reason(_pair(VULN, crlf)).startswith("cosmetic:")


def test_changes_inside_strings_or_comment_markers_in_strings_are_real() -> None:
    before = 'int g(void)\n{\n    puts("a  b");\n    return 1;\n}\n'
    assert _reason(_pair(before, before.replace('"a  b"', '"a b"'))) is None
    # "//" inside a string is not a comment: the text after it is code
    url = 'char *u = "http://x"; int n = 1;\n'
    assert _reason(_pair(url, url.replace("n = 1", "n = 2"))) is None
    assert normalize_code(url, "c") == 'char * u = "http://x" ; int n = 1 ;'


def test_python_comments_are_cosmetic_but_indentation_is_not() -> None:
    before = "def f(x):\n    if x:\n        a()\n    b()\n    return x\n"
    commented = (
        "def f(x):  # entry\n    if x:\n        # call a\n        a()\n\n    b()\n    return x\n"
    )
    assert _reason(_pair(before, commented, "python")).startswith("cosmetic:")
    dedented = before.replace("        a()\n    b()", "        a()\n        b()")
    assert _reason(_pair(before, dedented, "python")) is None
    hash_in_string = 'def f():\n    return "#1"\n'
    assert _reason(_pair(hash_in_string, hash_in_string.replace("#1", "#2"), "python")) is None


def test_huge_function_and_huge_diff() -> None:
    long = "int f(void)\n{\n" + "    x++;\n" * 500 + "}\n"
    assert _reason(_pair(long, long.replace("x++", "y++", 1))).startswith(
        "too_long: 503 lines > max_lines 400"
    )
    assert _reason(_pair(long, long.replace("x++", "y++", 1)), max_lines=600) is None
    body = "int f(void)\n{\n" + "".join(f"    v{i} = {i};\n" for i in range(100)) + "}\n"
    rewritten = body.replace(" = ", " += ")
    assert _reason(_pair(body, rewritten)).startswith("diff_too_large: 200 changed lines > 120")
    assert _reason(_pair(body, rewritten), max_diff_lines=200) is None


def test_min_changed_lines() -> None:
    assert _reason(_pair(VULN, FIXED), min_changed_lines=3).startswith(
        "too_few_changes: 2 changed lines < 3"
    )


def test_unknown_language_compares_whitespace_only() -> None:
    before = "x = 1 -- note\n"
    assert _reason(_pair(before, "x  =  1   --  note\n", "cobol")).startswith("cosmetic:")
    assert _reason(_pair(before, "x = 1 -- other\n", "cobol")) is None


def test_stats_progress_and_config_forms() -> None:
    calls: list[tuple[str, int, int]] = []
    ctx = BuildContext(
        output=Path("unused"),
        config=types.SimpleNamespace(pairs={"max_lines": 5}),
        progress=lambda stage, done, total: calls.append((stage, done, total)),
    )
    pairs = [_pair(VULN, FIXED, n=0), _pair(VULN, FIXED, n=1), _pair(VULN, VULN, n=2)]
    result = run_stage(pairs, ctx)
    assert isinstance(result, StageResult)
    assert result.stats["dropped"] == {"too_long": 2, "identical": 1}
    assert result.stats["config"]["max_lines"] == 5
    assert calls[-1] == ("pairs", 3, 3)
    plain = run_stage(pairs[:2], types.SimpleNamespace(config=None))
    assert plain.stats["dropped"] == {"duplicate": 1}
    assert plain.dropped[0].drop_reason == "duplicate: same normalised code as t:0"


def test_config_is_validated() -> None:
    with pytest.raises(UsageError, match="max_lines"):
        PairsConfig(max_lines=0)
    with pytest.raises(UsageError, match="min_changed_lines"):
        PairsConfig(min_changed_lines=200)


# ---------------------------------------------------------------- the lexer


def test_code_segments_cover_the_text() -> None:
    code = "a = '/*'; /* c */ b = `x\n// y` // z\n"
    segments = code_segments(code, "javascript")
    assert "".join(code[s:e] for _, s, e in segments) == code
    assert [(kind, code[s:e]) for kind, s, e in segments if kind != "code"] == [
        ("string", "'/*'"),
        ("comment", "/* c */"),
        ("string", "`x\n// y`"),
        ("comment", "// z"),
    ]


def test_strip_comments_keeps_line_structure() -> None:
    code = "int a; /* one\ntwo */ int b; // three\r\nint c;"
    assert strip_comments(code, "c") == "int a; \n int b; \r\nint c;"
    assert comment_only_lines("x = 1\n# note\n  '''# not'''\n", "python") == {2}
    assert comment_only_lines("/* a\n * b\n */ int x;\n", "c") == {1, 2}


def test_unterminated_string_stops_at_the_line_end() -> None:
    code = "char c = '\\'';\nchar d = 'x;\nint e; // gone\n"
    assert normalize_code(code, "c").endswith("int e ;")


def test_unified_diff_ignores_line_terminators() -> None:
    assert unified_diff("a\r\nb\r\n", "a\nb\n") == ""
    assert unified_diff("a\nb\n", "a\nc\n", context=0) == (
        "--- vulnerable\n+++ fixed\n@@ -2 +2 @@\n-b\n+c\n"
    )
