"""Import: any tool's SARIF into findings (see the package docstring)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vul2safe.errors import InputError
from vul2safe.sarif.common import (
    _SEVERITY_VALUES,
    EXPORT_MARKER,
    SARIF_VERSION,
    _float,
    _int,
    _list,
    _obj,
    _str,
    resolve_artifact_uri,
    uri_to_path,
)
from vul2safe.schema import Finding, Severity, normalize_cwe, normalize_cwes
from vul2safe.severity import from_security_severity, normalize


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
