"""Summaries and renderings of a scan (table, JSON, JSONL, SARIF).

The summary is the honest denominator: every input is counted as scanned, clean, flagged or
errored (a sample can be flagged by one scanner and errored by another), plus the files a
directory walk skipped because their suffix is not source code.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import IO, Any

from vul2safe import __version__
from vul2safe.scanning import ScanRun
from vul2safe.schema import SampleResult, Severity

SEVERITY_STYLE = {Severity.HIGH: "bold red", Severity.MEDIUM: "yellow", Severity.LOW: "cyan"}


@dataclass
class ScanSummary:
    inputs: int = 0
    scanned: int = 0
    clean: int = 0
    flagged: int = 0
    errored: int = 0
    skipped: int = 0
    findings: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        counts = ", ".join(f"{s.value} {self.findings.get(s.value, 0)}" for s in reversed(Severity))
        text = (
            f"{self.inputs} inputs: {self.scanned} scanned, {self.clean} clean, "
            f"{self.flagged} flagged, {self.errored} errored"
        )
        if self.skipped:
            text += f", {self.skipped} skipped (not source code)"
        return f"{text} | findings: {counts}"


def summarize(results: list[SampleResult], skipped: int = 0) -> ScanSummary:
    summary = ScanSummary(inputs=len(results), skipped=skipped)
    severities: Counter[str] = Counter()
    for result in results:
        findings = result.findings
        errors = result.errors
        scanned = any(r.ok for r in result.reports)
        summary.scanned += scanned
        summary.flagged += bool(findings)
        summary.errored += bool(errors)
        summary.clean += scanned and not findings and not errors
        severities.update(f.severity.value for f in findings)
    summary.findings = dict(severities)
    return summary


def exit_code(results: list[SampleResult], fail_on: Severity | None) -> int:
    """1 when a finding reaches ``fail_on``; else 2 when anything errored; else 0."""
    if fail_on is not None and any(
        f.severity.at_least(fail_on) for r in results for f in r.findings
    ):
        return 1
    return 2 if any(r.errors for r in results) else 0


def to_json(run: ScanRun, summary: ScanSummary) -> dict[str, Any]:
    return {
        "vul2safe_version": __version__,
        "scanners": run.scanners,
        "skipped_scanners": run.skipped_scanners,
        "summary": asdict(summary),
        "duration_s": round(run.duration_s, 3),
        "results": [r.to_dict() for r in run.results],
    }


def write_jsonl(run: ScanRun, stream: IO[str]) -> None:
    for result in run.results:
        stream.write(json.dumps(result.to_dict()) + "\n")


def print_table(run: ScanRun, summary: ScanSummary, *, show_clean: bool = False) -> None:
    """Findings grouped by file, coloured by severity, then one summary line."""
    from rich.console import Console
    from rich.markup import escape

    console = Console(highlight=False)
    for result in run.results:
        findings = sorted(result.findings, key=lambda f: (f.start_line, -f.severity.rank))
        errors = result.errors
        if not findings and not errors and not show_clean:
            continue
        console.print(f"[bold]{escape(result.sample.path)}[/] [dim]({result.sample.language})[/]")
        for finding in findings:
            style = SEVERITY_STYLE[finding.severity]
            where = f"{finding.start_line}:{finding.start_column}"
            cwe = ",".join(finding.cwe) or "-"
            console.print(
                f"  {where:>7}  [{style}]{finding.severity.value:<6}[/]  {cwe:<8}  "
                f"{finding.scanner}/{escape(finding.rule_id)}  [dim]{escape(finding.message)}[/]",
                soft_wrap=True,
            )
        for error in errors:
            console.print(f"  [red]error[/] {escape(error)}")
    tools = ", ".join(
        f"{name} {meta['version']}"
        + (f" (rules {meta['rules_hash'][:8]})" if meta["rules_hash"] else "")
        for name, meta in run.scanners.items()
    )
    console.print(f"[bold]{summary.line()}[/]")
    console.print(f"[dim]scanners: {tools or 'none'} | {run.duration_s:.1f} s[/]")
    for name, reason in run.skipped_scanners.items():
        console.print(f"[dim]skipped scanner {name}: {escape(reason)}[/]")
