"""Conformance with the official CodeEval-Pro pipeline: every shared case, fed through
``vul2safe eval --samples`` with default settings, gets the official verdict (raw and
sanitized). The cases and the verdicts of the official code: ../shared/conformance/."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CASES = ROOT.parent / "shared" / "conformance" / "codeeval-pro" / "cases.jsonl"


@pytest.fixture(scope="module")
def cases() -> list[dict[str, Any]]:
    if not CASES.is_file():
        pytest.fail(f"conformance cases not found at {CASES}; they live in ../shared/conformance")
    return [json.loads(line) for line in CASES.read_text().splitlines() if line.strip()]


def _score(samples: Path, benchmark: str, data_dir: Path, out: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "vul2safe", "eval", "--samples", str(samples), "-b", benchmark,
         "--data-dir", str(data_dir), "-o", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
        env={**os.environ, "COLUMNS": "120"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text())


@pytest.mark.usefixtures("require_bwrap")
def test_every_case_gets_the_official_verdict(
    cases: list[dict[str, Any]], shared_data: Path, tmp_path: Path
) -> None:
    by_benchmark: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for case in cases:
        by_benchmark[case["benchmark"]].append(case)
    assert set(by_benchmark) == {"humaneval-pro", "mbpp-pro"}
    disagreements = []
    for benchmark, rows in by_benchmark.items():
        samples = tmp_path / f"{benchmark}.jsonl"
        samples.write_text("".join(
            json.dumps({"task_id": r["task_id"], r["field"]: r["output"],
                        "finish_reason": r["finish_reason"]}) + "\n"
            for r in rows
        ))  # fmt: skip
        result = _score(samples, benchmark, shared_data / "codeeval-pro", tmp_path / "r.json")
        assert result["protocol"]["name"] == "official"
        assert result["pass_at_k_label"] == "raw extraction"
        by_line = {s["line"]: s for s in result["samples"]}
        assert sorted(by_line) == list(range(1, len(rows) + 1))
        for line, case in enumerate(rows, start=1):
            ours = by_line[line]
            if ours["passed"] != case["official_passed"]:
                disagreements.append((benchmark, case["task_id"], case["variant"], "raw",
                                      ours["outcome"], ours["detail"]))  # fmt: skip
            if ours["sanitized_passed"] != case["official_sanitized_passed"]:
                disagreements.append((benchmark, case["task_id"], case["variant"], "sanitized",
                                      ours["sanitized_outcome"], ours["detail"]))  # fmt: skip
        # the headline numbers: raw and sanitized, each from its own verdicts
        n = {r["task_id"]: 0 for r in rows}
        raw = dict.fromkeys(n, 0)
        cleaned = dict.fromkeys(n, 0)
        for r in rows:
            n[r["task_id"]] += 1
            raw[r["task_id"]] += r["official_passed"]
            cleaned[r["task_id"]] += r["official_sanitized_passed"]
        expect_raw = sum(raw[t] / n[t] for t in n) / len(n)
        expect_clean = sum(cleaned[t] / n[t] for t in n) / len(n)
        assert result["pass_at_k"]["pass@1"] == pytest.approx(expect_raw)
        assert result["pass_at_k_sanitized"]["pass@1"] == pytest.approx(expect_clean)
        assert result["pass_at_k_higher_of_raw_and_sanitized"]["pass@1"] == pytest.approx(
            max(expect_raw, expect_clean)
        )
    assert disagreements == [], f"{len(disagreements)} disagreements: {disagreements[:20]}"


def test_bad_input_is_one_line(shared_data: Path, tmp_path: Path) -> None:
    """An unknown protocol, a line with neither completion nor solution, an unknown task id:
    one line each, exit code 2, no traceback."""
    data = str(shared_data / "codeeval-pro")
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"task_id": 0, "completion": "    return 1\n"}) + "\n")
    neither = tmp_path / "neither.jsonl"
    neither.write_text(json.dumps({"task_id": 0, "completion": "x"}) + "\n"
                       + json.dumps({"task_id": 0, "answer": "x"}) + "\n")  # fmt: skip
    unknown = tmp_path / "unknown.jsonl"
    unknown.write_text(json.dumps({"task_id": 999, "completion": "x"}) + "\n")
    cases = [
        (good, ["--protocol", "offical"], "unknown protocol 'offical'; choose one of: official"),
        (neither, [], "neither.jsonl:2: missing field 'completion' (or 'solution')"),
        (unknown, [], "unknown task id '999' (line 1) for benchmark humaneval-pro"),
    ]
    for samples, extra, message in cases:
        proc = subprocess.run(
            [sys.executable, "-m", "vul2safe", "eval", "--samples", str(samples), "-b",
             "humaneval-pro", "--data-dir", data, *extra],
            capture_output=True, text=True, cwd=ROOT, timeout=120,
            env={**os.environ, "COLUMNS": "200"},
        )  # fmt: skip
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert proc.returncode == 2, proc.stderr
        assert len(lines) == 1 and message in lines[0], proc.stderr
        assert "Traceback" not in proc.stderr
