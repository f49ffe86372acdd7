"""The typed shapes every stage exchanges: samples, findings, scan reports.

One module so that a reader finds every record layout in one place; everything here is plain
data (dataclasses) with ``to_dict``/``from_dict`` so that files written by one stage are read
back by the next without ambiguity.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any


class Severity(str, Enum):
    """Normalised severity. Ordered: ``low < medium < high``."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]

    def at_least(self, threshold: Severity) -> bool:
        return self.rank >= threshold.rank

    @classmethod
    def parse(cls, value: str | Severity) -> Severity:
        """Parse user input; the error lists the valid values."""
        if isinstance(value, Severity):
            return value
        try:
            return cls(value.strip().lower())
        except ValueError:
            valid = ", ".join(s.value for s in cls)
            from vul2safe.errors import UsageError

            raise UsageError(f"unknown severity {value!r}; use one of: {valid}") from None


_SEVERITY_RANK = {Severity.LOW: 0, Severity.MEDIUM: 1, Severity.HIGH: 2}

_CWE_RE = re.compile(r"CWE[-_ ]?0*(\d+)", re.IGNORECASE)


def normalize_cwe(value: str | int) -> str | None:
    """``'CWE-078: OS Command…'``, ``78``, ``'external/cwe/cwe-078'`` → ``'CWE-78'``."""
    if isinstance(value, int):
        return f"CWE-{value}" if value > 0 else None
    text = str(value).strip()
    if text.isdigit():
        return f"CWE-{int(text)}" if int(text) > 0 else None
    match = _CWE_RE.search(text)
    return f"CWE-{int(match.group(1))}" if match else None


def normalize_cwes(values: list[str | int] | tuple[str | int, ...]) -> list[str]:
    """Normalise and de-duplicate, keeping order."""
    out: list[str] = []
    for value in values:
        cwe = normalize_cwe(value)
        if cwe and cwe not in out:
            out.append(cwe)
    return out


@dataclass
class Sample:
    """One piece of code to scan or run. ``path`` is where it came from (file or JSONL id)."""

    id: str
    code: str
    language: str
    path: str = ""


@dataclass
class Finding:
    """One weakness reported by one scanner, located in one sample."""

    scanner: str
    rule_id: str
    severity: Severity
    tool_severity: str
    message: str
    path: str
    start_line: int
    end_line: int
    start_column: int = 0
    end_column: int = 0
    cwe: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["severity"] = self.severity.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finding:
        values = dict(data)
        values["severity"] = Severity(values["severity"])
        values["cwe"] = list(values.get("cwe") or [])
        return cls(**values)


@dataclass
class ScanReport:
    """What one scanner said about one sample. ``error`` set means: not scanned."""

    sample_id: str
    path: str
    language: str
    scanner: str
    tool_version: str
    rules_hash: str
    findings: list[Finding] = field(default_factory=list)
    error: str | None = None
    cached: bool = False
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    def max_severity(self) -> Severity | None:
        if not self.findings:
            return None
        return max((f.severity for f in self.findings), key=lambda s: s.rank)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["findings"] = [f.to_dict() for f in self.findings]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScanReport:
        values = dict(data)
        values["findings"] = [Finding.from_dict(f) for f in values.get("findings", [])]
        return cls(**values)


@dataclass
class SampleResult:
    """Every scanner's verdict on one sample, the unit the CLI prints and counts."""

    sample: Sample
    reports: list[ScanReport] = field(default_factory=list)
    error: str | None = None  # input problem (binary, not UTF-8, empty...) before any scanner

    @property
    def findings(self) -> list[Finding]:
        return [f for r in self.reports for f in r.findings]

    @property
    def errors(self) -> list[str]:
        errs = [self.error] if self.error else []
        errs += [f"{r.scanner}: {r.error}" for r in self.reports if r.error]
        return errs

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.sample.id,
            "path": self.sample.path,
            "language": self.sample.language,
            "findings": [f.to_dict() for f in self.findings],
            "errors": self.errors,
            "scanners": {
                r.scanner: {
                    "version": r.tool_version,
                    "rules_hash": r.rules_hash,
                    "cached": r.cached,
                }
                for r in self.reports
            },
        }
