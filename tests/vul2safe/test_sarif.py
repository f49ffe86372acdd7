"""SARIF export/import: real CodeQL rule metadata, real Semgrep and Bandit SARIF, round trips."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from vul2safe.errors import InputError
from vul2safe.sarif import (
    LEVEL_FOR_SEVERITY,
    SECURITY_SEVERITY_SCORE,
    from_sarif,
    iter_sarif_results,
    load_sarif_schema,
    path_to_uri,
    read_sarif_file,
    resolve_artifact_uri,
    sarif_errors,
    to_sarif,
    uri_to_path,
    validate_sarif,
)
from vul2safe.schema import Finding, Sample, SampleResult, ScanReport, Severity, normalize_cwes
from vul2safe.severity import from_security_severity, normalize

H, M, L = Severity.HIGH, Severity.MEDIUM, Severity.LOW

_REPO = Path(__file__).resolve().parents[2]
_SHARED_CANDIDATES = [_REPO.parent / "shared", Path("/work/shared")]
CODEQL_FIXTURE_NAME = "fixtures/sarif/codeql-2.19.1-python-rules.sarif"

VULN_PY = """\
import pickle
import subprocess


def run(cmd):
    subprocess.call(cmd, shell=True)


def load(data):
    return pickle.loads(data)
"""


def _codeql_fixture_path() -> Path:
    for shared in _SHARED_CANDIDATES:
        path = shared / CODEQL_FIXTURE_NAME
        if path.is_file():
            return path
    pytest.fail(f"shared fixture {CODEQL_FIXTURE_NAME} not found beside the repository")


@pytest.fixture(scope="module")
def codeql_doc() -> dict[str, Any]:
    return read_sarif_file(_codeql_fixture_path())


def _rules(doc: dict[str, Any]) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = doc["runs"][0]["tool"]["driver"]["rules"]
    return rules


def _result(message: str = "problem here", line: int = 3, **extra: Any) -> dict[str, Any]:
    return {
        "message": {"text": message},
        "locations": [
            {
                "physicalLocation": {
                    "artifactLocation": {"uri": "main.py", "uriBaseId": "%SRCROOT%", "index": 0},
                    "region": {"startLine": line, "startColumn": 5, "endColumn": 20},
                }
            }
        ],
        **extra,
    }


def _expected_from_rule(rule: dict[str, Any]) -> tuple[Severity, list[str]]:
    """The documented precedence, computed independently from the rule descriptor."""
    properties = rule.get("properties", {})
    if "security-severity" in properties:
        severity = from_security_severity(float(properties["security-severity"]))
    elif "level" in rule.get("defaultConfiguration", {}):
        severity = normalize("sarif-level", rule["defaultConfiguration"]["level"])
    elif "problem.severity" in properties:
        severity = normalize("codeql-problem", properties["problem.severity"])
    else:
        severity = M
    cwes = normalize_cwes([t for t in properties.get("tags", []) if "cwe" in t.lower()])
    return severity, cwes


# --------------------------------------------------------------------------- CodeQL fixture


def test_codeql_fixture_is_valid_and_has_no_results(codeql_doc: dict[str, Any]) -> None:
    assert validate_sarif(codeql_doc) == []
    assert len(_rules(codeql_doc)) == 40
    assert from_sarif(codeql_doc) == []


def test_codeql_every_rule_by_index_follows_the_table(codeql_doc: dict[str, Any]) -> None:
    doc = copy.deepcopy(codeql_doc)
    rules = _rules(doc)
    doc["runs"][0]["results"] = [
        _result(line=i + 1, ruleIndex=i)
        for i in range(len(rules))  # no ruleId at all
    ]
    findings = from_sarif(doc)
    assert len(findings) == 40
    for rule, finding in zip(rules, findings, strict=True):
        severity, cwes = _expected_from_rule(rule)
        assert finding.rule_id == rule["id"]
        assert finding.severity is severity, rule["id"]
        assert finding.cwe == cwes, rule["id"]
        assert finding.scanner == "codeql"
        assert finding.path == "main.py"
    assert validate_sarif(doc) == []


@pytest.mark.parametrize(
    ("rule_id", "severity", "cwes", "tool_severity"),
    [
        ("py/unsafe-deserialization", H, ["CWE-502"], "security-severity 9.8"),
        ("py/insecure-temporary-file", H, ["CWE-377"], "security-severity 7.0"),  # ≥7 → high
        # level "error" but security-severity 6.1 wins → medium
        ("py/url-redirection", M, ["CWE-601"], "security-severity 6.1"),
        ("py/cookie-injection", M, ["CWE-20"], "security-severity 5.0"),
        ("py/reflective-xss", M, ["CWE-79", "CWE-116"], "security-severity 6.1"),
        ("py/use-of-input", H, ["CWE-94", "CWE-95"], "security-severity 9.8"),
        (
            "py/path-injection",
            H,
            ["CWE-22", "CWE-23", "CWE-36", "CWE-73", "CWE-99"],
            "security-severity 7.5",
        ),
        # no severity anywhere → SARIF's default level, warning
        ("py/summary/lines-of-code", M, [], "warning"),
    ],
)
def test_codeql_results_by_rule_id(
    codeql_doc: dict[str, Any],
    rule_id: str,
    severity: Severity,
    cwes: list[str],
    tool_severity: str,
) -> None:
    doc = copy.deepcopy(codeql_doc)
    doc["runs"][0]["results"] = [_result(ruleId=rule_id, level="error")]
    if rule_id.startswith("py/summary"):
        del doc["runs"][0]["results"][0]["level"]
    (finding,) = from_sarif(doc)
    assert (finding.rule_id, finding.severity, finding.cwe) == (rule_id, severity, cwes)
    assert finding.tool_severity == tool_severity
    assert (finding.start_line, finding.end_line) == (3, 3)  # endLine defaults to startLine
    assert (finding.start_column, finding.end_column) == (5, 20)


def test_codeql_query_pack_rules_in_extensions(codeql_doc: dict[str, Any]) -> None:
    """CodeQL with query packs puts rules in tool.extensions[] and references them there."""
    doc = copy.deepcopy(codeql_doc)
    run = doc["runs"][0]
    rules = run["tool"]["driver"].pop("rules")
    run["tool"]["extensions"][0]["rules"] = rules
    by_id = {rule["id"]: index for index, rule in enumerate(rules)}
    xss = by_id["py/reflective-xss"]
    run["results"] = [
        # reference by index into extension 0 only
        _result(rule={"index": by_id["py/sql-injection"], "toolComponent": {"index": 0}}),
        # ruleId + ruleIndex, component named
        _result(
            ruleId="py/reflective-xss",
            ruleIndex=xss,
            rule={
                "id": "py/reflective-xss",
                "index": xss,
                "toolComponent": {"name": "codeql/python-queries"},
            },
        ),
        # ruleId only: found by id across driver + extensions
        _result(ruleId="py/flask-debug"),
    ]
    assert validate_sarif(doc) == []
    sql, xss_finding, flask = from_sarif(doc)
    assert (sql.rule_id, sql.severity, sql.cwe) == ("py/sql-injection", H, ["CWE-89"])
    assert (xss_finding.severity, xss_finding.cwe) == (M, ["CWE-79", "CWE-116"])
    assert (flask.severity, flask.cwe) == (H, ["CWE-215", "CWE-489"])


def test_severity_precedence_without_security_severity(codeql_doc: dict[str, Any]) -> None:
    doc = copy.deepcopy(codeql_doc)
    rules = _rules(doc)
    for rule in rules:
        rule["properties"].pop("security-severity", None)
    rules[0]["defaultConfiguration"].pop("level")  # → problem.severity "error"
    rules[1]["defaultConfiguration"].pop("level")
    rules[1]["properties"]["problem.severity"] = "recommendation"
    rules[2]["defaultConfiguration"].pop("level")
    rules[2]["properties"].pop("problem.severity")  # → nothing → warning
    doc["runs"][0]["results"] = [
        _result(ruleIndex=0),
        _result(ruleIndex=1),
        _result(ruleIndex=2),
        _result(ruleIndex=3),  # defaultConfiguration.level warning
        _result(ruleIndex=3, level="note"),  # result level beats the rule's default
        _result(ruleIndex=3, properties={"security-severity": "9.0"}),  # result score first
    ]
    got = [(f.severity, f.tool_severity) for f in from_sarif(doc)]
    assert got == [
        (H, "problem.severity error"),
        (L, "problem.severity recommendation"),
        (M, "warning"),
        (M, "warning"),
        (L, "note"),
        (H, "security-severity 9.0"),
    ]


# --------------------------------------------------------------------------- real tools


@pytest.fixture
def vuln_dir(tmp_path: Path) -> Path:
    (tmp_path / "vuln.py").write_text(VULN_PY, encoding="utf-8")
    return tmp_path


def _codeshield_python_rules() -> Path:
    """codeshield's rules, from the tool environment (``vul2safe tools install``)."""
    from vul2safe import tools
    from vul2safe.errors import ScannerNotAvailable

    try:
        root = tools.icd_rules_dir()
    except ScannerNotAvailable as exc:
        pytest.fail(str(exc))
    rules = root / "semgrep/_generated_/python_cyberseceval.json"
    if not rules.is_file():
        pytest.fail(f"CodeShield rules not found at {rules}")
    return rules


