"""`vul2safe eval --samples` end to end in a subprocess: real data, real sandbox, real exit
codes, and one-line errors for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
needs_bwrap = pytest.mark.usefixtures("require_bwrap")


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vul2safe", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "120", **(env or {})},
        timeout=300,
    )


def _write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.fixture
def data_dir(shared_data: Path) -> Path:
    return shared_data / "codeeval-pro"


@pytest.fixture
def records(data_dir: Path) -> list[dict[str, Any]]:
    return json.loads((data_dir / "mbpp_pro.json").read_text())[:4]


def _new(record: dict[str, Any]) -> str:
    return record["new_problem"] + record["new_solution"]


def _reference(record: dict[str, Any]) -> str:
    return record["raw_solution"] + record["new_problem"] + record["new_solution"]


@needs_bwrap
def test_eval_samples_end_to_end(
    tmp_path: Path, data_dir: Path, records: list[dict[str, Any]]
) -> None:
    samples = _write_jsonl(
        tmp_path / "samples.jsonl",
        [
            {"task_id": 0, "completion": _reference(records[0])},  # correct
            {"task_id": "MbppPro/0", "completion": "  return ()\n" + _new(records[0])},  # wrong
            {"task_id": 1, "completion": _reference(records[1])},  # correct
            {"task_id": 1, "completion": "  return (((\n"},  # unparsable
            {"task_id": 2, "solution": "I would first think about the problem carefully."},
            {"task_id": 2, "completion": ""},  # no code
        ],
    )
    out = tmp_path / "res" / "result.json"
    proc = run_cli(
        "eval", "--samples", str(samples), "--benchmark", "mbpp-pro",
        "--data-dir", str(data_dir), "--jobs", "2", "--timeout", "5",
        "--limit", "4", "--output", str(out), "--protocol", "strict",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["benchmark"]["name"] == "mbpp-pro"
    assert result["benchmark"]["dataset_hash"].startswith("sha256:")
    assert result["benchmark"]["dataset_tasks"] == 378
    assert result["benchmark"]["dataset_source"].endswith("mbpp_pro.json")
    assert result["benchmark"]["samples_file"] == str(samples.resolve())
    assert result["execution"]["sandbox"] == "bubblewrap"
    assert result["execution"]["limits"]["timeout_s"] == 5.0
    assert result["execution"]["jobs"] == 2
    assert result["n_tasks"] == 4 and result["n_tasks_scored"] == 3
    assert result["n_tasks_missing"] == 1 and result["missing_task_ids"] == ["MbppPro/3"]
    assert result["pass_at_k"]["pass@1"] == pytest.approx((0.5 + 0.5 + 0.0) / 3)
    assert set(result["pass_at_k"]) == {"pass@1", "pass@2"}
    assert result["invalid_outputs"] == {
        "no_code": 2, "unparsable": 1, "truncated": 0, "refusal": 0
    }  # fmt: skip
    assert result["outcomes"]["passed"] == 2 and result["outcomes"]["failed"] == 1
    ci = result["pass_at_1_ci"]
    assert ci["low"] <= result["pass_at_k"]["pass@1"] <= ci["high"]
    assert result["vul2safe_version"] and result["created_at"]
    assert "pass@1" in proc.stdout and "33.3%" in proc.stdout
    assert f"wrote {out}" in proc.stderr
    assert [p.name for p in out.parent.iterdir()] == ["result.json"]


@needs_bwrap
def test_default_output_beside_the_samples(tmp_path: Path, data_dir: Path) -> None:
    samples = _write_jsonl(tmp_path / "gen.jsonl", [{"task_id": 5, "completion": "  pass\n"}])
    env = {"VUL2SAFE_DATA_DIR": str(data_dir)}
    proc = run_cli("eval", "--samples", str(samples), "-b", "humaneval-pro", env=env)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "gen.humaneval-pro.result.json").read_text())
    assert result["pass_at_k"] == {"pass@1": 0.0}
    assert result["n_tasks_missing"] == 163


def _one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("vul2safe: error: ")
    return lines[0]


def test_malformed_jsonl_is_one_line_with_its_number(tmp_path: Path, data_dir: Path) -> None:
    samples = _write_jsonl(
        tmp_path / "s.jsonl", [{"task_id": 0, "completion": "x"}, '{"task_id": 1, "compl']
    )
    out = tmp_path / "r.json"
    proc = run_cli(
        "eval", "--samples", str(samples), "-b", "mbpp-pro", "--data-dir", str(data_dir),
        "-o", str(out),
    )  # fmt: skip
    line = _one_error_line(proc)
    assert f"{samples}:2: invalid JSON" in line
    assert not out.exists()


def test_missing_field_is_one_line_with_its_number(tmp_path: Path, data_dir: Path) -> None:
    samples = _write_jsonl(tmp_path / "s.jsonl", ["", {"task_id": 0, "code": "x"}])
    proc = run_cli("eval", "--samples", str(samples), "-b", "mbpp-pro", "--data-dir", str(data_dir))
    assert f"{samples}:2: missing field 'completion'" in _one_error_line(proc)


def test_unknown_task_id_names_valid_ones(tmp_path: Path, data_dir: Path) -> None:
    samples = _write_jsonl(tmp_path / "s.jsonl", [{"task_id": "HumanEvalPro/0", "completion": ""}])
    proc = run_cli("eval", "--samples", str(samples), "-b", "mbpp-pro", "--data-dir", str(data_dir))
    line = _one_error_line(proc)
    assert "unknown task id 'HumanEvalPro/0' (line 1)" in line and "'MbppPro/0'" in line


def test_unknown_benchmark_gets_did_you_mean(tmp_path: Path) -> None:
    samples = _write_jsonl(tmp_path / "s.jsonl", [{"task_id": 0, "completion": ""}])
    proc = run_cli("eval", "--samples", str(samples), "-b", "humaneval-pr")
    assert "Did you mean: humaneval-pro" in _one_error_line(proc)


def test_missing_data_dir_says_how_to_fix_it(tmp_path: Path) -> None:
    samples = _write_jsonl(tmp_path / "s.jsonl", [{"task_id": 0, "completion": ""}])
    proc = run_cli(
        "eval", "--samples", str(samples), "-b", "humaneval-pro",
        "--data-dir", str(tmp_path / "nope"),
    )  # fmt: skip
    assert "pass --data-dir DIR holding humaneval_pro.json" in _one_error_line(proc)


@needs_bwrap
@pytest.mark.integration
def test_cweval_samples_summary_labels_func_sec_from_exploit_tests(
    tmp_path: Path, shared_data: Path
) -> None:
    """CWEval's func-sec@1 comes from its exploit tests, and the printed summary says so."""
    from vul2safe.plugins.benchmark.cweval import CWEval

    cweval = shared_data / "cweval"
    task = next(t for t in CWEval().load(cweval) if t.task_id == "py/cwe_078_0")
    samples = _write_jsonl(
        tmp_path / "s.jsonl",
        [
            {"task_id": task.task_id, "solution": task.reference},  # passes every test
            {"task_id": task.task_id, "solution": task.metadata["unsafe_reference"]},  # exploited
        ],
    )
    out = tmp_path / "r.json"
    proc = run_cli(
        "eval", "--samples", str(samples), "-b", "cweval", "--data-dir", str(cweval),
        "-o", str(out), "--scanner", "bandit", "--jobs", "2",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    dynamic = json.loads(out.read_text())["dynamic"]
    assert (dynamic["func@1"], dynamic["func-sec@1"]) == (1.0, 0.5)
    title, header = proc.stdout.splitlines()[0], proc.stdout.splitlines()[2]
    assert "(exploit tests)" in title and "func-sec@1" in header
    row = next(line for line in proc.stdout.splitlines() if "│ all " in line)
    assert [c.strip() for c in row.strip("│").split("│")] == [
        "all", "1", "100.0% [100.0%, 100.0%]", "50.0% [50.0%, 50.0%]",
    ]  # fmt: skip
