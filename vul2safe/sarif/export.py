"""Export: a whole scan as one SARIF 2.1.0 log (see the package docstring)."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vul2safe.sarif.common import (
    EXPORT_MARKER,
    INFORMATION_URIS,
    INPUT_TOOL,
    LEVEL_FOR_SEVERITY,
    SARIF_SCHEMA_URI,
    SARIF_VERSION,
    SECURITY_SEVERITY_SCORE,
    SRCROOT,
    path_to_uri,
)
from vul2safe.schema import Finding, SampleResult, Severity, normalize_cwes

#: our ``partialFingerprints`` key (GitHub's own ``primaryLocationLineHash`` needs the source)
FINGERPRINT_KEY = "vul2safe/findingHash/v1"


def to_sarif(
    results: Sequence[SampleResult], scanners: Mapping[str, Mapping[str, str]]
) -> dict[str, Any]:
    """Export a whole scan as one SARIF 2.1.0 log: one ``run`` per scanner.

    ``scanners`` is :attr:`vul2safe.scanning.ScanRun.scanners` (name → ``version``,
    ``rules_hash`` and optionally ``information_uri``). Input errors that belong to no scanner
    go to an extra run of the pseudo-tool ``vul2safe`` so that they are not lost either.
    """
    names = list(scanners)
    for result in results:
        for report in result.reports:
            if report.scanner not in names:
                names.append(report.scanner)
    runs = [_export_run(name, scanners.get(name, {}), results) for name in names]
    input_errors = [r for r in results if r.error]
    if input_errors:
        from vul2safe import __version__

        runs.append(_input_error_run(input_errors, __version__))
    return {"$schema": SARIF_SCHEMA_URI, "version": SARIF_VERSION, "runs": runs}


def write_sarif_file(doc: Mapping[str, Any], path: str | Path) -> None:
    """Write a SARIF log as UTF-8 JSON (the encoding SARIF mandates)."""
    Path(path).write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _export_run(
    name: str, meta: Mapping[str, str], results: Sequence[SampleResult]
) -> dict[str, Any]:
    from vul2safe import __version__

    rules: list[dict[str, Any]] = []
    rule_index: dict[str, int] = {}
    rule_severity: dict[str, Severity] = {}
    rule_cwes: dict[str, list[str]] = {}
    sarif_results: list[dict[str, Any]] = []
    notifications: list[dict[str, Any]] = []
    for sample_result in results:
        sample = sample_result.sample
        sample_path = sample.path or sample.id
        for report in sample_result.reports:
            if report.scanner != name:
                continue
            if report.error:
                notifications.append(_notification(report.error, sample_path, sample.id))
            for finding in report.findings:
                if finding.rule_id not in rule_index:
                    rule_index[finding.rule_id] = len(rules)
                    rules.append({"id": finding.rule_id, "_message": finding.message})
                    rule_severity[finding.rule_id] = finding.severity
                    rule_cwes[finding.rule_id] = []
                if finding.severity.rank > rule_severity[finding.rule_id].rank:
                    rule_severity[finding.rule_id] = finding.severity
                for cwe in normalize_cwes(tuple(finding.cwe)):
                    if cwe not in rule_cwes[finding.rule_id]:
                        rule_cwes[finding.rule_id].append(cwe)
                sarif_results.append(
                    _export_result(
                        finding, rule_index[finding.rule_id], name, sample.id, sample_path
                    )
                )
    driver: dict[str, Any] = {"name": name}
    version = meta.get("version")
    if version:
        driver["version"] = version
    info_uri = meta.get("information_uri") or INFORMATION_URIS.get(name)
    if info_uri:
        driver["informationUri"] = info_uri
    driver["rules"] = [
        _export_rule(rule, rule_severity[rule["id"]], rule_cwes[rule["id"]], name)
        for rule in rules
    ]
    invocation: dict[str, Any] = {"executionSuccessful": not notifications}
    if notifications:
        invocation["toolExecutionNotifications"] = notifications
    return {
        "tool": {"driver": driver},
        "invocations": [invocation],
        "originalUriBaseIds": {SRCROOT: {"uri": _cwd_uri()}},
        "results": sarif_results,
        "columnKind": "unicodeCodePoints",
        "properties": {
            "rules_hash": meta.get("rules_hash", ""),
            "tool_version": version or "",
            EXPORT_MARKER: f"vul2safe {__version__}",
        },
    }


def _export_rule(
    rule: dict[str, Any], severity: Severity, cwes: list[str], scanner: str
) -> dict[str, Any]:
    """A rule as GitHub code scanning wants it: short and full description, help in text and
    Markdown (with the CWE links), ``external/cwe/cwe-NNN`` tags and ``security-severity``."""
    tags = ["security", *(_cwe_tag(cwe) for cwe in cwes)]
    message = " ".join(str(rule["_message"]).split()) or rule["id"]
    short = _short(message) or rule["id"]
    weakness = ", ".join(cwes) or "no CWE given by the tool"
    full = f"{message} ({scanner} rule {rule['id']}; {weakness})"
    links = [f"[{cwe}]({_cwe_url(cwe)})" for cwe in cwes]
    help_text = f"{message}\n\nReported by {scanner} (rule {rule['id']}). " + (
        "Weakness: " + ", ".join(f"{cwe} <{_cwe_url(cwe)}>" for cwe in cwes) + "."
        if cwes
        else "The tool names no CWE for this rule."
    )
    help_markdown = f"{message}\n\nReported by **{scanner}** (rule `{rule['id']}`). " + (
        "Weakness: " + ", ".join(links) + "." if links else "The tool names no CWE for this rule."
    )
    return {
        "id": rule["id"],
        "name": _rule_name(rule["id"]),
        "shortDescription": {"text": short},
        "fullDescription": {"text": full},
        "help": {"text": help_text, "markdown": help_markdown},
        "defaultConfiguration": {"level": LEVEL_FOR_SEVERITY[severity]},
        "properties": {
            "tags": list(dict.fromkeys(tags)),
            "security-severity": SECURITY_SEVERITY_SCORE[severity],
            "precision": "medium",
        },
    }


def _rule_name(rule_id: str) -> str:
    """SARIF ``name``: an identifier-like form of the id (``insecure-md5`` → ``InsecureMd5``)."""
    parts = [p for p in re.split(r"[^A-Za-z0-9]+", rule_id) if p]
    return "".join(p[:1].upper() + p[1:] for p in parts) or "Rule"


def _cwe_url(cwe: str) -> str:
    return f"https://cwe.mitre.org/data/definitions/{int(cwe.split('-')[1])}.html"


def _fingerprint(finding: Finding, scanner: str, sample_id: str) -> str:
    """Stable across runs for the same finding in the same sample (GitHub de-duplicates
    alerts by ``partialFingerprints``); columns are left out so reformatting keeps it."""
    key = "\0".join(
        [scanner, finding.rule_id, sample_id, str(finding.start_line), finding.message]
    )
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def _export_result(
    finding: Finding, rule_index: int, scanner: str, sample_id: str, path: str
) -> dict[str, Any]:
    physical: dict[str, Any] = {"artifactLocation": _artifact_location(path)}
    region = _export_region(finding)
    if region:
        physical["region"] = region
    return {
        "ruleId": finding.rule_id,
        "ruleIndex": rule_index,
        "level": LEVEL_FOR_SEVERITY[finding.severity],
        "message": {"text": finding.message or finding.rule_id},
        "locations": [{"physicalLocation": physical}],
        "partialFingerprints": {
            FINGERPRINT_KEY: _fingerprint(finding, finding.scanner or scanner, sample_id)
        },
        "properties": {
            "severity": finding.severity.value,
            "tool_severity": finding.tool_severity,
            "cwe": list(finding.cwe),
            "scanner": finding.scanner or scanner,
            "sample_id": sample_id,
        },
    }


def _export_region(finding: Finding) -> dict[str, int]:
    """SARIF forbids line/column 0, so "unknown" is expressed by omitting the property."""
    if finding.start_line < 1:
        return {}
    region = {"startLine": finding.start_line}
    if finding.start_column >= 1:
        region["startColumn"] = finding.start_column
    region["endLine"] = max(finding.end_line, finding.start_line)
    same_line = region["endLine"] == finding.start_line
    backwards = same_line and finding.end_column < finding.start_column
    if finding.end_column >= 1 and not backwards:  # tools that give no end column say 1
        region["endColumn"] = finding.end_column
    return region


def _artifact_location(path: str) -> dict[str, Any]:
    uri = path_to_uri(path)
    if uri.startswith("file:"):
        return {"uri": uri}
    return {"uri": uri, "uriBaseId": SRCROOT}


def _notification(message: str, path: str, sample_id: str) -> dict[str, Any]:
    return {
        "level": "error",
        "message": {"text": message},
        "locations": [{"physicalLocation": {"artifactLocation": _artifact_location(path)}}],
        "properties": {"sample_id": sample_id},
    }


def _input_error_run(results: Sequence[SampleResult], version: str) -> dict[str, Any]:
    notifications = [
        _notification(r.error or "", r.sample.path or r.sample.id, r.sample.id) for r in results
    ]
    return {
        "tool": {"driver": {"name": INPUT_TOOL, "version": version, "rules": []}},
        "invocations": [
            {"executionSuccessful": False, "toolExecutionNotifications": notifications}
        ],
        "originalUriBaseIds": {SRCROOT: {"uri": _cwd_uri()}},
        "results": [],
        "properties": {
            "rules_hash": "",
            "tool_version": version,
            EXPORT_MARKER: f"vul2safe {version}",
        },
    }


def _cwd_uri() -> str:
    """``%SRCROOT%``: relative sample paths are relative to where the scan was started."""
    return path_to_uri(os.getcwd().rstrip("/") + "/")


def _cwe_tag(cwe: str) -> str:
    """``CWE-79`` → ``external/cwe/cwe-079``, the tag spelling CodeQL and GitHub use."""
    return f"external/cwe/cwe-{int(cwe.split('-')[1]):03d}"


def _short(message: str) -> str:
    first = message.strip().splitlines()[0] if message.strip() else ""
    return first if len(first) <= 200 else first[:197] + "..."