def _run_semgrep(workdir: Path) -> dict[str, Any]:
    """The Semgrep CLI's own ``--sarif`` (of the tool environment), as a third-party log."""
    from vul2safe import tools

    semgrep = str(tools.venv_dir() / "bin" / "semgrep")
    if not Path(semgrep).is_file():
        pytest.fail(tools.missing_message("semgrep"))
    rules = _codeshield_python_rules()
    proc = subprocess.run(
        [
            semgrep,
            "scan",
            "--sarif",
            "--metrics=off",
            "--disable-version-check",
            "--config",
            str(rules),
            "vuln.py",
        ],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


def _run_bandit_sarif(workdir: Path) -> dict[str, Any]:
    probe = subprocess.run(
        [sys.executable, "-c", "import bandit.formatters.sarif"], capture_output=True, check=False
    )
    if probe.returncode != 0:
        pytest.fail("bandit's SARIF formatter needs its extra: pip install 'bandit[sarif]'")
    proc = subprocess.run(
        [sys.executable, "-m", "bandit", "-f", "sarif", "-q", "vuln.py"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode in (0, 1), proc.stderr[-2000:]  # 1 = issues found
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


def _by_cwe(findings: list[Finding], cwe: str) -> Finding:
    matches = [f for f in findings if cwe in f.cwe]
    assert matches, f"no finding with {cwe} in {findings}"
    return matches[0]


@pytest.mark.integration
def test_real_semgrep_sarif(vuln_dir: Path) -> None:
    doc = _run_semgrep(vuln_dir)
    assert validate_sarif(doc) == []
    findings = from_sarif(doc)
    shell = _by_cwe(findings, "CWE-78")
    pickle_finding = _by_cwe(findings, "CWE-502")
    # CodeShield's rules are warnings; Semgrep writes no result level, only the rule default
    for finding in (shell, pickle_finding):
        assert finding.severity is normalize("sarif-level", "warning")
        assert finding.scanner.startswith("semgrep")
        assert finding.path == "vuln.py"
    assert (shell.start_line, shell.start_column, shell.end_line) == (6, 5, 6)
    assert (pickle_finding.start_line, pickle_finding.start_column) == (10, 12)
    _assert_round_trip(findings, "vuln.py")


@pytest.mark.integration
def test_real_bandit_sarif(vuln_dir: Path) -> None:
    doc = _run_bandit_sarif(vuln_dir)
    assert validate_sarif(doc) == []
    findings = from_sarif(doc)
    assert {f.scanner for f in findings} == {"bandit"}
    shell = next(f for f in findings if f.rule_id == "B602")
    assert (shell.severity, shell.cwe, shell.start_line) == (H, ["CWE-78"], 6)  # level error
    loads = next(f for f in findings if f.rule_id == "B301")
    assert (loads.severity, loads.cwe, loads.start_line) == (M, ["CWE-502"], 10)
    imports = next(f for f in findings if f.rule_id == "B403")
    assert imports.severity is L  # level note
    _assert_round_trip(findings, "vuln.py")


def _assert_round_trip(findings: list[Finding], sample_path: str) -> None:
    """Imported findings → our export → schema-valid → import gives the same findings."""
    scanners = sorted({f.scanner for f in findings})
    result = SampleResult(Sample(sample_path, "x", "python", sample_path))
    for scanner in scanners:
        mine = [f for f in findings if f.scanner == scanner]
        result.reports.append(
            ScanReport(sample_path, sample_path, "python", scanner, "1.0", "abc", mine)
        )
    doc = to_sarif([result], {s: {"version": "1.0", "rules_hash": "abc"} for s in scanners})
    assert validate_sarif(doc) == []
    assert from_sarif(json.loads(json.dumps(doc))) == findings


# --------------------------------------------------------------------------- our export


def _finding(scanner: str, rule: str, severity: Severity, path: str, **kw: Any) -> Finding:
    values: dict[str, Any] = {
        "scanner": scanner,
        "rule_id": rule,
        "severity": severity,
        "tool_severity": f"{severity.value.upper()} (confidence HIGH)",
        "message": f"{rule} found",
        "path": path,
        "start_line": 4,
        "end_line": 4,
        "start_column": 0,
        "end_column": 0,
        "cwe": [],
    }
    values.update(kw)
    return Finding(**values)


ODD_PATHS = [
    "src/app.py",
    "data/gen.jsonl#sample 7",
    "weird dir/100% #1:é.py",
    "/abs/path/with space/x.c",
]


def _scan_results() -> tuple[list[SampleResult], dict[str, dict[str, str]]]:
    results: list[SampleResult] = []
    for index, path in enumerate(ODD_PATHS):
        sample = Sample(f"id-{index}" if "#" in path else path, "code", "python", path)
        result = SampleResult(sample)
        bandit = [
            _finding(
                "bandit",
                "B602:subprocess_popen_with_shell_equals_true",
                H,
                path,
                start_line=6,
                end_line=7,
                start_column=5,
                end_column=37,
                cwe=["CWE-78"],
            ),
            _finding("bandit", "B101:assert_used", L, path, cwe=["CWE-703"]),
        ]
        semgrep = [
            _finding(
                "semgrep",
                "python.lang.security.audit.xss",
                M,
                path,
                start_line=2,
                end_line=2,
                start_column=1,
                end_column=0,
                cwe=["CWE-79", "CWE-116"],
                tool_severity="WARNING",
                message="multi\nline message",
            ),
            _finding(
                "semgrep", "no-cwe-rule", M, path, tool_severity="INFO", start_line=0, end_line=0
            ),
        ]
        result.reports.append(
            ScanReport(sample.id, path, "python", "bandit", "1.9.4", "r1", bandit)
        )
        if index == 2:
            result.reports.append(
                ScanReport(
                    sample.id,
                    path,
                    "python",
                    "semgrep",
                    "1.182.0",
                    "r2",
                    [],
                    error="semgrep timed out after 60 s",
                )
            )
        else:
            result.reports.append(
                ScanReport(sample.id, path, "python", "semgrep", "1.182.0", "r2", semgrep)
            )
        results.append(result)
    broken = Sample("bad.py", "", "python", "bad.py")
    results.append(SampleResult(broken, error="not UTF-8 (invalid byte at offset 3)"))
    scanners = {
        "bandit": {"version": "1.9.4", "rules_hash": "r1"},
        "semgrep": {"version": "1.182.0", "rules_hash": "r2"},
        "cppcheck": {"version": "2.22", "rules_hash": "r3"},  # ran, found nothing
    }
    return results, scanners


def test_export_is_schema_valid_and_round_trips_exactly() -> None:
    results, scanners = _scan_results()
    doc = json.loads(json.dumps(to_sarif(results, scanners)))
    assert validate_sarif(doc) == []
    original = [f for r in results for f in r.findings]
    imported = from_sarif(doc)
    key = lambda f: (f.scanner, f.path, f.rule_id, f.start_line)  # noqa: E731
    assert sorted(imported, key=key) == sorted(original, key=key)


def test_export_shape() -> None:
    results, scanners = _scan_results()
    doc = to_sarif(results, scanners)
    assert doc["version"] == "2.1.0"
    names = [run["tool"]["driver"]["name"] for run in doc["runs"]]
    assert names == ["bandit", "semgrep", "cppcheck", "vul2safe"]
    bandit, semgrep, cppcheck, inputs = doc["runs"]
    assert bandit["properties"]["rules_hash"] == "r1"
    assert bandit["properties"]["tool_version"] == "1.9.4"
    assert bandit["tool"]["driver"]["version"] == "1.9.4"
    assert bandit["tool"]["driver"]["informationUri"].startswith("https://")
    rules = bandit["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == [
        "B602:subprocess_popen_with_shell_equals_true",
        "B101:assert_used",
    ]
    assert rules[0]["properties"]["tags"] == ["security", "external/cwe/cwe-078"]
    assert rules[0]["properties"]["security-severity"] == SECURITY_SEVERITY_SCORE[H] == "8.0"
    assert rules[0]["defaultConfiguration"]["level"] == "error"
    assert rules[1]["properties"]["security-severity"] == "2.0"
    for result in bandit["results"]:
        rule = rules[result["ruleIndex"]]
        assert rule["id"] == result["ruleId"]
        assert result["level"] == LEVEL_FOR_SEVERITY[Severity(result["properties"]["severity"])]
        assert {"severity", "tool_severity", "cwe"} <= result["properties"].keys()
    first = bandit["results"][0]
    assert first["locations"][0]["physicalLocation"]["region"] == {
        "startLine": 6,
        "startColumn": 5,
        "endLine": 7,
        "endColumn": 37,
    }
    xss = next(r for r in semgrep["tool"]["driver"]["rules"] if r["id"].endswith("xss"))
    assert xss["properties"]["security-severity"] == "5.5"
    assert "external/cwe/cwe-079" in xss["properties"]["tags"]
    # scanner errors and input errors survive as error notifications with the location
    (note,) = semgrep["invocations"][0]["toolExecutionNotifications"]
    assert note["level"] == "error"
    uri = note["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert uri_to_path(uri) == ODD_PATHS[2]
    assert semgrep["invocations"][0]["executionSuccessful"] is False
    assert cppcheck["results"] == [] and cppcheck["invocations"][0]["executionSuccessful"]
    assert inputs["invocations"][0]["toolExecutionNotifications"][0]["message"]["text"].startswith(
        "not UTF-8"
    )


def test_errors_read_back() -> None:
    results, scanners = _scan_results()
    errors = sarif_errors(to_sarif(results, scanners))
    assert [(e.scanner, e.path, e.message) for e in errors] == [
        ("semgrep", ODD_PATHS[2], "semgrep timed out after 60 s"),
        ("vul2safe", "bad.py", "not UTF-8 (invalid byte at offset 3)"),
    ]


def test_jsonl_ids_survive_as_uris() -> None:
    results, scanners = _scan_results()
    doc = to_sarif(results, scanners)
    uris = {
        r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        for run in doc["runs"]
        for r in run["results"]
    }
    assert "data/gen.jsonl%23sample%207" in uris
    assert "file:///abs/path/with%20space/x.c" in uris
    imported = list(iter_sarif_results(doc))
    jsonl = next(r for r in imported if r.finding.path == "data/gen.jsonl#sample 7")
    assert jsonl.sample_id == "id-1"
    assert jsonl.uri_base_id == "%SRCROOT%"
    assert jsonl.resolved == str(Path.cwd() / "data/gen.jsonl#sample 7")


@pytest.mark.parametrize("path", [*ODD_PATHS, "C:\\win\\a.py", "a?b=c&d", "ü/ñ.py"])
def test_path_uri_round_trip(path: str) -> None:
    uri = path_to_uri(path)
    assert uri_to_path(uri) == path
    assert "#" not in uri and " " not in uri


def test_uri_to_path_accepts_other_tools_uris() -> None:
    assert uri_to_path("file:///home/u/a%20b.py") == "/home/u/a b.py"
    assert uri_to_path("file:/home/u/x.py") == "/home/u/x.py"
    assert uri_to_path("file://localhost/x.py") == "/x.py"
    assert uri_to_path("https://example.com/x.py") == "https://example.com/x.py"
    assert uri_to_path("src/a#b.py") == "src/a#b.py"  # unencoded '#' stays in the name


def test_resolve_against_original_uri_base_ids() -> None:
    bases = {"SRC": {"uri": "file:///proj/"}, "PKG": {"uri": "pkg/", "uriBaseId": "SRC"}}
    assert resolve_artifact_uri("a.py", "SRC", bases) == "/proj/a.py"
    assert resolve_artifact_uri("a.py", "PKG", bases) == "/proj/pkg/a.py"
    assert resolve_artifact_uri("a.py", "%SRCROOT%", bases) is None
    assert resolve_artifact_uri("a.py", None, bases) is None
    assert resolve_artifact_uri("file:///x/y.py", None, {}) == "/x/y.py"


# --------------------------------------------------------------------------- foreign SARIF


def test_foreign_results_are_read_tolerantly() -> None:
    doc = {
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "SomeTool",
                        "rules": [
                            {
                                "id": "R1",
                                "messageStrings": {"m": {"text": "{0} flows to {1}"}},
                                "relationships": [
                                    {"target": {"id": "89", "toolComponent": {"name": "CWE"}}}
                                ],
                                "properties": {"cwe": "CWE-564"},
                            },
                        ],
                    }
                },
                "results": [
                    {
                        "ruleId": "R1",
                        "message": {"id": "m", "arguments": ["input", "query"]},
                        "locations": [
                            {
                                "physicalLocation": {
                                    "artifactLocation": {"uri": "file:///srv/app.py"},
                                    "region": {"startLine": 9},
                                }
                            }
                        ],
                    },
                    {"ruleId": "R1", "kind": "pass", "message": {"text": "ok"}},
                    {
                        "ruleId": "R1",
                        "message": {"text": "muted"},
                        "suppressions": [{"kind": "inSource"}],
                    },
                    {
                        "ruleId": "R1",
                        "message": {"text": "rejected suppression still counts"},
                        "suppressions": [{"kind": "external", "status": "rejected"}],
                    },
                    {"message": {"text": "no location, no rule"}},
                ],
            },
            {"tool": {"driver": {}}, "results": None},
            "not-a-run",
        ],
    }
    findings = from_sarif(doc, default_scanner="imported")
    assert [f.message for f in findings] == [
        "input flows to query",
        "rejected suppression still counts",
        "no location, no rule",
    ]
    first = findings[0]
    assert (first.scanner, first.path) == ("sometool", "/srv/app.py")
    assert first.cwe == ["CWE-564", "CWE-89"]
    assert (first.start_line, first.end_line, first.start_column, first.end_column) == (9, 9, 1, 0)
    assert first.severity is M  # nothing said → warning
    last = findings[-1]
    assert (last.rule_id, last.path, last.start_line) == ("unknown-rule", "", 0)


