"""Input collection: every bad input becomes an error record or a one-line usage error."""

from __future__ import annotations

from pathlib import Path

import pytest

from vul2safe.errors import UsageError
from vul2safe.inputs import collect_inputs


def test_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="path not found"):
        collect_inputs([tmp_path / "nope.c"])


def test_bad_files_become_error_records(tmp_path: Path) -> None:
    (tmp_path / "ok.py").write_text("print('hi')\n")
    (tmp_path / "empty.c").write_text("")
    (tmp_path / "binary.c").write_bytes(b"\x7fELF\x00\x00\x01")
    (tmp_path / "latin1.py").write_bytes("s = 'caf\xe9'\n".encode("latin-1"))
    (tmp_path / "notes.txt").write_text("not code")
    collected = collect_inputs([tmp_path])
    errors = {Path(r.sample.path).name: r.error for r in collected.samples}
    assert errors["ok.py"] is None
    assert errors["empty.c"] == "empty file"
    assert errors["binary.c"] == "binary file (contains NUL bytes)"
    assert errors["latin1.py"].startswith("not UTF-8 (invalid byte at offset 8)")
    assert collected.skipped == 1  # notes.txt: counted, not silently dropped


def test_jsonl_bad_lines_are_records_and_good_lines_survive(tmp_path: Path) -> None:
    path = tmp_path / "samples.jsonl"
    path.write_text(
        '{"id": "a", "code": "x = 1\\n", "language": "python"}\n'
        "{not json\n"
        '{"id": "b", "language": "c"}\n'
        '["a list"]\n'
        '{"id": "c", "code": "   ", "language": "c"}\n'
        '{"id": "d", "code": "int x;", "language": "C++"}\n'
    )
    results = collect_inputs([path]).samples
    by_id = {r.sample.id: r for r in results}
    assert by_id["a"].error is None and by_id["a"].sample.language == "python"
    assert by_id[f"{path}:2"].error.startswith("malformed JSON")
    assert by_id[f"{path}:3"].error == "missing field(s) code"
    assert by_id[f"{path}:4"].error == "expected a JSON object per line"
    assert by_id["c"].error == "empty code"
    assert by_id["d"].sample.language == "cpp"


def test_forced_language_applies_to_unknown_suffixes(tmp_path: Path) -> None:
    (tmp_path / "snippet.txt").write_text("int main(void) { return 0; }\n")
    collected = collect_inputs([tmp_path / "snippet.txt"], language="c")
    assert collected.samples[0].sample.language == "c"
    assert collected.samples[0].error is None
