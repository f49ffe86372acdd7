"""Static scanners against CWEval's exploit tests: precision and recall per scanner and CWE.

The dynamic verdict is the ground truth: a sample is *vulnerable* when its security tests
ran and at least one failed (``secure is False``), *safe* when they all passed. A scanner
*flags* a sample when it reports at least one finding at or above the threshold (default
medium, the "high- and medium-risk" of every other number we report). Then, per scanner:

* precision = flagged and vulnerable ÷ flagged ("when it shouts, is it right?");
* recall = flagged and vulnerable ÷ vulnerable ("how many real weaknesses does it catch?");
* also the raw counts (tp, fp, fn, tn), and the same per CWE (the task's CWE label).

Only samples with a dynamic verdict count (``secure`` not ``None``: the ReDoS tasks and
programs that never ran are left out), and only those in a language the scanner covers.
A scanner sees exactly the program the tests judged (the assembled file, or the whole
reference program), written under its language's usual extension. Every available scanner
registered in the plugin registry is used unless names are given, so a new scanner (``icd``,
a third-party plugin) appears in the table without a code change here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from vul2safe.languages import extension_for
from vul2safe.schema import Sample, SampleResult, Severity

if TYPE_CHECKING:
    from vul2safe.cache import Cache
    from vul2safe.plugins.benchmark.cweval.scoring import CWEvalSample

__all__ = ["scanner_agreement"]


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def _cell(pairs: Sequence[tuple[bool, bool]]) -> dict[str, Any]:
    """Counts and rates from ``(flagged, vulnerable)`` pairs."""
    tp = sum(1 for flagged, vulnerable in pairs if flagged and vulnerable)
    fp = sum(1 for flagged, vulnerable in pairs if flagged and not vulnerable)
    fn = sum(1 for flagged, vulnerable in pairs if not flagged and vulnerable)
    tn = len(pairs) - tp - fp - fn
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1 = (
        2 * precision * recall / (precision + recall)
        if precision is not None and recall is not None and precision + recall
        else None
    )
    return {
        "n": len(pairs),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }


def scanner_agreement(
    records: Sequence[CWEvalSample],
    scanner_names: Sequence[str] | None = None,
    *,
    threshold: Severity | str = Severity.MEDIUM,
    cache: Cache | None = None,
) -> dict[str, Any]:
    """The ``scanner_agreement`` block of a CWEval result (layout: ``docs/cweval.md``)."""
    from vul2safe.scanning import ScanOptions, scan_samples, select_scanners

    level = Severity.parse(threshold)
    judged = [r for r in records if r.secure is not None and r.program]
    block: dict[str, Any] = {
        "threshold": level.value,
        "ground_truth": "CWEval security tests (secure is False = vulnerable)",
        "n_samples": len(judged),
        "n_vulnerable": sum(1 for r in judged if r.secure is False),
        "scanners": {},
        "skipped_scanners": {},
    }
    if not judged:
        return block
    chosen, skipped = select_scanners(scanner_names, {r.language for r in judged})
    block["skipped_scanners"] = dict(skipped)
    shells = [
        SampleResult(
            Sample(
                f"{r.task_id}#{r.sample_index}",
                r.program,
                r.language,
                path=f"{r.task_id.replace('/', '_')}_{r.sample_index}{extension_for(r.language)}",
            )
        )
        for r in judged
    ]
    run = scan_samples(shells, [s.name for s in chosen], ScanOptions(), cache=cache)
    by_id = {r.sample.id: r for r in run.results}
    for scanner in chosen:
        overall: list[tuple[bool, bool]] = []
        per_cwe: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
        per_language: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
        errors = 0
        for record in judged:
            if record.language not in scanner.languages:
                continue
            result = by_id.get(f"{record.task_id}#{record.sample_index}")
            report = next(
                (r for r in (result.reports if result else []) if r.scanner == scanner.name), None
            )
            if report is None or not report.ok:
                errors += 1
                continue
            flagged = any(f.severity.at_least(level) for f in report.findings)
            pair = (flagged, record.secure is False)
            overall.append(pair)
            per_cwe[record.cwe].append(pair)
            per_language[record.language].append(pair)
        block["scanners"][scanner.name] = {
            **_cell(overall),
            "scan_errors": errors,
            "version": run.scanners.get(scanner.name, {}).get("version"),
            "per_cwe": {cwe: _cell(p) for cwe, p in sorted(per_cwe.items(), key=_cwe_key)},
            "per_language": {lang: _cell(p) for lang, p in sorted(per_language.items())},
        }
    return block


def _cwe_key(item: tuple[str, Any]) -> tuple[int, str]:
    number = item[0].removeprefix("CWE-")
    return (int(number) if number.isdigit() else 1 << 30, item[0])
