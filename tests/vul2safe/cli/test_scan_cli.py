"""`vul2safe scan` end to end: real scanners, real exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vul2safe", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "copy.c").write_text(
        "#include <string.h>\n"
        "void copy(char *input) {\n"
        "    char buf[16];\n"
        "    strcpy(buf, input);\n"
        "}\n"
    )
    (tmp_path / "run.py").write_text(
        "import subprocess\n\n\ndef run(cmd):\n    subprocess.call(cmd, shell=True)\n"
    )
    return tmp_path


def test_acceptance_reports_strcpy_and_shell_true_with_cwe_and_severity(project: Path) -> None:
    proc = run_cli("scan", str(project), "--format", "json")
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    by_file = {Path(r["path"]).name: r["findings"] for r in report["results"]}
    c_cwes = {c for f in by_file["copy.c"] for c in f["cwe"]}
    py = [f for f in by_file["run.py"] if f["start_line"] == 5]
    assert "CWE-120" in c_cwes
    assert any(f["severity"] in {"high", "medium"} for f in by_file["copy.c"])
    assert {"CWE-78"} <= {c for f in py for c in f["cwe"]}
    assert {f["scanner"] for f in py} >= {"bandit", "semgrep"}
    assert report["summary"]["flagged"] == 2 and report["summary"]["errored"] == 0
    for meta in report["scanners"].values():
        assert meta["version"]


def test_table_groups_by_file_and_prints_summary(project: Path) -> None:
    proc = run_cli("scan", str(project), "--scanner", "semgrep")
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert any(line.endswith("copy.c (c)") for line in lines)
    assert any("CWE-78" in line and "semgrep/" in line for line in lines)
    assert "2 inputs: 2 scanned, 0 clean, 2 flagged, 0 errored" in proc.stdout


def test_min_severity_and_fail_on(project: Path) -> None:
    proc = run_cli(
        "scan",
        str(project / "run.py"),
        "-s",
        "bandit",
        "--min-severity",
        "high",
        "--format",
        "jsonl",
    )
    findings = json.loads(proc.stdout.splitlines()[0])["findings"]
    assert findings and all(f["severity"] == "high" for f in findings)
    assert run_cli("scan", str(project), "--fail-on", "never").returncode == 0


def test_clean_file_exits_zero(tmp_path: Path) -> None:
    (tmp_path / "ok.py").write_text("def add(a, b):\n    return a + b\n")
    proc = run_cli("scan", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 inputs: 1 scanned, 1 clean, 0 flagged, 0 errored" in proc.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["scan", "/no/such/dir"], "path not found: /no/such/dir"),
        (["scan", ".", "--scanner", "semgrap"], "Did you mean: semgrep?"),
        (["scan", ".", "--min-severity", "severe"], "unknown severity 'severe'"),
    ],
)
def test_usage_errors_are_one_line_exit_2(args: list[str], message: str) -> None:
    proc = run_cli(*args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_scanner_whose_tool_is_missing_says_how_to_install(project: Path) -> None:
    proc = run_cli("scan", str(project), "--scanner", "bandit", env={"PATH": "/nonexistent"})
    # bandit is still importable as a module, so it runs through `python -m bandit`
    assert proc.returncode == 1, proc.stderr
    proc = run_cli("scan", str(project), "--scanner", "codeql", env={"PATH": "/usr/bin:/bin"})
    if proc.returncode != 2:
        pytest.fail("this test expects no `codeql` CLI on PATH")
    assert (
        "codeql" in proc.stderr.lower() and "install" in proc.stderr.lower()
    ) or "PATH" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_bad_inputs_are_counted_and_the_rest_is_scanned(project: Path) -> None:
    (project / "empty.py").write_text("")
    (project / "blob.c").write_bytes(b"\x00\x01\x02binary")
    (project / "latin.py").write_bytes(b"x = '\xe9'\n")
    (project / "broken.py").write_text("def f(:\n    pass\n")
    samples = project / "samples.jsonl"
    samples.write_text(
        '{"id": "s1", "code": "import pickle\\npickle.loads(data)\\n", "language": "python"}\n'
        "{oops\n"
    )
    proc = run_cli("scan", str(project), str(samples), "--format", "json")
    report = json.loads(proc.stdout)
    errors = {Path(r["path"]).name: r["errors"] for r in report["results"]}
    assert errors["empty.py"] == ["empty file"]
    assert errors["blob.c"] == ["binary file (contains NUL bytes)"]
    assert errors["latin.py"][0].startswith("not UTF-8")
    assert any(e.startswith("bandit:") for e in errors["broken.py"])
    assert any("malformed JSON" in e for name, errs in errors.items() for e in errs if ":2" in name)
    flagged = {Path(r["path"]).name for r in report["results"] if r["findings"]}
    assert {"copy.c", "run.py", "samples.jsonl#s1"} <= flagged
    summary = report["summary"]
    assert summary["inputs"] == 8
    assert summary["errored"] == 5
    assert proc.returncode == 1  # findings take precedence over per-file errors
    assert "8 inputs" in proc.stderr


def test_rescan_is_served_from_cache(project: Path, tmp_path: Path) -> None:
    env = {"VUL2SAFE_HOME": str(tmp_path / "home")}
    first = json.loads(run_cli("scan", str(project), "-f", "json", env=env).stdout)
    second = json.loads(run_cli("scan", str(project), "-f", "json", env=env).stdout)
    assert all(not m["cached"] for r in first["results"] for m in r["scanners"].values())
    assert all(m["cached"] for r in second["results"] for m in r["scanners"].values())
    assert first["results"][0]["findings"] == second["results"][0]["findings"]
    third = json.loads(run_cli("scan", str(project), "-f", "json", "--no-cache", env=env).stdout)
    assert all(not m["cached"] for r in third["results"] for m in r["scanners"].values())


def test_sarif_output_is_valid_and_round_trips_through_the_sarif_scanner(
    project: Path, tmp_path: Path
) -> None:
    from vul2safe.sarif import from_sarif, validate_sarif

    proc = run_cli("scan", str(project), "-f", "sarif")
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    assert validate_sarif(doc) == []
    exported = json.loads(run_cli("scan", str(project), "-f", "json").stdout)
    sarif_file = tmp_path / "scan.sarif"
    sarif_file.write_text(proc.stdout)

    def key(f: dict[str, object]) -> tuple[object, ...]:
        return tuple(
            f[k]
            for k in (
                "scanner",
                "rule_id",
                "severity",
                "cwe",
                "start_line",
                "end_line",
                "start_column",
                "end_column",
            )
        )

    original = sorted(key(f) for r in exported["results"] for f in r["findings"])
    assert sorted(key(f.to_dict()) for f in from_sarif(doc)) == original
    imported = run_cli(
        "scan", str(project), "--scanner", "sarif", "--sarif", str(sarif_file), "-f", "json"
    )
    assert imported.returncode == 1, imported.stderr
    again = json.loads(imported.stdout)
    assert sorted(key(f) for r in again["results"] for f in r["findings"]) == original
