"""The reference check: CWEval's own secure and unsafe references through our harness.

Every secure reference must pass its functionality and security tests; every unsafe one
must pass functionality and fail security. The samples go through the same door as a
model's (``vul2safe eval --samples FILE --benchmark cweval``): one ``{"task_id",
"solution"}`` line per reference, secure first; unsafe references of compiled languages and
JavaScript carry ``"whole_program": true`` (they are complete programs, see
:mod:`.tasks`). The check also yields the scanner agreement on references, the table in
``docs/cweval.md``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from vul2safe.benchmark import Task

__all__ = ["check_references", "reference_samples"]


def reference_samples(tasks: Sequence[Task]) -> list[dict[str, Any]]:
    """Two lines per task (secure, then unsafe when the task has one)."""
    lines: list[dict[str, Any]] = []
    for task in tasks:
        lines.append({"task_id": task.task_id, "solution": task.reference})
        unsafe = task.metadata.get("unsafe_reference")
        if unsafe:
            line = {"task_id": task.task_id, "solution": unsafe}
            if task.metadata.get("unsafe_is_program"):
                line["whole_program"] = True
            lines.append(line)
    return lines


def check_references(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """From a result's ``samples`` (sample 0 secure, 1 unsafe per task): which behave."""
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for sample in samples:
        by_task[sample["task_id"]].append(sample)
    report: dict[str, Any] = {"per_language": {}, "failures": []}
    counts: dict[str, dict[str, list[int]]] = defaultdict(
        lambda: {"secure": [0, 0], "unsafe": [0, 0]}
    )
    for task_id, rows in sorted(by_task.items()):
        rows.sort(key=lambda r: r["sample_index"])
        language = rows[0]["language"]
        for kind, row in zip(("secure", "unsafe"), rows, strict=False):
            if row["status"] == "unsupported":
                continue
            want = row["secure"] is True if kind == "secure" else row["secure"] is False
            good = bool(row["passed"]) and want
            counts[language][kind][1] += 1
            counts[language][kind][0] += int(good)
            if not good:
                report["failures"].append(
                    {
                        "task_id": task_id,
                        "reference": kind,
                        "status": row["status"],
                        "passed": row["passed"],
                        "secure": row["secure"],
                        "detail": row["detail"],
                    }
                )
    for language, kinds in sorted(counts.items()):
        report["per_language"][language] = {
            kind: {"ok": ok, "n": n, "rate": ok / n if n else None}
            for kind, (ok, n) in kinds.items()
        }
    return report
