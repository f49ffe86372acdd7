"""The official cut, sanitize and labelling rules on their own (no sandbox needed)."""

from __future__ import annotations

import pytest

from vul2safe.errors import UsageError
from vul2safe.protocols import OFFICIAL, STRICT, get_protocol, label_field, official_cut, sanitize


def test_official_cut_rules() -> None:
    # completion: up to the first three backticks anywhere (even inside a string)
    assert official_cut("    return 1\n```\nprose", "completion") == "    return 1\n"
    assert official_cut("    s = '```'\n    return s\n", "completion") == "    s = '"
    assert official_cut("    return 1\n", "completion") == "    return 1\n"
    # solution: after the first ```python, up to the next ```
    answer = "Here:\n```python\ndef f():\n    return 1\n```\nand ```python\nx\n```"
    assert official_cut(answer, "solution") == "\ndef f():\n    return 1\n"
    assert official_cut("```py\ndef f(): pass\n```", "solution") == ""  # no ```python
    assert official_cut("def f():\n    pass\n", "solution") == "def f():\n    pass\n"
    assert official_cut("```Python\nx = 1\n```", "solution") == ""  # case-sensitive
    assert official_cut("x\n\tif y:\n\t\tpass", "completion") == "x\n\tif y:\n\t\tpass"  # tabs


def test_sanitize_follows_santize_py_quirks() -> None:
    assert sanitize("a\nif __name__ == '__main__':\n    f()\n") == "a\n"
    assert sanitize("a\n# Test\nassert 0\n") == "a\n"
    assert sanitize("a\n# Example usage\nf()\n") == "a\n"
    assert sanitize("a\n# Example\nf()\n") == "a\n# Example\nf()\n"  # splits on "# Example "
    assert sanitize("a\n# Tests\nif __name__ == 'x':\n") == "a\n# Tests\n"  # __name__ first
    assert sanitize("plain\n") == "plain\n"


def test_label_field_detects_whole_answers() -> None:
    # continuations of "```python\n<raw problem>\n"
    assert label_field("    return 1\n```\nThis works.", "completion") == "completion"
    assert label_field("    return 1\n", "completion") == "completion"
    # a server that ignored the assistant prefill answers from scratch
    assert label_field("Here is the code:\n```python\ndef f(): ...\n```", "completion") == (
        "solution"
    )
    assert label_field("```python\ndef f(): ...\n```", "completion") == "solution"
    assert label_field("```\ndef f(): ...\n```", "completion") == "solution"
    assert label_field("anything", "solution") == "solution"


def test_protocol_names() -> None:
    assert get_protocol(None) is OFFICIAL
    assert get_protocol("strict") is STRICT
    assert OFFICIAL.timeout_s == 3.0 and OFFICIAL.run_mode == "exec"
    with pytest.raises(UsageError, match="unknown protocol 'x'; choose one of: official, strict"):
        get_protocol("x")
