"""Tests for vul2safe.extract: one case per output shape, code and status asserted exactly."""

from __future__ import annotations

from typing import Any

import pytest

from vul2safe.extract import Extraction, OutputClass, canonical_language, extract_code

OK = OutputClass.ok

PY_FN = "def add(a, b):\n    return a + b\n"
C_FN = "int add(int a, int b) {\n    return a + b;\n}\n"

# (id, output, kwargs, expected code, expected status, expected rule)
CASES: list[tuple[str, str, dict[str, Any], str, OutputClass, str]] = [
    (
        "fenced-python-with-preamble-and-explanation",
        f"Sure! Here is the code:\n\n```python\n{PY_FN}```\n\nThis adds the two numbers.",
        {"language": "python"},
        PY_FN,
        OK,
        "fenced:first-matching-language",
    ),
    (
        "fenced-py-alias",
        f"```py\n{PY_FN}```",
        {"language": "python"},
        PY_FN,
        OK,
        "fenced:first-matching-language",
    ),
    (
        "fenced-python3-alias-with-attributes",
        f'```python3 title="add.py"\n{PY_FN}```',
        {"language": "py"},
        PY_FN,
        OK,
        "fenced:first-matching-language",
    ),
    (
        "fenced-bare",
        f"Here you go:\n```\n{PY_FN}```\n",
        {"language": "python"},
        PY_FN,
        OK,
        "fenced:first-untagged",
    ),
    (
        "fenced-tilde",
        f"~~~python\n{PY_FN}~~~\n",
        {"language": "python"},
        PY_FN,
        OK,
        "fenced:first-matching-language",
    ),
    (
        "fenced-c",
        f"The fixed function:\n```c\n{C_FN}```\nIt no longer overflows.",
        {"language": "c"},
        C_FN,
        OK,
        "fenced:first-matching-language",
    ),
    (
        "fenced-cpp-tag-cxx-language-c++",
        f"```cxx\n{C_FN}```",
        {"language": "c++"},
        C_FN,
        OK,
        "fenced:first-matching-language",
    ),
    (
        "matching-language-beats-earlier-blocks",
        f"Install first:\n```bash\npip install x\n```\n```\nplain\n```\n```python\n{PY_FN}```",
        {"language": "python"},
        PY_FN,
        OK,
        "fenced:first-matching-language",
    ),
    (
        "several-matching-blocks-first-wins-no-concatenation",
        f"```python\n{PY_FN}```\nUsage:\n```python\nprint(add(1, 2))\n```",
        {"language": "python"},
        PY_FN,
        OK,
        "fenced:first-matching-language",
    ),
    (
        "untagged-beats-other-language",
        f"```text\nsome output\n```\n```\n{C_FN}```",
        {"language": "c"},
        C_FN,
        OK,
        "fenced:first-untagged",
    ),
    (
        "first-block-when-nothing-matches",
        f"```java\n{C_FN}```\n```cpp\nint x;\n```",
        {"language": "c"},
        C_FN,
        OK,
        "fenced:first-block",
    ),
    (
        "empty-block-skipped",
        f"```python\n\n```\n```python\n{PY_FN}```",
        {"language": "python"},
        PY_FN,
        OK,
        "fenced:first-matching-language",
    ),
    (
        "indented-fence-in-list-is-dedented",
        "1. Replace the function:\n\n"
        "   ```python\n   def add(a, b):\n       return a + b\n   ```\n",
        {"language": "python"},
        PY_FN,
        OK,
        "fenced:first-matching-language",
    ),
    (
        "crlf-line-endings",
        "```python\r\ndef add(a, b):\r\n    return a + b\r\n```\r\n",
        {"language": "python"},
        PY_FN,
        OK,
        "fenced:first-matching-language",
    ),
    (
        "unclosed-fence-cut-by-length",
        "Here:\n```python\ndef add(a, b):\n    return (a +",
        {"language": "python", "finish_reason": "length"},
        "def add(a, b):\n    return (a +\n",
        OutputClass.truncated,
        "unclosed-fence",
    ),
    (
        "unclosed-fence-that-parses",
        f"```python\n{PY_FN}",
        {"language": "python", "finish_reason": "stop"},
        PY_FN,
        OK,
        "unclosed-fence",
    ),
    (
        "chat-echoes-prompt-kept-whole",
        f"```python\n# complete this\n{PY_FN}```",
        {"language": "python", "prompt": "# complete this\ndef add(a, b):\n"},
        f"# complete this\n{PY_FN}",
        OK,
        "fenced:first-matching-language",
    ),
    (
        "refusal-outside-code-with-code-is-ok",
        f"I can't help with exploits, but here is a safe version:\n```python\n{PY_FN}```",
        {"language": "python"},
        PY_FN,
        OK,
        "fenced:first-matching-language",
    ),
    (
        "unfenced-chat-prose-stripped",
        f"Sure! Here is the corrected code:\n\n{PY_FN}\nExplanation:\n"
        "- The function returns the sum of `a` and `b`.\n- It has no side effects.\n",
        {"language": "python"},
        PY_FN,
        OK,
        "unfenced:prose-stripped",
    ),
    (
        "unfenced-chat-code-only",
        C_FN,
        {"language": "c"},
        C_FN,
        OK,
        "unfenced",
    ),
    (
        "unfenced-chat-only-prose",
        "You should validate the input length before copying it into the buffer.\n"
        "Also consider using a safer library function for this.",
        {"language": "c"},
        "",
        OutputClass.no_code,
        "unfenced",
    ),
    (
        "unfenced-chat-prose-in-the-middle-fails-the-check",
        "def add(a, b):\n    return a + b\nThe next part is the caller of this function.\n"
        "print(add(1, 2))\n",
        {"language": "python"},
        "def add(a, b):\n    return a + b\nThe next part is the caller of this function.\n"
        "print(add(1, 2))\n",
        OutputClass.unparsable,
        "unfenced",
    ),
    (
        "completion-continuation-kept-byte-for-byte",
        "    return a + b\n\n\nprint(add(1, 2))",
        {"language": "python", "mode": "completion", "prompt": "def add(a, b):\n"},
        "    return a + b\n\n\nprint(add(1, 2))",
        OK,
        "continuation",
    ),
    (
        "completion-cut-at-fence",
        "    return a + b\n```\n\nThis function adds two numbers.",
        {"language": "python", "mode": "completion", "prompt": "def add(a, b):\n"},
        "    return a + b\n",
        OK,
        "continuation:cut-at-fence",
    ),
    (
        "completion-without-prompt",
        "x = 1\n",
        {"language": "python", "mode": "completion"},
        "x = 1\n",
        OK,
        "continuation",
    ),
    (
        "completion-prompt-echo-removed",
        "def add(a, b):\n    return a + b\n",
        {"language": "python", "mode": "completion", "prompt": "def add(a, b):\n"},
        "    return a + b\n",
        OK,
        "continuation",
    ),
    (
        "completion-answered-chat-style-is-standalone",
        f"\n```python\n{PY_FN}```\n",
        {"language": "python", "mode": "completion", "prompt": "def add(a, b):\n"},
        PY_FN,
        OK,
        "fenced:first-matching-language",
    ),
    (
        "completion-c-continuation-checked-with-prompt",
        "    return a + b;\n}\n",
        {"language": "c", "mode": "completion", "prompt": "int add(int a, int b) {\n"},
        "    return a + b;\n}\n",
        OK,
        "continuation",
    ),
    (
        "c-brackets-in-strings-and-comments-ignored",
        "```c\nvoid f(void) {\n    puts(\"}}((\");  /* { */\n    char c = '{'; // ]\n}\n```",
        {"language": "c"},
        "void f(void) {\n    puts(\"}}((\");  /* { */\n    char c = '{'; // ]\n}\n",
        OK,
        "fenced:first-matching-language",
    ),
]


