"""Bandit, the Python security linter, run once per batch (``bandit -f json FILES...``)."""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from vul2safe import hookimpl
from vul2safe.errors import ScannerFailed
from vul2safe.hookspecs import Register
from vul2safe.scanning import Availability, BatchResult, Scanner, ScanOptions, ScanTarget, run_tool
from vul2safe.schema import Finding, normalize_cwes
from vul2safe.severity import normalize


@cache
def _bandit_command() -> tuple[str, ...] | None:
    exe = shutil.which("bandit")
    if exe:
        return (exe,)
    # installed as a library but not on PATH (e.g. a venv not activated)
    probe = subprocess.run(
        [sys.executable, "-c", "import bandit"], capture_output=True, check=False
    )
    return (sys.executable, "-m", "bandit") if probe.returncode == 0 else None


class BanditScanner(Scanner):
    name = "bandit"
    languages = frozenset({"python"})
    description = "Bandit: AST-based security checks for Python (severity as reported)"

    @cache  # noqa: B019 - one instance per process; the tool version cannot change under us
    def version(self) -> str:
        try:
            return importlib.metadata.version("bandit")
        except importlib.metadata.PackageNotFoundError:
            pass
        command = _bandit_command()
        if command is None:
            return "unavailable"
        out = subprocess.run([*command, "--version"], capture_output=True, text=True, check=False)
        first = (out.stdout or out.stderr).strip().splitlines()
        return first[0].split()[-1] if first else "unknown"

    def available(self) -> Availability:
        if _bandit_command() is None:
            return Availability(False, "bandit not found; install it with `pip install bandit`")
        return Availability(True)

    def scan_batch(
        self, targets: Sequence[ScanTarget], options: ScanOptions, timeout_s: float
    ) -> BatchResult:
        command = _bandit_command()
        assert command is not None  # guarded by available()
        with tempfile.TemporaryDirectory(prefix="vul2safe-bandit-") as tmp:
            files, shifts = _dedented_copies(targets, Path(tmp))
            proc = run_tool(
                [*command, "-f", "json", "-q", "--exit-zero", *files],
                timeout_s=timeout_s,
                tool="bandit",
            )
        try:
            report = json.loads(proc.stdout)
        except json.JSONDecodeError:
            raise ScannerFailed(
                f"bandit crashed (exit {proc.returncode}): "
                f"{proc.stderr.strip()[-300:] or 'no output'}"
            ) from None
        result = parse_bandit_json(report)
        back = {copy: original for original, (copy, _) in shifts.items()}
        findings: dict[str, list[Finding]] = {}
        for path, found in result.findings.items():
            original = back.get(path, path)
            indent = shifts.get(original, ("", 0))[1]
            lines = Path(original).read_text(encoding="utf-8").splitlines()
            for finding in found:
                line = lines[finding.start_line - 1] if finding.start_line <= len(lines) else ""
                finding.start_column = _char_column(line, finding.start_column, indent)
                end_line = lines[finding.end_line - 1] if finding.end_line <= len(lines) else ""
                finding.end_column = _char_column(end_line, finding.end_column, indent)
            findings[original] = found
        errors = {back.get(path, path): error for path, error in result.errors.items()}
        return BatchResult(findings, errors)


def _char_column(line: str, byte_column: int, indent: int) -> int:
    """Bandit reports Python-AST columns: 1-based here, but counted in UTF-8 *bytes* of the
    dedented copy. Our columns are 1-based character positions in the original line
    (0 stays "unknown"); the removed indent is ASCII whitespace, one byte per character."""
    if byte_column <= 0:
        return 0
    prefix = line.encode("utf-8")[: byte_column - 1 + indent]
    return len(prefix.decode("utf-8", errors="ignore")) + 1


def _dedented_copies(
    targets: Sequence[ScanTarget], tmp: Path
) -> tuple[list[str], dict[str, tuple[str, int]]]:
    """Functions cut out of classes are indented and do not parse as a module; Bandit then
    reports nothing. Scan a dedented copy instead and shift columns back by the indent."""
    files: list[str] = []
    shifts: dict[str, tuple[str, int]] = {}
    for index, target in enumerate(targets):
        text = target.path.read_text(encoding="utf-8")
        dedented = textwrap.dedent(text)
        if dedented == text:
            files.append(str(target.path))
            continue
        first = next((line for line in text.splitlines() if line.strip()), "")
        indent = len(first) - len(first.lstrip())
        copy = tmp / f"d{index:06d}.py"
        copy.write_text(dedented, encoding="utf-8")
        files.append(str(copy))
        shifts[str(target.path)] = (str(copy), indent)
    return files, shifts


def parse_bandit_json(report: dict[str, object]) -> BatchResult:
    """Bandit's JSON → findings keyed by file; its per-file ``errors`` (syntax) → errors."""
    result = BatchResult()
    for item in report.get("results", []) or []:  # type: ignore[union-attr]
        cwe = item.get("issue_cwe") or {}
        lines = item.get("line_range") or [item["line_number"]]
        finding = Finding(
            scanner="bandit",
            rule_id=f"{item['test_id']}:{item['test_name']}",
            severity=normalize("bandit", item["issue_severity"]),
            tool_severity=f"{item['issue_severity']} (confidence {item['issue_confidence']})",
            message=item["issue_text"],
            path=item["filename"],
            start_line=int(item["line_number"]),
            end_line=int(max(lines)),
            start_column=int(item.get("col_offset") or 0) + 1,
            end_column=int(item["end_col_offset"]) + 1 if item.get("end_col_offset") else 0,
            cwe=normalize_cwes([cwe["id"]]) if cwe.get("id") else [],
        )
        result.findings.setdefault(str(Path(item["filename"])), []).append(finding)
    for error in report.get("errors", []) or []:  # type: ignore[union-attr]
        result.errors[str(Path(error["filename"]))] = str(error["reason"])
    return result


@hookimpl
def register_scanners(register: Register) -> None:
    register(BanditScanner())