# --------------------------------------------------------------------------- reading + schema


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"{not json", "malformed JSON"),
        (b"", "empty file"),
        (b"[1, 2]", "not a SARIF log"),
        (b'{"version": "2.1.0"}', "not a SARIF log"),
        (b'{"version": "2.0.0", "runs": []}', "not supported"),
        (b'\xff\xfe{"runs": []}', "not UTF-8"),
    ],
)
def test_read_sarif_file_explains_bad_input(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "in.sarif"
    path.write_bytes(content)
    with pytest.raises(InputError) as info:
        read_sarif_file(path)
    message = str(info.value)
    assert expected in message and str(path) in message and "\n" not in message


def test_read_sarif_file_missing_and_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"not found.*--sarif"):
        read_sarif_file(tmp_path / "nope.sarif")
    with pytest.raises(InputError, match="is a directory"):
        read_sarif_file(tmp_path)


def test_read_sarif_file_accepts_bom(tmp_path: Path) -> None:
    path = tmp_path / "bom.sarif"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"version": "2.1.0", "runs": []}).encode())
    assert read_sarif_file(path) == {"version": "2.1.0", "runs": []}


def test_validate_sarif_reports_violations() -> None:
    assert load_sarif_schema()["title"].startswith("Static Analysis Results Format (SARIF)")
    bad = {
        "version": "2.1.0",
        "runs": [
            {
                "tool": {"driver": {"name": "x"}},
                "results": [
                    {
                        "message": {"text": "m"},
                        "level": "fatal",
                        "locations": [
                            {
                                "physicalLocation": {
                                    "artifactLocation": {"uri": "has space#and#hashes.py"}
                                }
                            }
                        ],
                    }
                ],
            }
        ],
    }
    errors = validate_sarif(bad)
    assert any(e.startswith("runs/0/results/0/level:") for e in errors)
    assert any("artifactLocation/uri" in e for e in errors)
    assert validate_sarif({"runs": []})[0].startswith("<root>:")  # version is required
