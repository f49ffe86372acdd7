"""Real data: SVEN's vulnerable (before) and fixed (after) functions, every default scanner.

A scanner worth using flags the vulnerable versions more often than the fixed ones. The test
prints the counts per scanner so a regression in one tool is visible, and asserts the
direction for the registry as a whole and for each scanner that tells the two apart.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from vul2safe.languages import detect_language
from vul2safe.scanning import ScanOptions, scan_samples
from vul2safe.schema import Sample, SampleResult, Severity


def _sven_pairs(data: Path) -> list[SampleResult]:
    results = []
    for path in sorted((data / "sven" / "train").glob("*.jsonl")):
        for number, line in enumerate(path.read_text().splitlines()):
            record = json.loads(line)
            language = detect_language(record["file_name"])
            assert language is not None, record["file_name"]
            for side in ("before", "after"):
                sample_id = f"{path.stem}:{number}:{side}"
                code = record[f"func_src_{side}"]
                results.append(SampleResult(Sample(sample_id, code, language, sample_id)))
    return results


@pytest.mark.integration
def test_scanners_flag_vulnerable_versions_more_than_fixed_ones(shared_data: Path) -> None:
    results = _sven_pairs(shared_data)
    assert len(results) == 2 * 720
    run = scan_samples(results, None, ScanOptions(use_cache=False))
    assert {"bandit", "semgrep", "flawfinder", "cppcheck"} <= set(run.scanners)

    counts: dict[str, Counter[str]] = {name: Counter() for name in [*run.scanners, "any"]}
    for result in run.results:
        side = result.sample.id.rsplit(":", 1)[1]
        flagged = {f.scanner for f in result.findings if f.severity.at_least(Severity.MEDIUM)}
        for name in flagged:
            counts[name][side] += 1
        counts["any"][side] += bool(flagged)
    errored = sum(bool(r.errors) for r in run.results)
    print(f"\nSVEN train, 720 pairs, versions with a finding >= medium ({errored} with errors):")
    for name, count in counts.items():
        print(f"  {name:<11} before {count['before']:>4}   after {count['after']:>4}")

    assert counts["any"]["before"] > counts["any"]["after"]
    for name in ("bandit", "semgrep"):
        assert counts[name]["before"] > counts[name]["after"], name
    for name in ("flawfinder", "cppcheck"):  # C tools: they rarely see the fixed line itself
        assert counts[name]["before"] >= counts[name]["after"], name
