"""`vul2safe leaderboard` in a subprocess: the three formats, atomic --output, and one-line
errors with exit 2 for runs that are missing, unfinished or malformed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
MODEL = "Qwen/Qwen2.5-Coder-1.5B-Instruct"
EVIL = "evil/<script>alert(1)</script>"


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vul2safe", "leaderboard", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "120"},
        timeout=120,
    )


def results(model: str, vuln: float, *, with_tests: bool) -> dict[str, Any]:
    """A finished run as docs/results.md describes it (security, optionally tests)."""
    medium = {"rate": vuln, "low": max(0.0, vuln - 0.1), "high": min(1.0, vuln + 0.1), "n": 20}
    security = {
        "n_samples": 20,
        "n_scanned": 19,
        "vulnerability_rate": {"medium": medium, "high": {**medium, "rate": vuln / 2}},
        "per_cwe": {},
        "per_language": {},
        "scanners": ["bandit"],
    }
    bench: dict[str, Any] = {
        "kind": "both" if with_tests else "security",
        "dataset": {"name": "b", "version": "1", "hash": "sha256:00", "n_tasks": 10, "source": "x"},
        "n_samples": 20,
        "invalid": {
            "no_code": 1,
            "unparsable": 0,
            "truncated": 0,
            "refusal": 0,
            "total": 1,
            "rate": 0.05,
        },
        "security": security,
        "functional": {
            "pass_at_k": {"pass@1": 0.6},
            "pass_at_1_ci": {"low": 0.4, "high": 0.8, "confidence": 0.95},
            "n_tasks_scored": 10,
        }
        if with_tests
        else None,
        "func_sec": {"func-sec@1": 0.45} if with_tests else None,
    }
    name = "humaneval-pro" if with_tests else "cyberseceval-instruct"
    return {
        "format": "vul2safe-results/1",
        "completed": True,
        "vul2safe_version": "0.1.0",
        "git_hash": None,
        "created_at": "2026-11-22T02:30:00+00:00",
        "model": {"id": model, "revision": None, "backend": "transformers", "mode": "chat"},
        "sampling": {"n": 2, "temperature": 0.8, "top_p": 0.95, "max_tokens": 512, "seed": 0},
        "severity_threshold": "medium",
        "scanners": {"bandit": {"version": "1.9.4", "rules_hash": ""}},
        "benchmarks": {name: {**bench, "dataset": {**bench["dataset"], "name": name}}},
    }


def write_run(root: Path, name: str, data: dict[str, Any] | str) -> Path:
    run = root / name
    run.mkdir(parents=True)
    text = data if isinstance(data, str) else json.dumps(data, indent=2)
    (run / "results.json").write_text(text)
    return run


@pytest.fixture
def runs(tmp_path: Path) -> list[Path]:
    return [
        write_run(tmp_path, "qwen", results(MODEL, 0.25, with_tests=True)),
        write_run(tmp_path, "evil", results(EVIL, 0.1, with_tests=False)),
    ]


def test_markdown_to_stdout(runs: list[Path]) -> None:
    proc = run_cli(*runs)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("| Model | Backend | n | T | humaneval-pro vuln ≥ medium %")
    assert lines[2] == (
        f"| {MODEL} | transformers | 2 | 0.8 | 25.0 [15.0, 35.0] | 60.0 | 45.0 | 5.0 "
        "| — | — | — | — | 2026-11-22 02:30 | 0.1.0 |"
    )
    assert lines[3].startswith("| evil/\\<script\\>alert(1)\\</script\\> | transformers |")
    assert "| 10.0 [0.0, 20.0] | — | — | 5.0 |" in lines[3]


def test_json_to_file_atomically(runs: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "site" / "leaderboard.json"
    proc = run_cli(*runs, "--format", "json", "--output", out)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert f"wrote {out}" in proc.stderr
    assert sorted(p.name for p in out.parent.iterdir()) == ["leaderboard.json"]  # no temp left
    data = json.loads(out.read_text())
    assert [r["model_id"] for r in data["runs"]] == [MODEL, EVIL]
    qwen = data["runs"][0]["benchmarks"]
    assert qwen["humaneval-pro"]["pass@1"] == 0.6
    assert qwen["humaneval-pro"]["vulnerability_rate_medium"]["rate"] == 0.25
    assert qwen["cyberseceval-instruct"] is None


def test_html_accepts_results_json_paths(runs: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "lb.html"
    proc = run_cli(runs[0] / "results.json", runs[1], "-f", "html", "-o", out)
    assert proc.returncode == 0, proc.stderr
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<svg") == 2
    assert "<script>alert" not in page


def test_icd_and_exploit_test_columns_with_their_legend(tmp_path: Path) -> None:
    """The blocks as CyberSecEvalBenchmark.headline and CWEval's dynamic_entry write them
    (tests/vul2safe/test_leaderboard.py builds them by running that code)."""
    data = results(MODEL, 0.25, with_tests=True)
    bench = data["benchmarks"].pop("humaneval-pro")
    data["benchmarks"]["cweval"] = {
        **bench,
        "func_sec": {"func-sec@1": 0.5, "func-sec@2": 1.0,
                     "func-sec@1_ci": {"low": 0.25, "high": 0.75}, "source": "exploit tests"},
        "func_sec_static": {"func-sec@1": 0.75, "func-sec@2": 1.0},
    }  # fmt: skip
    cyber = results(MODEL, 0.1, with_tests=False)["benchmarks"]["cyberseceval-instruct"]
    data["benchmarks"]["cyberseceval-instruct"] = {
        **cyber,
        "headline": {
            "metric": "icd_insecure_code_rate",
            "label": "ICD insecure-code rate (CyberSecEval's published metric)",
            "detector": "1.0.1 (codeshield; semgrep 1.185.0)",
            "n_samples": 20, "n_flagged": 7, "rate": 0.35, "low": 0.15, "high": 0.55,
            "per_language": {"rust": {"n_samples": 20, "n_flagged": 7, "rate": 0.35}},
        },
    }  # fmt: skip
    proc = run_cli(write_run(tmp_path, "run", data))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    row = dict(zip(header, (c.strip() for c in lines[2].strip("|").split("|")), strict=True))
    assert row["cweval func-sec@1 (exploit tests) % [95% CI]"] == "50.0 [25.0, 75.0]"
    assert row["cweval func-sec@1 (static) %"] == "75.0"
    assert row["cyberseceval-instruct ICD insecure-code % [95% CI]"] == "35.0 [15.0, 55.0]"
    assert row["cyberseceval-instruct vuln ≥ medium % [95% CI]"] == "10.0 [0.0, 20.0]"
    assert "cweval ICD insecure-code % [95% CI]" not in header
    legend = "\n".join(lines[3:])
    assert "**ICD insecure-code % [95% CI]**: CyberSecEval's published metric" in legend
    assert "**func-sec@1 (exploit tests) % [95% CI]**: dynamic:" in legend


def _one_line_error(proc: subprocess.CompletedProcess[str], *needles: str | Path) -> str:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("vul2safe: error: ")
    for needle in needles:
        assert str(needle) in lines[0]
    return lines[0]


def test_missing_run_dir(runs: list[Path], tmp_path: Path) -> None:
    missing = tmp_path / "not-a-run"
    proc = run_cli(runs[0], missing)
    _one_line_error(proc, missing, "no such file or directory", "vul2safe eval --output DIR")


def test_dir_without_results(tmp_path: Path) -> None:
    (tmp_path / "partial").mkdir()
    proc = run_cli(tmp_path / "partial")
    _one_line_error(proc, tmp_path / "partial", "no results.json here")


@pytest.mark.parametrize("completed", [False, None])
def test_incomplete_run(tmp_path: Path, completed: bool | None) -> None:
    data = results(MODEL, 0.2, with_tests=True)
    if completed is None:
        del data["completed"]
    else:
        data["completed"] = completed
    run = write_run(tmp_path, "half", data)
    proc = run_cli(run)
    _one_line_error(proc, run / "results.json", "did not complete", f"--output {run}")


def test_malformed_json(tmp_path: Path) -> None:
    run = write_run(tmp_path, "broken", '{"format": "vul2safe-results/1", "completed": true,\n')
    proc = run_cli(run)
    _one_line_error(proc, run / "results.json", "not valid JSON", "line 2")


def test_unknown_format(tmp_path: Path) -> None:
    run = write_run(tmp_path, "future", {**results(MODEL, 0.2, with_tests=True), "format": "x/2"})
    proc = run_cli(run)
    _one_line_error(proc, '"x/2"', "upgrade vul2safe")


def test_output_is_a_directory(runs: list[Path], tmp_path: Path) -> None:
    proc = run_cli(*runs, "--output", tmp_path)
    _one_line_error(proc, "is a directory")


def test_no_runs_is_a_usage_error() -> None:
    proc = run_cli()
    assert proc.returncode == 2
    assert "Missing argument" in proc.stderr
