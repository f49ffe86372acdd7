"""Bandit plugin: real Bandit runs, columns in characters, indented snippets, syntax errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from vul2safe.plugins.scanner.bandit import BanditScanner
from vul2safe.scanning import ScanOptions, ScanTarget


def _scan(tmp_path: Path, files: dict[str, str]):  # type: ignore[no-untyped-def]
    targets = []
    for name, code in files.items():
        path = tmp_path / name
        path.write_text(code, encoding="utf-8")
        targets.append(ScanTarget(name, "python", path))
    return BanditScanner().scan_batch(targets, ScanOptions(), timeout_s=120), tmp_path


def test_one_batch_maps_findings_and_converts_byte_columns(tmp_path: Path) -> None:
    line = '    s = "héllo日本"; subprocess.call(cmd, shell=True)'
    result, root = _scan(
        tmp_path,
        {
            "a.py": f"import subprocess\ndef run(cmd):\n{line}\n",
            "b.py": "def add(a, b):\n    return a + b\n",
        },
    )
    shell = [f for f in result.findings[str(root / "a.py")] if f.rule_id.startswith("B602")]
    assert len(shell) == 1
    finding = shell[0]
    assert (finding.start_line, finding.cwe, finding.severity.value) == (3, ["CWE-78"], "high")
    assert finding.start_column == line.index("subprocess") + 1  # characters, not UTF-8 bytes
    assert line[finding.start_column - 1 : finding.end_column - 1].startswith("subprocess.call(")
    assert str(root / "b.py") not in result.findings


def test_indented_method_is_scanned_with_original_columns(tmp_path: Path) -> None:
    method = "    def run(self, cmd):\n        eval(cmd)\n"
    result, root = _scan(tmp_path, {"m.py": method})
    (finding,) = [f for f in result.findings[str(root / "m.py")] if f.rule_id.startswith("B307")]
    assert (finding.start_line, finding.start_column) == (2, 9)
    assert result.errors == {}


def test_syntax_error_is_a_per_file_verdict(tmp_path: Path) -> None:
    result, root = _scan(tmp_path, {"bad.py": "def f(:\n    pass\n", "ok.py": "eval(x)\n"})
    assert "syntax error" in result.errors[str(root / "bad.py")]
    assert str(root / "ok.py") in result.findings


def test_in_process_run_finds_what_the_cli_finds(shared_data: Path, tmp_path: Path) -> None:
    """Bandit runs in-process (faster than its CLI, benchmarks/scan_throughput): on the real
    CyberSecEval Python snippets it reports exactly what ``bandit -f json`` reports."""
    import json
    import shutil
    import subprocess
    import textwrap

    records = json.loads((shared_data / "cyberseceval" / "instruct.json").read_text())
    python = [r for r in records if r["language"] == "python"][:150]
    files = {f"s{i:03d}.py": textwrap.dedent(r["origin_code"]) for i, r in enumerate(python)}
    result, root = _scan(tmp_path, files)
    ours = {
        (Path(path).name, f.rule_id.split(":")[0], f.start_line)
        for path, found in result.findings.items()
        for f in found
    }
    exe = shutil.which("bandit")
    assert exe, "bandit CLI not on PATH; pip install bandit"
    proc = subprocess.run(
        [exe, "-f", "json", "-q", "--exit-zero", "--ignore-nosec", *(str(root / n) for n in files)],
        capture_output=True,
        text=True,
    )
    report = json.loads(proc.stdout)
    theirs = {(Path(r["filename"]).name, r["test_id"], r["line_number"]) for r in report["results"]}
    assert len(ours) > 50 and ours == theirs
    assert {Path(p).name for p in result.errors} == {
        Path(e["filename"]).name for e in report["errors"]
    }


NOSEC = (
    "import subprocess\n\n\n"
    "def run(cmd, expr):\n"
    "    subprocess.call(cmd, shell=True)  # nosec\n"
    "    return eval(expr)  # nosec B307\n"
)


def test_nosec_comments_do_not_hide_findings_from_vul2safe_scan(tmp_path: Path) -> None:
    """Model output is untrusted: a ``# nosec`` the model appended must not make the line
    clean. Bandit itself (its default) does honour these comments, so the test can fail."""
    import json
    import os
    import shutil
    import subprocess
    import sys

    target = tmp_path / "gen.py"
    target.write_text(NOSEC)
    exe = shutil.which("bandit")
    assert exe, "bandit CLI not on PATH; pip install bandit"
    plain = subprocess.run([exe, "-f", "json", "-q", str(target)], capture_output=True, text=True)
    hidden = {r["line_number"] for r in json.loads(plain.stdout)["results"]}
    assert not hidden & {5, 6}  # Bandit's default honours them
    proc = subprocess.run(
        [sys.executable, "-m", "vul2safe", "scan", str(target), "--scanner=bandit", "-f", "json"],
        capture_output=True,
        text=True,
        env={**os.environ, "VUL2SAFE_HOME": str(tmp_path / "home")},
    )
    assert proc.returncode == 1, proc.stderr
    (result,) = json.loads(proc.stdout)["results"]
    found = {(f["rule_id"][:4], f["start_line"], f["severity"]) for f in result["findings"]}
    assert {("B602", 5, "high"), ("B307", 6, "medium")} <= found


def test_the_scanner_options_are_part_of_the_cache_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Verdicts cached before ``# nosec`` was ignored must not be served now."""
    from vul2safe.cache import Cache
    from vul2safe.scanning import scan_samples
    from vul2safe.schema import Sample, SampleResult

    def run() -> bool:
        samples = [SampleResult(Sample("s", NOSEC, "python", path="s.py"))]
        (result,) = scan_samples(samples, ["bandit"], cache=Cache(tmp_path / "c.sqlite3")).results
        return result.reports[0].cached

    assert BanditScanner.options_id == "ignore-nosec"
    assert (run(), run()) == (False, True)
    monkeypatch.setattr(BanditScanner, "options_id", "")  # as cached before this option
    assert run() is False
