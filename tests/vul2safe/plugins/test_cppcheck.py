"""The cppcheck plugin: real cppcheck on real snippets, and its XML parser on output captured
from one real run (so the parser is tested on what the tool really prints)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from vul2safe.errors import ScannerFailed
from vul2safe.languages import EXTENSIONS, SUFFIXES
from vul2safe.plugins.scanner.cppcheck import (
    CppcheckScanner,
    parse_cppcheck_xml,
    register_scanners,
)
from vul2safe.scanning import BatchResult, ScanOptions, ScanTarget
from vul2safe.schema import Finding, Severity

SCANNER = CppcheckScanner()

OUT_OF_BOUNDS = """void fill(void) {
    char a[10];
    a[10] = 0;
}
"""
LEAK_AND_NULL = """#include <stdlib.h>
int leak(int n) {
    char *p = malloc(n);
    if (n > 3)
        return -1;
    free(p);
    return 0;
}
int deref(void) {
    int *q = NULL;
    return *q;
}
"""
# the same text means different things in C and C++: as C, `cstyleCast` (a C++-only style
# check) cannot fire; as C++, the omitted return type is a syntax error, not `returnImplicitInt`
DUAL = """implicit(void) {
    return 1;
}
int cast(const void *v) {
    const int *p = (const int *)v;
    return *p;
}
"""
CPP_ONLY = """#include <vector>
int cpp_only() {
    int *x = new int[5];
    x[5] = 1;
    std::vector<int> v(3);
    return v[0];
}
"""
BROKEN = """int broken( {
    return 0;
"""
CLEAN = """int add(int a, int b) { return a + b; }
"""

# `cppcheck --xml --xml-version=2 --enable=warning,style,performance,portability,missingInclude
#  --quiet one.c two.cpp three.cpp four.c` (cppcheck 2.22.0; stderr). one.c: `#include
# "nothere.h"` on line 2, `int *q = 0;` line 5, `buf[10] = 0;` line 7, `return *q;` line 8;
# two.cpp and three.cpp define different `class A`; four.c is `int four( { return 0;`.
CAPTURED_XML = """<?xml version="1.0" encoding="UTF-8"?>
<results version="2">
    <cppcheck version="2.22.0"/>
    <errors>
        <error id="missingIncludeSystem" severity="information" msg="Include file: &lt;string.h&gt; not found. Please note: Standard library headers do not need to be provided to get proper results." verbose="Include file: &lt;string.h&gt; not found. Please note: Standard library headers do not need to be provided to get proper results.">
            <location file="one.c" line="1" column="2"/>
        </error>
        <error id="missingInclude" severity="information" msg="Include file: &quot;nothere.h&quot; not found." verbose="Include file: &quot;nothere.h&quot; not found.">
            <location file="one.c" line="2" column="2"/>
        </error>
        <error id="arrayIndexOutOfBounds" severity="error" msg="Array &apos;buf[10]&apos; accessed at index 10, which is out of bounds." verbose="Array &apos;buf[10]&apos; accessed at index 10, which is out of bounds." cwe="788" hash="6246981271189158067" file0="one.c">
            <location file="one.c" line="7" column="8" info="Array index out of bounds"/>
        </error>
        <error id="nullPointer" severity="error" msg="Null pointer dereference: q" verbose="Null pointer dereference: q" cwe="476" hash="12087941357087825379" file0="one.c">
            <location file="one.c" line="8" column="13" info="Null pointer dereference"/>
            <location file="one.c" line="5" column="14" info="Assignment &apos;q=0&apos;, assigned value is 0"/>
            <symbol>q</symbol>
        </error>
        <error id="constVariablePointer" severity="style" msg="Variable &apos;q&apos; can be declared as pointer to const" verbose="Variable &apos;q&apos; can be declared as pointer to const" cwe="398" hash="1109813495982777460" file0="one.c">
            <location file="one.c" line="5" column="10" info="Variable &apos;q&apos; can be declared as pointer to const"/>
            <symbol>q</symbol>
        </error>
        <error id="unusedStructMember" severity="style" msg="class member &apos;A::y&apos; is never used." verbose="class member &apos;A::y&apos; is never used." cwe="563" hash="18217915040570924987" file0="three.cpp">
            <location file="three.cpp" line="1" column="26"/>
            <symbol>A::y</symbol>
        </error>
        <error id="syntaxError" severity="error" msg="Unmatched &apos;{&apos;. Configuration: &apos;&apos;." verbose="Unmatched &apos;{&apos;. Configuration: &apos;&apos;." file0="four.c">
            <location file="four.c" line="1" column="11"/>
        </error>
        <error id="ctuOneDefinitionRuleViolation" severity="error" msg="The one definition rule is violated, different classes/structs have the same name &apos;A&apos;" verbose="The one definition rule is violated, different classes/structs have the same name &apos;A&apos;" cwe="758" hash="13809695640951716293" file0="three.cpp">
            <location file="two.cpp" line="1" column="1"/>
            <location file="three.cpp" line="1" column="1"/>
            <symbol>A</symbol>
        </error>
    </errors>
</results>
"""  # noqa: E501


def _targets(directory: Path, files: dict[str, str]) -> list[ScanTarget]:
    directory.mkdir(parents=True, exist_ok=True)
    targets = []
    for name, code in files.items():
        path = directory / name
        path.write_text(code, encoding="utf-8")
        targets.append(ScanTarget(name, EXTENSIONS[path.suffix], path))
    return targets


def _scan(targets: list[ScanTarget]) -> BatchResult:
    return SCANNER.scan_batch(targets, ScanOptions(), timeout_s=300)


def _rules(result: BatchResult, target: ScanTarget) -> set[str]:
    return {f.rule_id for f in result.findings.get(str(target.path), [])}


def _only(result: BatchResult, target: ScanTarget, rule: str) -> Finding:
    hits = [f for f in result.findings[str(target.path)] if f.rule_id == rule]
    assert len(hits) == 1, result.findings
    return hits[0]


def test_is_available_with_a_version() -> None:
    assert SCANNER.available().ok
    assert re.fullmatch(r"\d+\.\d+(\.\d+)?", SCANNER.version())
    first = SCANNER.rules_hash(ScanOptions())
    assert re.fullmatch(r"[0-9a-f]{16}", first)
    assert first == SCANNER.rules_hash(ScanOptions(jobs=7))  # -j does not change the rules


def test_out_of_bounds_write_is_high_cwe_788(tmp_path: Path) -> None:
    (target,) = _targets(tmp_path, {"oob.c": OUT_OF_BOUNDS})
    finding = _only(_scan([target]), target, "arrayIndexOutOfBounds")
    assert finding.severity is Severity.HIGH
    assert finding.tool_severity == "error"
    assert finding.cwe == ["CWE-788"]
    assert finding.path == str(target.path)
    assert (finding.start_line, finding.start_column) == (3, 6)  # 1-based, at the `[`
    assert "index 10" in finding.message


def test_memory_leak_and_null_dereference(tmp_path: Path) -> None:
    (target,) = _targets(tmp_path, {"leak.c": LEAK_AND_NULL})
    result = _scan([target])
    leak = _only(result, target, "memleak")
    assert (leak.severity, leak.cwe, leak.start_line) == (Severity.HIGH, ["CWE-401"], 5)
    null = _only(result, target, "nullPointer")
    # the primary location is the dereference, not the assignment that made q null
    assert (null.severity, null.cwe, null.start_line) == (Severity.HIGH, ["CWE-476"], 11)


def test_mixed_c_and_cpp_batch_keeps_each_files_language(tmp_path: Path) -> None:
    """No --language: each file is parsed by its suffix, and findings land on the right path."""
    targets = _targets(
        tmp_path,
        {
            "dual.c": DUAL,
            "dual.cc": DUAL,
            "obj.cpp": CPP_ONLY,
            "clean.c": CLEAN,
            "oob.c": OUT_OF_BOUNDS,
        },
    )
    as_c, as_cpp, obj, clean, oob = targets
    result = _scan(targets)
    assert _rules(result, as_c) == {"returnImplicitInt"}
    assert list(result.errors) == [str(as_cpp.path)]
    assert result.errors[str(as_cpp.path)].startswith("could not analyse the code (syntaxError")
    assert {"arrayIndexOutOfBounds", "memleak"} <= _rules(result, obj)
    assert _rules(result, oob) == {"arrayIndexOutOfBounds", "unreadVariable"}
    assert str(clean.path) not in result.findings
    assert all(f.path == key for key, fs in result.findings.items() for f in fs)


def test_cpp_only_checks_run_on_cpp_files(tmp_path: Path) -> None:
    cast = DUAL.split("}\n", 1)[1]  # just the function with a C-style cast
    as_c, as_cpp = _targets(tmp_path, {"cast.c": cast, "cast.cc": cast})
    result = _scan([as_c, as_cpp])
    assert "cstyleCast" in _rules(result, as_cpp)
    assert "cstyleCast" not in _rules(result, as_c)


def test_batch_reached_through_a_symlink_is_keyed_by_the_given_paths(tmp_path: Path) -> None:
    real = _targets(tmp_path / "real", {"oob.c": OUT_OF_BOUNDS, "obj.cc": CPP_ONLY})
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    linked = [ScanTarget(t.sample_id, t.language, tmp_path / "link" / t.path.name) for t in real]
    result = _scan(linked)
    assert set(result.findings) == {str(t.path) for t in linked}


def test_syntax_error_is_a_per_file_error_and_the_rest_is_still_scanned(tmp_path: Path) -> None:
    broken, oob, obj = _targets(
        tmp_path, {"broken.c": BROKEN, "oob.c": OUT_OF_BOUNDS, "obj.cpp": CPP_ONLY}
    )
    missing = ScanTarget("missing", "c", tmp_path / "missing.c")
    result = _scan([broken, oob, missing, obj])
    assert result.errors[str(broken.path)].startswith("could not analyse the code (syntaxError")
    assert "does not exist" in result.errors[str(missing.path)]
    assert str(broken.path) not in result.findings
    assert "arrayIndexOutOfBounds" in _rules(result, oob)
    assert "arrayIndexOutOfBounds" in _rules(result, obj)


def test_samples_in_one_batch_do_not_affect_each_other(tmp_path: Path) -> None:
    """Two samples defining different `class A` (cppcheck's whole-program check calls that an
    error) get exactly the findings each gets alone: the cache relies on it."""
    first, second = _targets(
        tmp_path,
        {
            "first.cpp": "class A { public: int x; };\nint f() { A a; a.x = 1; return a.x; }\n",
            "second.cpp": "class A { public: double y; int x; };\n"
            "int g() { A a; a.x = 2; return a.x; }\n",
        },
    )
    together = _scan([first, second])
    for target in (first, second):
        alone = _scan([target])
        key = str(target.path)
        assert together.findings.get(key, []) == alone.findings.get(key, [])
    assert "ctuOneDefinitionRuleViolation" not in _rules(together, first) | _rules(together, second)


def test_inline_suppressions_in_scanned_code_are_not_honoured(tmp_path: Path) -> None:
    """Scanned code is untrusted: a model must not be able to silence the scanner."""
    code = OUT_OF_BOUNDS.replace(
        "    a[10] = 0;", "    // cppcheck-suppress arrayIndexOutOfBounds\n    a[10] = 0;"
    )
    (target,) = _targets(tmp_path, {"quiet.c": code})
    assert "arrayIndexOutOfBounds" in _rules(_scan([target]), target)


def test_parse_captured_xml() -> None:
    result = parse_cppcheck_xml(CAPTURED_XML)
    # missingInclude*: about our set-up; the one-definition-rule error relates two files
    assert set(result.findings) == {"one.c", "three.cpp"}
    one = result.findings["one.c"]
    assert [(f.rule_id, f.start_line, f.start_column, f.severity, f.cwe) for f in one] == [
        ("constVariablePointer", 5, 10, Severity.LOW, ["CWE-398"]),
        ("arrayIndexOutOfBounds", 7, 8, Severity.HIGH, ["CWE-788"]),
        ("nullPointer", 8, 13, Severity.HIGH, ["CWE-476"]),  # first <location> is primary
    ]
    assert one[2].message == "Null pointer dereference: q"
    assert one[2].tool_severity == "error"
    assert [f.rule_id for f in result.findings["three.cpp"]] == ["unusedStructMember"]
    assert result.errors == {
        "four.c": "could not analyse the code (syntaxError, line 1): "
        "Unmatched '{'. Configuration: ''."
    }


def test_parse_maps_paths_and_drops_unknown_files() -> None:
    keys = {"one.c": "/work/s000001.c", "four.c": "/work/s000004.c"}
    result = parse_cppcheck_xml(CAPTURED_XML, keys.get)
    assert list(result.findings) == ["/work/s000001.c"]
    assert list(result.errors) == ["/work/s000004.c"]
    assert {f.path for f in result.findings["/work/s000001.c"]} == {"/work/s000001.c"}


def test_parse_rejects_output_that_is_not_complete_xml() -> None:
    with pytest.raises(ScannerFailed):
        parse_cppcheck_xml("cppcheck: error: could not find or open any of the paths given.")
    with pytest.raises(ScannerFailed):
        parse_cppcheck_xml(CAPTURED_XML[: len(CAPTURED_XML) // 2])
    with pytest.raises(ScannerFailed):
        parse_cppcheck_xml(CAPTURED_XML.replace('results version="2"', 'results version="1"'))


def test_register_scanners_hook() -> None:
    registered: list[object] = []
    register_scanners(registered.append)
    assert [type(s) for s in registered] == [CppcheckScanner]
    assert registered[0].name == "cppcheck"  # type: ignore[attr-defined]
    assert registered[0].languages == {"c", "cpp"}  # type: ignore[attr-defined]


@pytest.mark.integration
def test_sven_cwe787_before_vs_after(tmp_path: Path, shared_data: Path) -> None:
    """The first 40 SVEN CWE-787 pairs, each side as one batch: how many versions have a
    finding >= medium. Measured with cppcheck 2.22: 1 before, 1 after (the same function, a
    `uselessAssignmentPtrArg` warning unrelated to the fix); pair 4 does not parse on either
    side. cppcheck does not separate the pairs here; before >= after still holds."""
    lines = (shared_data / "sven" / "train" / "cwe-787.jsonl").read_text().splitlines()
    pairs = [json.loads(line) for line in lines[:40]]
    counts = {}
    for side in ("func_src_before", "func_src_after"):
        targets = []
        for index, pair in enumerate(pairs):
            language = EXTENSIONS[Path(pair["file_name"]).suffix]
            path = tmp_path / side / f"s{index:03d}{SUFFIXES[language]}"
            path.parent.mkdir(exist_ok=True)
            path.write_text(pair[side], encoding="utf-8")
            targets.append(ScanTarget(str(index), language, path))
        result = _scan(targets)
        assert len(result.errors) <= 4, result.errors  # snippets: some do not parse alone
        assert result.findings  # the tool really ran over the batch
        counts[side] = sum(
            any(f.severity.at_least(Severity.MEDIUM) for f in result.findings.get(str(t.path), []))
            for t in targets
        )
    print(
        f"cppcheck, SVEN cwe-787 first 40 pairs, versions with a finding >= medium: "
        f"before={counts['func_src_before']} after={counts['func_src_after']}"
    )
    assert counts["func_src_before"] >= counts["func_src_after"]
