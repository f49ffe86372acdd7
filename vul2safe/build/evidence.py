"""Scanner evidence for the reflect stage: is each pair flagged before the fix, and after?

Every pair's vulnerable and fixed function go through the scanning engine in one call (one
tool process per scanner for the whole stage, results cached). Only scanners that ran on both
versions count, so a scanner crashing on one side cannot fake a "clean after".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vul2safe.build.records import RepairPair
from vul2safe.cache import Cache
from vul2safe.schema import Sample, SampleResult, Severity

__all__ = ["collect_evidence"]


def _finding_row(finding: Any) -> dict[str, Any]:
    return {
        "scanner": finding.scanner,
        "rule_id": finding.rule_id,
        "cwe": list(finding.cwe),
        "severity": finding.severity.value,
        "line": finding.start_line,
    }


def collect_evidence(
    pairs: Sequence[RepairPair],
    scanner_names: Sequence[str] | None,
    *,
    min_severity: str,
    cache: Cache,
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Scan every pair's vulnerable and fixed code in ONE engine call (one tool process per
    scanner for the whole stage). Returns evidence per pair id and the scanners' metadata."""
    from vul2safe.scanning import scan_samples

    minimum = Severity.parse(min_severity)
    shells = []
    for pair in pairs:
        for side, code in (("before", pair.vulnerable), ("after", pair.fixed)):
            sample = Sample(f"{pair.pair_id}#{side}", code, pair.language, f"{pair.pair_id}#{side}")
            shells.append(SampleResult(sample))
    if not shells:
        return {}, {}
    run = scan_samples(shells, scanner_names, cache=cache)
    results = {r.sample.id: r for r in run.results}
    evidence: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        before, after = results[f"{pair.pair_id}#before"], results[f"{pair.pair_id}#after"]
        ok_before = {r.scanner for r in before.reports if r.ok}
        ok_after = {r.scanner for r in after.reports if r.ok}
        both = sorted(ok_before & ok_after)

        def flagged(result: SampleResult, both: list[str] = both) -> list[dict[str, Any]]:
            return [
                _finding_row(f)
                for r in result.reports
                if r.scanner in both
                for f in r.findings
                if f.severity.at_least(minimum)
            ]

        before_rows, after_rows = flagged(before), flagged(after)
        evidence[pair.pair_id] = {
            "scanner": {
                "scanners": both,
                "min_severity": minimum.value,
                "before_flagged": bool(before_rows) if both else None,
                "after_flagged": bool(after_rows) if both else None,
                "before_findings": before_rows,
                "after_findings": after_rows,
                "errors": sorted(set(before.errors + after.errors)),
            }
        }
    return evidence, {"scanners": run.scanners, "skipped": run.skipped_scanners}
