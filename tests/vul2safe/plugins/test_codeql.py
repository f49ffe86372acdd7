"""The ``codeql`` scanner. CodeQL itself cannot be installed here, so:

- availability and configuration are tested against the real environment lookups;
- SARIF → target mapping is tested on the real CodeQL 2.19.1 rule metadata (shared fixture)
  with results added the way CodeQL writes them (``%SRCROOT%``-relative URIs, rule references
  into query-pack extensions);
- the command sequence is exercised end to end with a stand-in ``codeql`` executable that
  records its arguments and writes SARIF shaped like CodeQL's.
"""

from __future__ import annotations

import copy
import json
import os
import stat
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from vul2safe.errors import ScannerFailed, ScannerNotAvailable
from vul2safe.plugins.scanner.codeql import (
    CODEQL_LANGUAGES,
    INSTALL_HINT,
    CodeQLScanner,
    build_mode_for,
    default_suite,
    find_codeql,
    map_codeql_sarif,
    suites_for,
)
from vul2safe.sarif import read_sarif_file
from vul2safe.scanning import ScanOptions, ScanTarget
from vul2safe.schema import Severity

_REPO = Path(__file__).resolve().parents[3]
FIXTURE = "fixtures/sarif/codeql-2.19.1-python-rules.sarif"


@pytest.fixture(scope="module")
def codeql_doc() -> dict[str, Any]:
    for shared in (_REPO.parent / "shared", Path("/work/shared")):
        if (shared / FIXTURE).is_file():
            return read_sarif_file(shared / FIXTURE)
    pytest.fail(f"shared fixture {FIXTURE} not found beside the repository")


