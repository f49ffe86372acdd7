"""The one severity-normalisation table (mirrored in docs/severity.md).

Each tool speaks its own scale; findings carry both the tool's word and our
``high | medium | low``. flawfinder's level-2 hits (every fixed-size ``char`` array) are noise
for our purposes, hence ``low``.
"""

from __future__ import annotations

from vul2safe.schema import Severity

H, M, L = Severity.HIGH, Severity.MEDIUM, Severity.LOW

#: tool → its own severity word (lower-case) → normalised severity
SEVERITY_TABLE: dict[str, dict[str, Severity]] = {
    "bandit": {"high": H, "medium": M, "low": L, "undefined": L},
    "semgrep": {
        "error": H,
        "warning": M,
        "info": L,
        "critical": H,
        "high": H,
        "medium": M,
        "low": L,
        "inventory": L,
        "experiment": L,
    },
    # ICD (codeshield): every issue it reports counts as "insecure code" in CyberSecEval, and
    # its Advice rules are real weaknesses (11 of 13 Rust rules: `unsafe {`, weak hashes,
    # TLS verification off); as `low` they would vanish from the >= medium rate
    "codeshield": {"error": H, "warning": M, "advice": M},
    "cppcheck": {
        "error": H,
        "warning": M,
        "style": L,
        "performance": L,
        "portability": L,
        "information": L,
        "debug": L,
        "none": L,
    },
    "sarif-level": {"error": H, "warning": M, "note": L, "none": L},
    "codeql-problem": {"error": H, "warning": M, "recommendation": L},
}


def normalize(tool: str, tool_severity: str, default: Severity = Severity.LOW) -> Severity:
    """Map a tool's severity word through :data:`SEVERITY_TABLE`."""
    return SEVERITY_TABLE.get(tool, {}).get(tool_severity.strip().lower(), default)


def from_flawfinder_level(level: int) -> Severity:
    """flawfinder levels 0–5: 4–5 high, 3 medium, 0–2 low."""
    if level >= 4:
        return H
    return M if level == 3 else L


def from_security_severity(score: float) -> Severity:
    """CodeQL/GitHub ``security-severity`` bands: ≥ 7.0 high, ≥ 4.0 medium, else low."""
    if score >= 7.0:
        return H
    return M if score >= 4.0 else L
