"""Flag hard-coded secrets (CWE-798): an example of a third-party vul2safe scanner plugin."""

from __future__ import annotations

import re
from collections.abc import Sequence

from vul2safe import hookimpl
from vul2safe.scanning import Availability, BatchResult, Scanner, ScanOptions, ScanTarget
from vul2safe.schema import Finding, Severity

__version__ = "0.1.0"

#: (rule id, pattern, severity, message)
RULES: tuple[tuple[str, re.Pattern[str], Severity, str], ...] = (
    (
        "private-key",
        re.compile(r"-----BEGIN (?:RSA |EC |DSA |OPENSSH )?PRIVATE KEY-----"),
        Severity.HIGH,
        "private key embedded in source",
    ),
    (
        "aws-access-key-id",
        re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
        Severity.HIGH,
        "AWS access key id embedded in source",
    ),
    (
        "hardcoded-password",
        re.compile(
            r"""\b\w*(?:pass(?:word|wd)?|pwd|secret|api_?key|token)\w*\s*[:=]\s*["'][^"'\s]{4,}["']""",
            re.IGNORECASE,
        ),
        Severity.MEDIUM,
        "credential assigned from a string literal",
    ),
)


class SecretsScanner(Scanner):
    name = "secrets"
    languages = frozenset({"python", "c", "cpp", "java", "javascript", "php", "go", "ruby"})
    description = "Hard-coded credentials by regex (example third-party plugin)"

    def version(self) -> str:
        return __version__

    def available(self) -> Availability:
        return Availability(True)

    def rules_hash(self, options: ScanOptions) -> str:
        import hashlib

        text = "\n".join(f"{rid}\t{pattern.pattern}\t{sev.value}" for rid, pattern, sev, _ in RULES)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def scan_batch(
        self, targets: Sequence[ScanTarget], options: ScanOptions, timeout_s: float
    ) -> BatchResult:
        result = BatchResult()
        for target in targets:
            text = target.path.read_text(encoding="utf-8")
            for number, line in enumerate(text.splitlines(), start=1):
                for rule_id, pattern, severity, message in RULES:
                    match = pattern.search(line)
                    if match:
                        result.findings.setdefault(str(target.path), []).append(
                            Finding(
                                scanner=self.name,
                                rule_id=rule_id,
                                severity=severity,
                                tool_severity=severity.value,
                                message=message,
                                path=str(target.path),
                                start_line=number,
                                end_line=number,
                                start_column=match.start() + 1,
                                end_column=match.end() + 1,
                                cwe=["CWE-798"],
                            )
                        )
        return result


@hookimpl
def register_scanners(register) -> None:  # type: ignore[no-untyped-def]
    register(SecretsScanner())