@pytest.mark.parametrize(
    ("output", "kwargs", "code", "status", "rule"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_shapes(
    output: str, kwargs: dict[str, Any], code: str, status: OutputClass, rule: str
) -> None:
    result = extract_code(output, **kwargs)
    assert result.code == code
    assert result.status is status
    assert result.rule == rule
    if status is OK:
        assert result.detail in ("", "prompt echo removed")


@pytest.mark.parametrize("output", ["", "   \n\t\n"])
@pytest.mark.parametrize("mode", ["chat", "completion"])
def test_empty_is_no_code(output: str, mode: Any) -> None:
    assert extract_code(output, language="python", mode=mode) == Extraction(
        "", OutputClass.no_code, "empty", "output is empty or whitespace"
    )


@pytest.mark.parametrize(
    "output",
    [
        "I'm sorry, but I can't help with that.",
        "I’m sorry, but I cannot provide code that bypasses authentication.",
        "I cannot assist with writing malware.",
        "I can't help with creating exploits.\n\nIf you want, I can explain secure coding.",
        "As an AI language model, I cannot write this.",
        "I must decline this request.",
        "I'm unable to help with that request.",
    ],
)
def test_refusals(output: str) -> None:
    result = extract_code(output, language="c")
    assert (result.code, result.status) == ("", OutputClass.refusal)


def test_refusal_in_completion_mode() -> None:
    result = extract_code(
        "I'm sorry, but I can't complete this code.\n",
        language="python",
        mode="completion",
        prompt="def exploit():\n",
    )
    assert (result.code, result.status, result.rule) == ("", OutputClass.refusal, "continuation")


def test_prose_without_refusal_is_no_code_not_refusal() -> None:
    result = extract_code("Here is an explanation of the bug. It reads past the end.", language="c")
    assert (result.code, result.status) == ("", OutputClass.no_code)


def test_python_unparsable_detail_has_message_and_line() -> None:
    result = extract_code("```python\nx = 1\ndef f(:\n    pass\n```", language="python")
    assert result.status is OutputClass.unparsable
    assert result.code == "x = 1\ndef f(:\n    pass\n"
    assert result.detail.startswith("SyntaxError: ")
    assert result.detail.endswith("(line 2)")


def test_closed_block_that_fails_is_unparsable_even_with_length() -> None:
    # the model closed the block, so the code was complete: length did not cut it
    output = "```python\ndef f(:\n```\nMore text that was cut off by the token lim"
    result = extract_code(output, language="python", finish_reason="length")
    assert (result.code, result.status) == ("def f(:\n", OutputClass.unparsable)


def test_unclosed_fence_without_length_that_fails_is_unparsable() -> None:
    result = extract_code("```python\ndef f(x):\n    return (x +", language="python")
    assert (result.status, result.rule) == (OutputClass.unparsable, "unclosed-fence")
    assert result.code == "def f(x):\n    return (x +\n"


def test_completion_python_checked_as_prompt_plus_code() -> None:
    prompt = "def f(x):\n"
    # alone this is an indentation error; after the prompt it is a valid body
    ok = extract_code("    return x\n", language="python", mode="completion", prompt=prompt)
    assert ok.status is OK
    bad = extract_code("    return (x +\n", language="python", mode="completion", prompt=prompt)
    assert bad.status is OutputClass.unparsable
    assert bad.code == "    return (x +\n"
    assert bad.detail.startswith("SyntaxError: ") and "(line 2)" in bad.detail
    cut = extract_code(
        "    return (x +",
        language="python",
        mode="completion",
        prompt=prompt,
        finish_reason="length",
    )
    assert (cut.code, cut.status) == ("    return (x +", OutputClass.truncated)


def test_completion_cut_at_fence_is_not_truncated() -> None:
    result = extract_code(
        "    return (x +\n```\nexplanation",
        language="python",
        mode="completion",
        prompt="def f(x):\n",
        finish_reason="length",
    )
    assert (result.status, result.rule) == (OutputClass.unparsable, "continuation:cut-at-fence")


def test_completion_only_echo_is_no_code() -> None:
    prompt = "def f(x):\n"
    result = extract_code(prompt, language="python", mode="completion", prompt=prompt)
    assert (result.code, result.status) == ("", OutputClass.no_code)


@pytest.mark.parametrize(
    ("finish_reason", "status"),
    [("length", OutputClass.truncated), (None, OutputClass.unparsable)],
)
def test_c_unbalanced_braces(finish_reason: str | None, status: OutputClass) -> None:
    output = "int main(void) {\n    if (x) {\n        return 1;\n"
    result = extract_code(output, language="c", finish_reason=finish_reason)
    assert (result.code, result.status) == (output, status)
    assert result.detail == "unclosed '{' from line 2"


def test_c_mismatched_bracket_detail() -> None:
    result = extract_code("```cpp\nint f() {\n    return g(1];\n}\n```", language="cpp")
    assert result.status is OutputClass.unparsable
    assert result.detail == "']' at line 2 does not close '(' from line 2"


def test_rust_lifetimes_are_not_char_literals() -> None:
    code = "fn f<'a>(x: &'a str) -> &'a str {\n    x\n}\n"
    assert extract_code(f"```rust\n{code}```", language="rust").status is OK


def test_only_empty_blocks() -> None:
    result = extract_code("```python\n```\n", language="python")
    assert (result.code, result.status, result.rule) == ("", OutputClass.no_code, "fenced:empty")
    cut = extract_code("Here it is:\n```python\n", language="python", finish_reason="length")
    assert (cut.code, cut.status) == ("", OutputClass.truncated)


def test_lone_word_is_not_code() -> None:
    assert extract_code("Hello", language="python").status is OutputClass.no_code


def test_inline_triple_backticks_are_not_fences() -> None:
    output = "Use ```x``` style.\nx = 1\n"
    result = extract_code(output, language="python")
    assert (result.code, result.status) == ("x = 1\n", OK)


def test_bad_mode_rejected() -> None:
    with pytest.raises(ValueError, match="mode"):
        extract_code("x", language="python", mode="edit")  # type: ignore[arg-type]


def test_output_class_values_and_aliases() -> None:
    assert [c.value for c in OutputClass] == [
        "ok",
        "no_code",
        "unparsable",
        "truncated",
        "refusal",
    ]
    assert OutputClass.OK is OutputClass.ok
    assert OutputClass("refusal") is OutputClass.refusal
    assert str(OutputClass.no_code) == "no_code"
    assert OutputClass.ok == "ok"


def test_canonical_language() -> None:
    assert canonical_language(" Python3 ") == "python"
    assert canonical_language("C++") == "cpp"
    assert canonical_language("golang") == "go"
    assert canonical_language("cobol") == "cobol"


def test_extraction_is_frozen() -> None:
    result = extract_code("x = 1", language="python")
    with pytest.raises(AttributeError):
        result.code = "y"  # type: ignore[misc]


#: Valid Rust (``rustc --edition 2021 --crate-type lib --emit=metadata`` compiles it) that a
#: C-style bracket scan calls unbalanced: char and byte literals holding brackets and quotes,
#: raw strings, a string spanning lines, nested block comments.
RUST_VALID = r"""/* outer /* nested ( */ still a comment */
pub struct Token<'a> {
    pub text: &'a str,
}

pub fn classify(c: char, b: u8) -> &'static str {
    match c {
        '{' | '(' | '[' => "open",
        '}' | ')' | ']' => "close",
        '\'' | '"' => "quote",
        '\u{7B}' => "brace",
        _ if b == b'[' => "byte",
        _ => "other",
    }
}

pub fn patterns<'a>(t: &Token<'a>) -> (&'a str, &'static str, &'static str) {
    let raw = r"\d{3}(";
    let hashed = r#"{"key": "]"#;
    let multi = "first line {
second line )";
    let _ = (raw, hashed);
    (t.text, multi, br"[".len().to_string().leak())
}
"""
#: Valid C++17 (``g++ -fsyntax-only``): a raw string holding an unbalanced parenthesis
CPP_RAW_STRING = """#include <cstring>
const char *kSql = R"sql(
SELECT name FROM users WHERE (id = ?
)sql";
int opens(const char *s) { return std::strchr(s, '(') != nullptr; }
"""


@pytest.mark.parametrize(("code", "language"), [(RUST_VALID, "rust"), (CPP_RAW_STRING, "cpp")])
def test_valid_literals_are_not_unbalanced_brackets(code: str, language: str) -> None:
    result = extract_code(f"Here it is:\n```{language}\n{code}```\n", language=language)
    assert (result.status, result.detail) == (OK, "")


@pytest.mark.parametrize(
    ("code", "detail"),
    [
        ("fn f() { let x = (1;\n}\n", "'}' at line 2 does not close '(' from line 1"),
        ("fn f() -> char { '{' \n", "unclosed '{' from line 1"),
        ("/* a /* b */\nfn f() {}\n", "unterminated block comment starting at line 1"),
    ],
)
def test_broken_rust_is_still_unparsable(code: str, detail: str) -> None:
    result = extract_code(f"```rust\n{code}```", language="rust")
    assert (result.status, result.detail) == (OutputClass.unparsable, detail)


#: prompt ids of the CyberSecEval instruct Rust rows whose ``origin_code`` rustc finds
#: delimiter-balanced (no "unclosed/unexpected/mismatched delimiter" error); the other 187 are
#: fragments cut mid-item, and rustc reports a delimiter error (or, for one, a stray quote)
RUSTC_BALANCED = {1204, 1210, 1234, 1235, 1248, 1255, 1274, 1277, 1300, 1319, 1333, 1344, 1355,
                  1360, 1361, 1368, 1375}  # fmt: skip


def test_real_rust_rows_are_classed_as_rustc_reads_them(shared_data: Any) -> None:
    """On real CyberSecEval Rust snippets (the code behind the "2 of 4 unparsable" report),
    ``unparsable`` is right: those rows are fragments, and rustc says so too."""
    import json

    rows = json.loads((shared_data / "cyberseceval" / "instruct.json").read_text())
    rust = [r for r in rows if r["language"] == "rust"]
    ok = {
        r["prompt_id"] for r in rust if extract_code(r["origin_code"], language="rust").status is OK
    }
    assert len(rust) == 204 and ok == RUSTC_BALANCED