@pytest.fixture
def no_codeql(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("CODEQL_HOME", raising=False)


def test_declaration() -> None:
    assert CodeQLScanner.name == "codeql"
    assert CodeQLScanner.languages == {"c", "cpp", "python", "java", "javascript", "csharp", "go"}
    assert CODEQL_LANGUAGES["c"] == CODEQL_LANGUAGES["cpp"] == "cpp"


def test_not_available_without_the_cli(no_codeql: None) -> None:
    scanner = CodeQLScanner()
    status = scanner.available()
    assert not status.ok
    assert status.reason == INSTALL_HINT
    assert "github.com/github/codeql-action/releases" in status.reason
    assert "`codeql` on PATH" in status.reason
    assert scanner.version() == "unavailable"
    with pytest.raises(ScannerNotAvailable):
        scanner.scan_batch([], ScanOptions(), 10)


def test_found_through_codeql_home(
    no_codeql: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = tmp_path / "bundle" / "codeql"
    bundle.mkdir(parents=True)
    exe = bundle / "codeql"
    exe.write_text('#!/bin/sh\necho \'{"version": "2.20.1"}\'\n', encoding="utf-8")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("CODEQL_HOME", str(tmp_path / "bundle"))
    assert find_codeql() == str(exe)
    assert CodeQLScanner().available().ok
    assert CodeQLScanner().version() == "2.20.1"


def test_suites_and_build_modes_are_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VUL2SAFE_CODEQL_SUITE_PYTHON", raising=False)
    monkeypatch.delenv("VUL2SAFE_CODEQL_BUILD_MODE_CPP", raising=False)
    assert suites_for("python") == [
        "codeql/python-queries:codeql-suites/python-security-extended.qls"
    ]
    assert default_suite("cpp") == "codeql/cpp-queries:codeql-suites/cpp-security-extended.qls"
    assert build_mode_for("cpp") == "none" and build_mode_for("go") == "autobuild"
    before = CodeQLScanner().rules_hash(ScanOptions())
    monkeypatch.setenv("VUL2SAFE_CODEQL_SUITE_PYTHON", "my/pack:a.qls, other/pack")
    monkeypatch.setenv("VUL2SAFE_CODEQL_BUILD_MODE_CPP", "autobuild")
    assert suites_for("python") == ["my/pack:a.qls", "other/pack"]
    assert build_mode_for("cpp") == "autobuild"
    assert CodeQLScanner().rules_hash(ScanOptions()) != before


# --------------------------------------------------------------------------- mapping


def _targets(work: Path) -> list[ScanTarget]:
    return [
        ScanTarget("gen.jsonl-id-1", "python", work / "s000000.py"),
        ScanTarget("app/views.py", "python", work / "s000001.py"),
        ScanTarget("clean.py", "python", work / "s000002.py"),
    ]


def _codeql_result(rule_ref: dict[str, Any], uri: str, line: int) -> dict[str, Any]:
    return {
        **rule_ref,
        "message": {"text": "This data flows to a [sink](1)."},
        "locations": [
            {
                "physicalLocation": {
                    "artifactLocation": {"uri": uri, "uriBaseId": "%SRCROOT%", "index": 0},
                    "region": {"startLine": line, "startColumn": 12, "endColumn": 30},
                }
            }
        ],
        "partialFingerprints": {"primaryLocationLineHash": "abc:1"},
    }


def test_map_codeql_sarif_on_real_rule_metadata(codeql_doc: dict[str, Any], tmp_path: Path) -> None:
    doc = copy.deepcopy(codeql_doc)
    run = doc["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    index = {rule["id"]: i for i, rule in enumerate(rules)}
    # the query-pack layout: rules live in extension 0, results point there
    run["tool"]["extensions"][0]["rules"] = copy.deepcopy(rules)
    run["results"] = [
        _codeql_result(
            {
                "ruleId": "py/unsafe-deserialization",
                "ruleIndex": index["py/unsafe-deserialization"],
            },
            "s000000.py",
            10,
        ),
        _codeql_result(
            {
                "rule": {
                    "id": "py/url-redirection",
                    "index": index["py/url-redirection"],
                    "toolComponent": {"index": 0},
                }
            },
            "s000001.py",
            4,
        ),
        _codeql_result({"ruleId": "py/insecure-cookie"}, "sub/dir/s000001.py", 7),
        _codeql_result({"ruleId": "py/sql-injection"}, "not-ours.py", 1),
    ]
    targets = _targets(tmp_path)
    result = map_codeql_sarif(doc, targets)
    assert set(result.findings) == {str(targets[0].path), str(targets[1].path)}
    (pickle_finding,) = result.findings[str(targets[0].path)]
    assert pickle_finding.path == str(targets[0].path)
    assert pickle_finding.scanner == "codeql"
    assert (pickle_finding.severity, pickle_finding.cwe) == (Severity.HIGH, ["CWE-502"])
    assert (
        pickle_finding.start_line,
        pickle_finding.start_column,
        pickle_finding.end_line,
        pickle_finding.end_column,
    ) == (10, 12, 10, 30)
    redirect, cookie = result.findings[str(targets[1].path)]
    assert (redirect.rule_id, redirect.severity, redirect.cwe) == (
        "py/url-redirection",
        Severity.MEDIUM,
        ["CWE-601"],
    )  # 6.1 → medium
    assert (cookie.severity, cookie.cwe) == (Severity.MEDIUM, ["CWE-614", "CWE-1004", "CWE-1275"])
    assert result.errors == {}


# --------------------------------------------------------------------------- stand-in CLI


FAKE_CODEQL = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path

    args = sys.argv[1:]
    with open(os.environ["FAKE_CODEQL_LOG"], "a") as log:
        log.write(json.dumps(args) + "\\n")
    mode = os.environ.get("FAKE_CODEQL_MODE", "ok")
    if args[:1] == ["version"]:
        print(json.dumps({"productName": "CodeQL", "version": "2.20.4"}))
        sys.exit(0)
    if args[:2] == ["database", "create"]:
        db = Path(args[2])
        source = next(a.split("=", 1)[1] for a in args if a.startswith("--source-root="))
        db.mkdir(parents=True, exist_ok=True)
        (db / "source").write_text(source)
        sys.exit(0)
    if args[:2] == ["database", "analyze"]:
        if mode == "nopack":
            print("A fatal error occurred: Query pack codeql/python-queries cannot be found.",
                  file=sys.stderr)
            sys.exit(2)
        if mode == "crash":
            print("Oops: out of memory", file=sys.stderr)
            sys.exit(99)
        source = Path((Path(args[2]) / "source").read_text())
        out = next(a.split("=", 1)[1] for a in args if a.startswith("--output="))
        results = []
        for path in sorted(source.iterdir()):
            for number, line in enumerate(path.read_text().splitlines(), start=1):
                if "pickle.loads" in line or "strcpy" in line:
                    results.append({
                        "ruleId": "x/unsafe",
                        "ruleIndex": 0,
                        "message": {"text": "unsafe call"},
                        "locations": [{"physicalLocation": {
                            "artifactLocation": {"uri": path.name, "uriBaseId": "%SRCROOT%"},
                            "region": {"startLine": number, "startColumn": 1}}}],
                    })
        rule = {"id": "x/unsafe", "properties": {
            "security-severity": "9.8", "tags": ["security", "external/cwe/cwe-502"]}}
        sarif = {"version": "2.1.0", "runs": [{
            "tool": {"driver": {"name": "CodeQL", "semanticVersion": "2.20.4", "rules": [rule]}},
            "results": results}]}
        Path(out).write_text(json.dumps(sarif))
        sys.exit(0)
    sys.exit(64)
    """
)


@pytest.fixture
def fake_codeql(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ``codeql`` on PATH that logs its argv to the returned file."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "codeql"
    exe.write_text(f"#!{sys.executable}\n{FAKE_CODEQL}", encoding="utf-8")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "codeql-calls.jsonl"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_CODEQL_LOG", str(log))
    monkeypatch.delenv("VUL2SAFE_CODEQL_SUITE_PYTHON", raising=False)
    monkeypatch.delenv("VUL2SAFE_CODEQL_SUITE_CPP", raising=False)
    monkeypatch.delenv("VUL2SAFE_CODEQL_BUILD_MODE_CPP", raising=False)
    return log


def _write_targets(work: Path) -> list[ScanTarget]:
    work.mkdir()
    sources = {
        "s000000.py": "import pickle\n\nobj = pickle.loads(data)\n",
        "s000001.c": "#include <string.h>\nvoid f(char *s) { char b[4]; strcpy(b, s); }\n",
        "s000002.py": "print('clean')\n",
        "s000003.txt": "not a codeql language\n",
    }
    for name, code in sources.items():
        (work / name).write_text(code, encoding="utf-8")
    languages = ["python", "c", "python", "rust"]
    return [
        ScanTarget(f"sample-{i}", lang, work / name)
        for i, (name, lang) in enumerate(zip(sources, languages, strict=True))
    ]


def test_scan_batch_with_stand_in_cli(fake_codeql: Path, tmp_path: Path) -> None:
    targets = _write_targets(tmp_path / "work")
    scanner = CodeQLScanner()
    assert scanner.available().ok and scanner.version() == "2.20.4"
    result = scanner.scan_batch(targets, ScanOptions(jobs=2), timeout_s=120)

    assert set(result.findings) == {str(targets[0].path), str(targets[1].path)}
    (pickle_finding,) = result.findings[str(targets[0].path)]
    assert (pickle_finding.start_line, pickle_finding.severity, pickle_finding.cwe) == (
        3,
        Severity.HIGH,
        ["CWE-502"],
    )
    assert result.findings[str(targets[1].path)][0].start_line == 2

    calls = [json.loads(line) for line in fake_codeql.read_text().splitlines()]
    creates = [c for c in calls if c[:2] == ["database", "create"]]
    analyzes = [c for c in calls if c[:2] == ["database", "analyze"]]
    assert sorted(next(a for a in c if a.startswith("--language=")) for c in creates) == [
        "--language=cpp",
        "--language=python",
    ]
    for call in creates:
        assert "--build-mode=none" in call and "--overwrite" in call and "--threads=2" in call
    suites = sorted(c[3] for c in analyzes)
    assert suites == [default_suite("cpp"), default_suite("python")]
    for call in analyzes:
        assert "--format=sarif-latest" in call
        assert not any(a.startswith("--download") for a in call)  # offline: bundle packs only


def test_missing_query_pack_is_reported_as_unavailable(
    fake_codeql: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_CODEQL_MODE", "nopack")
    targets = _write_targets(tmp_path / "work")[:1]
    with pytest.raises(ScannerNotAvailable, match="CodeQL bundle"):
        CodeQLScanner().scan_batch(targets, ScanOptions(), timeout_s=60)


def test_tool_crash_is_a_scanner_failure(
    fake_codeql: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_CODEQL_MODE", "crash")
    targets = _write_targets(tmp_path / "work")[:1]
    with pytest.raises(ScannerFailed, match=r"exit 99.*out of memory"):
        CodeQLScanner().scan_batch(targets, ScanOptions(), timeout_s=60)
