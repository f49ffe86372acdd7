"""The prompts stage: the leak filter, near-duplicate removal, styles, and the teacher path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from scripted_teacher import open_session, start_teacher, sven_pairs

from vul2safe.build import BuildContext
from vul2safe.build.prompts import (
    LEAK_KEYWORDS,
    STYLES,
    MinHashIndex,
    PromptsConfig,
    function_signature,
    jaccard,
    leak_reasons,
    near_duplicates,
    parameter_names,
    run_stage,
    shingles,
    template_prompt,
)
from vul2safe.build.records import RepairPair
from vul2safe.cache import Cache
from vul2safe.errors import UsageError

VULNERABLE = """\
int copy_name(char *dst, const char *src, size_t len)
{
    char buffer[64];
    strcpy(buffer, src);
    memcpy(dst, buffer, len);
    return 0;
}"""
FIXED = """\
int copy_name(char *dst, const char *src, size_t len)
{
    char buffer[64];
    if (strlen(src) >= sizeof(buffer) || len > sizeof(buffer))
        return -1;
    strncpy(buffer, src, sizeof(buffer) - 1);
    memcpy(dst, buffer, len);
    return 0;
}"""
SIGNATURE = "int copy_name(char *dst, const char *src, size_t len)"


def reasons(text: str, style: str = "task", **kwargs: Any) -> list[str]:
    return leak_reasons(
        text,
        style=style,
        vulnerable=VULNERABLE,
        fixed=FIXED,
        signature=SIGNATURE,
        func_name="copy_name",
        **kwargs,
    )


# --------------------------------------------------------------------------- the leak filter


def test_a_clean_task_prompt_passes() -> None:
    text = (
        "Write a C function `copy_name` that copies a name into a caller buffer of `len` "
        "bytes and returns 0, or -1 when the name does not fit."
    )
    assert reasons(text) == []


@pytest.mark.parametrize(
    "text",
    [
        "Write copy_name in C; avoid CWE-787 issues.",
        "Write copy_name in C, see cwe 120 for details.",
    ],
)
def test_cwe_ids_are_rejected(text: str) -> None:
    assert any(r.startswith("names a CWE id") for r in reasons(text))


@pytest.mark.parametrize(
    "phrase",
    [
        "a buffer overflow",
        "an integer overflow",
        "SQL injection",
        "command injection",
        "XSS",
        "cross-site scripting",
        "path traversal",
        "use-after-free",
        "use after free",
        "out-of-bounds reads",
        "out of bounds",
        "sanitize the input",
        "sanitise the input",
        "a vulnerability",
        "vulnerable code",
        "an exploit",
        "insecure handling",
        "security checks",
        "securely",
        "a double free",
        "a NULL pointer dereference",
        "parameterized queries",
        "an off-by-one",
        "a race condition",
        "untrusted data",
        "../ sequences",
        "CVE-2021-1234",
    ],
)
def test_weakness_words_are_rejected(phrase: str) -> None:
    text = f"Write the C function copy_name so that it handles {phrase} properly today."
    found = reasons(text)
    assert any(r.startswith("names a weakness") for r in found), (phrase, found)


@pytest.mark.parametrize(
    "text",
    [
        "Write a function that performs a tree traversal and returns the visited nodes.",
        "Write a thread-safe counter class with increment and read methods.",
        "Write a resolver using dependency injection for the service container.",
        "Write a function that converts DOS line endings to Unix line endings.",
        "Write a function that validates an email address format and returns a bool.",
    ],
)
def test_ordinary_words_are_not_leaks(text: str) -> None:
    assert leak_reasons(text, style="task", vulnerable="", fixed="") == []


def test_every_family_has_keywords() -> None:
    assert len(LEAK_KEYWORDS) >= 6 and all(LEAK_KEYWORDS.values())


def test_copied_code_lines_are_rejected_even_reindented() -> None:
    text = (
        "Complete copy_name. It should start like this:\n"
        "  if (strlen(src) >= sizeof(buffer)   || len > sizeof(buffer))"
    )
    assert any(r.startswith("copies code") for r in reasons(text))
    text = "Complete copy_name; the body uses memcpy(dst, buffer, len); at the end."
    assert any(r.startswith("copies code") for r in reasons(text))  # a line of both versions


def test_short_code_lines_do_not_count_as_copies() -> None:
    assert reasons("Write copy_name; it must `return 0;` on success and -1 otherwise.") == []
    strict = reasons("Write copy_name; it must `return 0;` on success.", copy_min_chars=5)
    assert any(r.startswith("copies code") for r in strict)


def test_the_signature_is_allowed_only_for_docstring_and_context() -> None:
    docstring = f"/**\n * Copy a name into dst; returns 0 or -1.\n */\n{SIGNATURE}\n{{\n"
    assert reasons(docstring, style="docstring") == []
    assert reasons(f"/* names.c */\n\n{SIGNATURE}\n{{\n    /* copy */\n", style="context") == []
    task = f"Write the C function {SIGNATURE} that copies a name."
    assert any(r.startswith("copies code") for r in reasons(task, style="task"))


def test_signature_exemption_covers_keywords_in_the_name_only() -> None:
    signature = "def sanitize_path(path, root):"
    code = f"{signature}\n    return os.path.join(root, path)\n"
    ok = leak_reasons(
        f'{signature}\n    """Join path onto root and return the result."""\n',
        style="docstring",
        vulnerable=code,
        fixed=code,
        signature=signature,
        func_name="sanitize_path",
    )
    assert ok == []
    bad = leak_reasons(
        f'{signature}\n    """Sanitize the path first."""\n',
        style="docstring",
        vulnerable=code,
        fixed=code,
        signature=signature,
        func_name="sanitize_path",
    )
    assert any("saniti" in r.lower() for r in bad)


def test_docstring_prompts_must_name_the_function_and_not_be_tiny() -> None:
    found = reasons("/** Copies a name into a buffer and reports the result. */", style="docstring")
    assert any("function name 'copy_name'" in r for r in found)
    assert any(r.startswith("too short") for r in reasons("Write copy_name."))
    assert any(r.startswith("too long") for r in reasons("word " * 50, max_chars=100))


def test_safecoder_descriptions_pass_unless_they_name_the_weakness() -> None:
    """SafeCoder's hand-written task descriptions are a reference for implicit prompts: most
    pass; those that fail really do name the weakness (or a security mechanism)."""
    path = Path(__file__).resolve().parents[4] / "shared/data/safecoder/sec-new-desc-train.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    verdicts = [
        (
            row["description"],
            leak_reasons(
                row["description"],
                style="task",
                vulnerable=row["func_src_before"],
                fixed=row["func_src_after"],
            ),
        )
        for row in rows
    ]
    passed = sum(1 for _, found in verdicts if not found)
    assert passed / len(rows) >= 0.95
    failed = {text for text, found in verdicts if found}
    assert any("directory traversal" in text for text in failed)
    assert all(
        any(word in text.lower() for word in ("saniti", "secur", "traversal", "csrf", "safely"))
        for text in failed
    )


# --------------------------------------------------------------------------- near-duplicates


def test_jaccard_and_shingles() -> None:
    assert shingles("a b c d", 3) == {("a", "b", "c"), ("b", "c", "d")}
    assert shingles("a b", 3) == {("a", "b")}
    assert jaccard({1, 2}, {2, 3}) == pytest.approx(1 / 3)
    assert jaccard(set(), set()) == 1.0


def test_near_duplicates_within_a_pair() -> None:
    texts = [
        "Write a function that parses a header line and returns the key and value.",
        "Write a function that parses a header line and returns the key and value!",
        "Write a function that parses a header line, and returns the key and value.",
        "Implement a routine to split configuration text into sections by blank lines.",
    ]
    assert near_duplicates(texts, n=3, threshold=0.8) == {1, 2}
    assert near_duplicates(texts, n=3, threshold=1.01) == set()


def test_minhash_finds_duplicates_across_pairs() -> None:
    index = MinHashIndex(n=3, threshold=0.9)
    base = " ".join(f"word{i}" for i in range(40))
    assert index.add_unless_duplicate(base)
    assert not index.add_unless_duplicate(base + ".")
    assert index.add_unless_duplicate(" ".join(f"other{i}" for i in range(40)))


# --------------------------------------------------------------------------- signatures, templates


def test_function_signatures() -> None:
    python = (
        "    @decorator\n    def get(self, request,\n            pk=None):  # x\n        return 1\n"
    )
    assert function_signature(python, "python") == "def get(self, request,\n        pk=None):  # x"
    c = "static int\nparse(const char *buf,\n      size_t len)\n{\n  return 0;\n}"
    assert function_signature(c, "c") == "static int\nparse(const char *buf,\n      size_t len)"
    assert function_signature("\t\tc => {\n\t\t\treturn c;\n\t\t}", "javascript") == "c =>"


def test_parameter_names() -> None:
    assert parameter_names("int f(const char *buf, size_t len)") == ["buf", "len"]
    assert parameter_names("def f(self, a: dict[str, int] = {}, *args, b=1):") == [
        "a",
        "args",
        "b",
    ]
    assert parameter_names("void f(void)") == []
    assert parameter_names("void f(std::map<int, int> m, int n)") == ["m", "n"]


def test_template_prompts_pass_the_filter_on_real_pairs() -> None:
    """Signature-derived prompts leak nothing except where the function's own name carries
    a weakness word (e.g. ``UntrustedCall``), which the filter then rejects."""
    pairs = sven_pairs(unique_names=False)
    total = passed = 0
    for pair in pairs:
        signature = function_signature(pair.fixed, pair.language)
        for style in STYLES:
            text = template_prompt(pair, style, signature)
            found = leak_reasons(
                text,
                style=style,
                vulnerable=pair.vulnerable,
                fixed=pair.fixed,
                signature=signature,
                func_name=pair.func_name,
            )
            total += 1
            passed += not found
            assert all(r.startswith("names a weakness") for r in found), (pair.func_name, found)
    assert passed / total >= 0.97


# --------------------------------------------------------------------------- the stage


@pytest.fixture
def pairs() -> list[RepairPair]:
    chosen = sven_pairs(limit=300)[::30]  # ten pairs, Python and C
    return [RepairPair.from_dict(p.to_dict()) for p in chosen]


def _run(server: Any, pairs: list[RepairPair], cache: Cache, config: PromptsConfig) -> Any:
    session = open_session(server, concurrency=8)
    try:
        ctx = BuildContext(output=Path("."), config=None, teacher=session)
        copies = [RepairPair.from_dict(p.to_dict()) for p in pairs]
        return run_stage(copies, ctx, config, cache=cache)
    finally:
        session.close()


def test_teacher_prompts_in_every_style(pairs: list[RepairPair], tmp_path: Path) -> None:
    with start_teacher() as server:
        result = _run(server, pairs, Cache(tmp_path / "c.db"), PromptsConfig(per_style=2))
        assert server.request_count == len(pairs) * len(STYLES)  # one request per style
    assert not result.dropped
    for pair in result.kept:
        assert {p["style"] for p in pair.prompts} == set(STYLES)
        assert all(set(p) == {"style", "text", "source"} for p in pair.prompts)
        assert {p["source"] for p in pair.prompts} == {"teacher"}
        assert len(pair.prompts) >= len(STYLES)
    assert result.stats["by_style"].keys() == set(STYLES)


def test_leaks_fall_back_to_templates_or_drop(pairs: list[RepairPair], tmp_path: Path) -> None:
    names = [p.func_name or "" for p in pairs]
    plan = {names[0]: "leak", names[1]: "dup", names[2]: "malformed", names[3]: "task:refusal"}
    cache = Cache(tmp_path / "c.db")
    with start_teacher(misbehave=plan) as server:
        result = _run(server, pairs, cache, PromptsConfig(per_style=2))
        sent = server.request_count
        # same cache: nothing is asked again
        again = _run(server, pairs, cache, PromptsConfig(per_style=2))
        assert server.request_count == sent and again.stats["cache_hits"] == sent
        strict = _run(server, pairs, cache, PromptsConfig(per_style=2, template="never"))
    by_name = {p.func_name: p for p in result.kept}
    leaked = by_name[names[0]]
    assert {p["source"] for p in leaked.prompts} == {"template"}
    assert {p["style"] for p in leaked.prompts} == set(STYLES)
    for kind in ("names a CWE id", "names a weakness", "copies code"):
        assert result.stats["rejected"][kind] >= 2
    duplicated = by_name[names[1]]
    assert len(duplicated.prompts) == len(STYLES)  # the second of each style was a near-dup
    assert result.stats["rejected"]["near-duplicate"] >= len(STYLES)
    broken = by_name[names[2]]
    assert {p["source"] for p in broken.prompts} == {"template"}
    assert result.stats["teacher_failures"]["malformed JSON"] == len(STYLES)
    refused = {p["style"]: p["source"] for p in by_name[names[3]].prompts}
    assert refused == {"task": "template", "docstring": "teacher", "context": "teacher"}
    assert [p.to_dict() for p in again.kept] == [p.to_dict() for p in result.kept]

    dropped = {p.func_name: p.drop_reason for p in strict.dropped}
    assert set(dropped) == {names[0], names[2]}
    assert "names a CWE id" in (dropped[names[0]] or "")
    assert "teacher gave no usable reply" in (dropped[names[2]] or "")
    assert "malformed JSON (after 3 attempts)" in (dropped[names[2]] or "")


def test_templates_only_needs_no_teacher_and_global_dedup(
    pairs: list[RepairPair], tmp_path: Path
) -> None:
    twin = RepairPair.from_dict({**pairs[0].to_dict(), "pair_id": "copy-of-first"})
    ctx = BuildContext(output=tmp_path, config=None, teacher=None)
    config = PromptsConfig(teacher=False, global_dedup=True)
    result = run_stage([*pairs, twin], ctx, config, cache=Cache(tmp_path / "c.db"))
    assert result.stats["teacher_requests"] == 0
    assert all(p["source"] == "template" for r in result.kept for p in r.prompts)
    assert [p.pair_id for p in result.dropped] == ["copy-of-first"]
    assert "near-duplicate of another pair" in (result.dropped[0].drop_reason or "")
    assert result.stats["global_near_duplicates"] == len(STYLES)


def test_bad_settings_are_usage_errors(pairs: list[RepairPair], tmp_path: Path) -> None:
    ctx = BuildContext(output=tmp_path, config=None, teacher=None)
    with pytest.raises(UsageError, match="unknown prompt style"):
        run_stage(pairs, ctx, PromptsConfig(styles=("task", "haiku"), teacher=False))
    with pytest.raises(UsageError, match="teacher"):
        run_stage(pairs, ctx, PromptsConfig())  # teacher wanted, none configured


def test_checkpoint_serves_finished_pairs_until_settings_change(
    pairs: list[RepairPair], tmp_path: Path
) -> None:
    checkpoint = tmp_path / "prompts.checkpoint.jsonl"
    with start_teacher() as server:
        session = open_session(server, concurrency=4)
        ctx = BuildContext(output=tmp_path, config=None, teacher=session)

        def run(config: PromptsConfig, cache_name: str) -> Any:
            copies = [RepairPair.from_dict(p.to_dict()) for p in pairs[:4]]
            cache = Cache(tmp_path / cache_name)
            return run_stage(copies, ctx, config, cache=cache, checkpoint=checkpoint)

        first = run(PromptsConfig(), "a.db")
        sent = server.request_count
        assert sent == 4 * len(STYLES)
        resumed = run(PromptsConfig(), "b.db")  # a fresh cache: answers come from the checkpoint
        assert server.request_count == sent
        assert [p.prompts for p in resumed.kept] == [p.prompts for p in first.kept]
        changed = run(PromptsConfig(per_style=2), "c.db")  # other settings: checkpoint discarded
        assert server.request_count == sent + 4 * len(STYLES)
        assert len(changed.kept) == 4
        session.close()
