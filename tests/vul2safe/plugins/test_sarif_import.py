"""The ``sarif`` scanner: mapping SARIF results (original paths) to engine targets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from vul2safe.errors import InputError, ScannerNotAvailable
from vul2safe.languages import SUFFIXES
from vul2safe.plugins.scanner.sarif_import import (
    NO_INPUT_MESSAGE,
    SarifImportScanner,
    TargetIndex,
    map_sarif_to_targets,
)
from vul2safe.sarif import to_sarif
from vul2safe.scanning import ScanOptions, ScanTarget, scan_samples
from vul2safe.schema import Finding, Sample, SampleResult, ScanReport, Severity


def _target(sample_id: str, work: Path, index: int, language: str = "python") -> ScanTarget:
    return ScanTarget(sample_id, language, work / f"s{index:06d}{SUFFIXES[language]}")


def _doc(*locations: dict[str, Any], base_ids: dict[str, Any] | None = None) -> dict[str, Any]:
    """A Semgrep-like log: one rule, one result per artifact location."""
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": "Semgrep OSS",
                "rules": [
                    {
                        "id": "py.exec",
                        "defaultConfiguration": {"level": "error"},
                        "properties": {"tags": ["CWE-95: Eval Injection", "security"]},
                    },
                ],
            }
        },
        "results": [
            {
                "ruleId": "py.exec",
                "message": {"text": f"exec #{i}"},
                "locations": [
                    {
                        "physicalLocation": {
                            "artifactLocation": location,
                            "region": {"startLine": i + 1},
                        }
                    }
                ],
            }
            for i, location in enumerate(locations)
        ],
    }
    if base_ids is not None:
        run["originalUriBaseIds"] = base_ids
    return {"version": "2.1.0", "runs": [run]}


@pytest.fixture
def work(tmp_path: Path) -> Path:
    return tmp_path / "work"


def test_scanner_declaration() -> None:
    scanner = SarifImportScanner()
    assert scanner.name == "sarif"
    assert scanner.default is False and scanner.cacheable is False
    assert scanner.languages == frozenset(SUFFIXES)
    assert scanner.available().ok


def test_exact_match(work: Path) -> None:
    targets = [_target("src/app.py", work, 0), _target("src/other.py", work, 1)]
    result = map_sarif_to_targets([_doc({"uri": "src/app.py"})], targets, cwd=Path("/home/u"))
    (finding,) = result.findings[str(targets[0].path)]
    assert finding.path == str(targets[0].path)  # the engine's key
    assert (finding.rule_id, finding.severity, finding.cwe) == (
        "py.exec",
        Severity.HIGH,
        ["CWE-95"],
    )
    assert str(targets[1].path) not in result.findings


def test_exact_match_after_normalising(work: Path) -> None:
    targets = [_target("./src/app.py", work, 0)]
    result = map_sarif_to_targets([_doc({"uri": "src/./app.py"})], targets, cwd=Path("/x"))
    assert list(result.findings) == [str(targets[0].path)]


def test_resolved_through_original_uri_base_ids(work: Path) -> None:
    targets = [_target("/proj/src/app.py", work, 0), _target("/elsewhere/src/app.py", work, 1)]
    doc = _doc(
        {"uri": "src/app.py", "uriBaseId": "ROOT"}, base_ids={"ROOT": {"uri": "file:///proj/"}}
    )
    result = map_sarif_to_targets([doc], targets, cwd=Path("/tmp"))
    assert list(result.findings) == [str(targets[0].path)]


def test_resolved_against_cwd(work: Path) -> None:
    # the user passed an absolute path; the tool wrote a path relative to where it ran
    targets = [_target("/home/u/proj/lib/util.py", work, 0)]
    doc = _doc({"uri": "lib/util.py", "uriBaseId": "%SRCROOT%"})  # base id not defined
    result = map_sarif_to_targets([doc], targets, cwd=Path("/home/u/proj"))
    assert list(result.findings) == [str(targets[0].path)]


def test_unique_suffix_match_both_directions(work: Path) -> None:
    targets = [_target("src/app.py", work, 0), _target("/data/x/tool/run.py", work, 1)]
    doc = _doc(
        {"uri": "file:///ci/build/repo/src/app.py"},  # SARIF longer than the id
        {"uri": "tool/run.py"},
    )  # id longer than the SARIF
    result = map_sarif_to_targets([doc], targets, cwd=Path("/nowhere"))
    assert sorted(result.findings) == sorted(str(t.path) for t in targets)


def test_suffix_match_is_by_whole_components(work: Path) -> None:
    targets = [_target("src/myapp.py", work, 0)]
    result = map_sarif_to_targets([_doc({"uri": "app.py"})], targets, cwd=Path("/n"))
    assert result.findings == {}


def test_ambiguous_suffix_maps_to_nothing(work: Path) -> None:
    targets = [_target("a/app.py", work, 0), _target("b/app.py", work, 1)]
    doc = _doc({"uri": "app.py"}, {"uri": "/ci/b/app.py"})
    result = map_sarif_to_targets([doc], targets, cwd=Path("/n"))
    # "app.py" fits both → dropped; "/ci/b/app.py" fits only b/app.py
    assert list(result.findings) == [str(targets[1].path)]
    assert result.findings[str(targets[1].path)][0].message == "exec #1"


def test_no_match(work: Path) -> None:
    targets = [_target("src/app.py", work, 0)]
    doc = _doc({"uri": "other/file.py"}, {"uri": "https://example.com/app.js"})
    assert map_sarif_to_targets([doc], targets, cwd=Path("/n")).findings == {}


def test_index_rules_directly(work: Path) -> None:
    target = _target("../proj/app.py", work, 0)
    index = TargetIndex([target], Path("/home/u/other"))
    assert index.match("/srv/proj/app.py", None, None) is target  # leading '..' ignored
    assert index.match("", None, None) is None


def _exported(work: Path) -> tuple[dict[str, Any], list[ScanTarget]]:
    """Our own export of a JSONL sample, a file sample and a sample whose scanner failed."""
    jsonl = Sample("42", "eval(x)", "python", "data/gen.jsonl#42")
    plain = Sample("src/a b.py", "eval(y)", "python", "src/a b.py")
    failed = Sample("src/c.py", "x", "python", "src/c.py")
    finding = Finding(
        "semgrep",
        "py.eval",
        Severity.HIGH,
        "ERROR",
        "eval of input",
        "data/gen.jsonl#42",
        1,
        1,
        1,
        8,
        ["CWE-95"],
    )
    results = [
        SampleResult(
            jsonl, [ScanReport("42", jsonl.path, "python", "semgrep", "1", "h", [finding])]
        ),
        SampleResult(
            plain,
            [
                ScanReport(
                    plain.id,
                    plain.path,
                    "python",
                    "semgrep",
                    "1",
                    "h",
                    [
                        Finding(
                            **{**finding.to_dict(), "severity": Severity.LOW, "path": plain.path}
                        )
                    ],
                )
            ],
        ),
        SampleResult(
            failed,
            [
                ScanReport(
                    failed.id,
                    failed.path,
                    "python",
                    "semgrep",
                    "1",
                    "h",
                    [],
                    error="semgrep crashed (exit 2)",
                )
            ],
        ),
    ]
    doc = to_sarif(results, {"semgrep": {"version": "1", "rules_hash": "h"}})
    targets = [_target(s.id, work, i) for i, s in enumerate([jsonl, plain, failed])]
    return doc, targets


def test_round_trip_of_our_export_maps_jsonl_ids_and_errors(work: Path) -> None:
    doc, (jsonl, plain, failed) = _exported(work)
    result = map_sarif_to_targets([doc], [jsonl, plain, failed], cwd=Path("/elsewhere"))
    (from_jsonl,) = result.findings[str(jsonl.path)]
    assert (from_jsonl.severity, from_jsonl.cwe, from_jsonl.start_column) == (
        Severity.HIGH,
        ["CWE-95"],
        1,
    )
    assert result.findings[str(plain.path)][0].severity is Severity.LOW
    assert result.errors == {str(failed.path): "semgrep: semgrep crashed (exit 2)"}


def test_scan_batch_needs_input(work: Path) -> None:
    with pytest.raises(ScannerNotAvailable, match=r"pass --sarif FILE"):
        SarifImportScanner().scan_batch([_target("a.py", work, 0)], ScanOptions(), 10.0)
    assert "pass --sarif FILE" in NO_INPUT_MESSAGE


def test_scan_batch_reads_files(tmp_path: Path, work: Path) -> None:
    doc, targets = _exported(work)
    sarif = tmp_path / "in.sarif"
    sarif.write_text(json.dumps(doc), encoding="utf-8")
    scanner = SarifImportScanner()
    options = ScanOptions(sarif_inputs=[sarif])
    result = scanner.scan_batch(targets, options, 10.0)
    assert set(result.findings) == {str(targets[0].path), str(targets[1].path)}
    first_hash = scanner.rules_hash(options)
    sarif.write_text(json.dumps(_doc({"uri": "x.py"})), encoding="utf-8")
    assert scanner.rules_hash(options) != first_hash  # provenance follows the content


def test_scan_batch_bad_file_is_an_input_error(tmp_path: Path, work: Path) -> None:
    bad = tmp_path / "bad.sarif"
    bad.write_text("{", encoding="utf-8")
    with pytest.raises(InputError, match="malformed JSON"):
        SarifImportScanner().scan_batch(
            [_target("a.py", work, 0)], ScanOptions(sarif_inputs=[bad]), 10.0
        )


def test_through_the_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """End to end: the engine writes temp files, we map by sample id, it maps back by path."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.py").write_text("exec(input())\n", encoding="utf-8")
    (tmp_path / "src" / "clean.py").write_text("print(1)\n", encoding="utf-8")
    sarif = tmp_path / "codeql.sarif"
    doc = _doc(
        {"uri": "src/app.py", "uriBaseId": "%SRCROOT%"},
        base_ids={"%SRCROOT%": {"uri": tmp_path.as_uri() + "/"}},
    )
    sarif.write_text(json.dumps(doc), encoding="utf-8")
    samples = [
        SampleResult(Sample(p, Path(p).read_text(), "python", p))
        for p in ("src/app.py", "src/clean.py")
    ]
    run = scan_samples(samples, ["sarif"], ScanOptions(sarif_inputs=[sarif], use_cache=False))
    app, clean = run.results
    (finding,) = app.findings
    assert (finding.path, finding.rule_id, finding.start_line) == ("src/app.py", "py.exec", 1)
    assert app.reports[0].scanner == "sarif" and app.reports[0].error is None
    assert clean.findings == [] and clean.reports[0].error is None
