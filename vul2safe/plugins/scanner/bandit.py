"""Bandit, the Python security linter, run in-process once per batch.

Bandit is a Python library and one of vul2safe's own dependencies, so its ``BanditManager``
runs in our process instead of a ``bandit -f json FILES...`` subprocess: measured on the
CyberSecEval Python snippets (``benchmarks/scan_throughput``), the CLI spends ~0.6 s per call
starting up, the in-process run 0.04 s on a 16-sample batch and half the CLI's time on 351
files; same findings. The version recorded is then the imported package's, which is exactly
what ran. Runs are serialised by a lock (Bandit's manager is not documented thread-safe);
Bandit's checks walk the AST once, so the lack of a kill-able timeout is accepted.

``# nosec`` comments are ignored (Bandit's ``--ignore-nosec``): the code scanned is model
output, and a model that appends ``# nosec`` to ``subprocess.call(cmd, shell=True)`` must
not thereby make it clean. ``options_id`` puts that choice in the cache key.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import tempfile
import textwrap
import threading
import warnings
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

from vul2safe import hookimpl
from vul2safe.errors import ScannerFailed
from vul2safe.hookspecs import Register
from vul2safe.scanning import Availability, BatchResult, Scanner, ScanOptions, ScanTarget
from vul2safe.schema import Finding, normalize_cwes
from vul2safe.severity import normalize

_lock = threading.Lock()


def _run_bandit(files: list[str]) -> dict[str, Any]:
    """Bandit's JSON report shape (``results``, ``errors``) from an in-process run."""
    with _lock, warnings.catch_warnings():
        # stevedore's deprecation notice about an argument Bandit passes: not ours to act on
        warnings.filterwarnings("ignore", message="The verify_requirements argument")
        # parsing the *scanned* code (e.g. "\." in a string) warns about that code, not ours
        warnings.simplefilter("ignore", SyntaxWarning)
        warnings.filterwarnings("ignore", message="invalid escape sequence")  # 3.11's spelling
        from bandit.core import config as b_config
        from bandit.core import manager as b_manager

        manager = b_manager.BanditManager(
            b_config.BanditConfig(), "file", quiet=True, ignore_nosec=True
        )
        manager.discover_files(files, False)
        manager.run_tests()
        issues = [issue.as_dict() for issue in manager.get_issue_list()]
        skipped = [{"filename": name, "reason": reason} for name, reason in manager.skipped]
    return {"results": issues, "errors": skipped}


class BanditScanner(Scanner):
    name = "bandit"
    languages = frozenset({"python"})
    description = "Bandit: AST-based security checks for Python (severity as reported)"
    options_id = "ignore-nosec"

    @cache  # noqa: B019 - one instance per process; the tool version cannot change under us
    def version(self) -> str:
        """The imported package's version: the in-process run is that very code."""
        try:
            return importlib.metadata.version("bandit")
        except importlib.metadata.PackageNotFoundError:
            return "unavailable"

    def available(self) -> Availability:
        if importlib.util.find_spec("bandit") is None:
            return Availability(False, "bandit not found; install it with `pip install bandit`")
        return Availability(True)

    def scan_batch(
        self, targets: Sequence[ScanTarget], options: ScanOptions, timeout_s: float
    ) -> BatchResult:
        with tempfile.TemporaryDirectory(prefix="vul2safe-bandit-") as tmp:
            files, shifts = _dedented_copies(targets, Path(tmp))
            try:
                report = _run_bandit(files)
            except Exception as exc:  # a Bandit bug on some file: the engine bisects
                raise ScannerFailed(f"bandit crashed: {type(exc).__name__}: {exc}") from exc
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
