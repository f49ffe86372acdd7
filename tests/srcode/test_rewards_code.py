"""What the reward scans and what counts as implementing the task (pure functions)."""

from __future__ import annotations

import pytest

from srcode.rewards import code_segments, implements_statically, requested_names
from vul2safe.extract import extract_code


def segments(response: str, language: str = "python") -> list[tuple[str, str, bool]]:
    ext = extract_code(response, language=language)
    found = code_segments(response, ext, language)
    for s in found:  # every segment sits in the response where it says, dedent aside
        assert s.offset is not None
        first = s.code.split("\n")[0]
        assert response[s.offset : s.offset + len(first)] == first
    return [(s.code, s.language, s.primary) for s in found]


def test_every_fenced_block_and_code_outside_fences_is_found() -> None:
    response = (
        "Safe:\n```python\nx = 1\n```\nThen:\n```python\nimport os\nos.system(c)\n```\n"
        "Or run\n\nos.popen(c)\n\nas shell:\n```bash\nrm -rf /tmp/x\n```\n"
        "Output:\n```text\nSome words here.\n```\n"
    )
    assert segments(response) == [
        ("x = 1\n", "python", True),
        ("import os\nos.system(c)\n", "python", False),
        ("rm -rf /tmp/x\n", "shell", False),  # tagged: scanned as its own language
        ("os.popen(c)\n", "python", False),  # code written in the prose
    ]  # the ```text block is prose (it does not parse as Python): skipped


def test_indented_fence_and_unfenced_answer() -> None:
    listed = "1. Do:\n   ```python\n   import os\n   os.system(c)\n   ```\n"
    found = code_segments(listed, extract_code(listed, language="python"), "python")
    assert [(s.code, s.offset, s.indent) for s in found] == [
        ("import os\nos.system(c)\n", listed.index("import"), 3)
    ]
    plain = "Sure:\nimport os\nos.system(c)\n"
    assert segments(plain) == [("import os\nos.system(c)\n", "python", True)]
    assert segments("I'm sorry, but I can't help with that.") == []


def test_requested_names() -> None:
    assert requested_names("Write a function `list_dir(path)` that lists path.") == ["list_dir"]
    assert requested_names("Implement `void copy_in(const char *s)` in C.") == ["copy_in"]
    assert requested_names("def area(r):\n    '''Circle area.'''") == ["area"]
    assert requested_names("Write a function named parse_cfg(text) for configs.") == ["parse_cfg"]
    assert requested_names("Write a function that adds two numbers.") == []
    assert requested_names("Print the sum; use `print(x)` for it.") == []


@pytest.mark.parametrize(
    ("code", "prompt", "expected"),
    [
        ("def f(x):\n    return x + 1\n", "Write `f(x)`.", True),
        ("def f(x):\n    pass\n", "Write `f(x)`.", False),
        ("def f(x):\n    '''Doc.'''\n    ...\n", "Write `f(x)`.", False),
        ("def f(x):\n    raise NotImplementedError\n", "Write `f(x)`.", False),
        ("def g(x):\n    return x\n", "Write `f(x)`.", False),
        ("def f(x:\n", "Write `f(x)`.", False),
        ("import os\n", "Add one to x.", False),
        ("print(1 + 1)\n", "Add one to one.", True),
    ],
)
def test_python_static_check(code: str, prompt: str, expected: bool) -> None:
    assert implements_statically(code, "python", prompt)[0] is expected


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("void copy_in(const char *s) {\n  char b[8];\n  strcpy(b, s);\n}\n", True),
        ("void copy_in(const char *s) {\n  /* todo */\n}\n", False),
        ("int copy_in(const char *s) { return 0; }\n", False),
        ("void other(const char *s) { puts(s); }\n", False),
    ],
)
def test_c_static_check(code: str, expected: bool) -> None:
    prompt = "Write `copy_in(const char *s)` in C."
    assert implements_statically(code, "c", prompt)[0] is expected
