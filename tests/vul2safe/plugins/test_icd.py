"""The ``icd`` scanner: CyberSecEval's Insecure Code Detector semantics, on real data.

Needs the tool environment (``vul2safe tools install``); without it these tests fail with
that command. The conformance tests read CyberSecEval's instruct prompts from
``../shared/data``: every ``origin_code`` there was flagged by ICD when the benchmark was built.
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from vul2safe import tools
from vul2safe.plugins.scanner.icd import (
    DROPPED,
    IcdInput,
    IcdScanner,
    analyze_many,
    regex_rules,
)

ROOT = Path(__file__).resolve().parents[3]
CODESHIELD_ANALYZE = ROOT / "benchmarks" / "icd_conformance" / "codeshield_analyze.py"


@pytest.fixture(scope="module", autouse=True)
def _tool_env() -> None:
    status = IcdScanner().available()
    if not status.ok:
        pytest.fail(status.reason)


@pytest.fixture(scope="module")
def instruct(shared_data: Path) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = json.loads(
        (shared_data / "cyberseceval" / "instruct.json").read_text()
    )
    return records


def _enabled_ids(language: str) -> set[str]:
    return {rule.pattern_id for rule in regex_rules(language) if rule.pattern_id}


def test_regex_rules_follow_icd_inheritance_and_the_cyberseceval_config() -> None:
    c, cpp, rust = _enabled_ids("c"), _enabled_ids("cpp"), _enabled_ids("rust")
    assert "bugprone-strcpy" in c and c <= cpp  # C++ takes the C rules
    assert _enabled_ids("language_agnostic") <= rust  # the rest take the agnostic ones
    assert "JS-R-003" not in _enabled_ids("javascript")  # off for cyberseceval in config.yaml


def test_comment_lines_and_first_match_only() -> None:
    """ICD searches each rule once: two calls give one issue, and when the first match sits
    behind ``//`` the rule reports nothing, even if real calls follow (ICD's own quirk)."""
    code = "#include <string.h>\nvoid f(char *a, char *b) {\n  strcpy(a, b); strcpy(b, a);\n}\n"
    hidden = "#include <string.h>\n// strcpy(a, b) was here\n" + code.split("\n", 1)[1]
    plain, commented = analyze_many([IcdInput("c", code), IcdInput("c", hidden)])

    def regex(issues: list) -> list[tuple[int, str]]:  # type: ignore[type-arg]
        return [(i.line, i.cwe_id) for i in issues if i.rule_id == "bugprone-strcpy"]

    assert regex(plain) == [(3, "CWE-120")]
    assert regex(commented) == []


SUPPRESSED = {
    "gen.c": "#include <string.h>\n// strcpy(a, b) is banned here\n"
    "void f(char *a, char *b) {\n  /* ok */ strcpy(a, b);\n}\n",
    "gen.py": "import subprocess\n\n\ndef run(cmd):\n"
    "    subprocess.call(cmd, shell=True)  # nosemgrep\n",
}


def test_suppressions_hide_issues_from_icd_but_not_from_the_scanner(tmp_path: Path) -> None:
    """ICD (CyberSecEval's headline) honours ``# nosemgrep`` and drops regex matches behind
    ``/* ... */`` or after a commented first mention; model output is untrusted, so
    ``vul2safe scan --scanner icd`` (strict) reports them, at >= medium."""
    import os
    import sys

    inputs = [IcdInput("c", SUPPRESSED["gen.c"]), IcdInput("python", SUPPRESSED["gen.py"])]
    icd_c, icd_py = analyze_many(inputs)
    assert [i.rule_id for i in icd_c if i.analyzer == "regex"] == [] and icd_py == []
    strict_c, strict_py = analyze_many(inputs, strict=True)
    assert ("bugprone-strcpy", 4) in {(i.rule_id, i.line) for i in strict_c}
    assert [(i.rule_id, i.line) for i in strict_py] == [("insecure-subprocess-using-shell", 5)]

    for name, code in SUPPRESSED.items():
        (tmp_path / name).write_text(code)
    proc = subprocess.run(
        [sys.executable, "-m", "vul2safe", "scan", str(tmp_path), "--scanner=icd", "-f", "json"],
        capture_output=True,
        text=True,
        env={**os.environ, "VUL2SAFE_HOME": str(tmp_path / "home")},
    )
    assert proc.returncode == 1, proc.stderr
    found = {
        (Path(r["path"]).name, f["rule_id"], f["start_line"], f["severity"])
        for r in json.loads(proc.stdout)["results"]
        for f in r["findings"]
    }
    assert ("gen.c", "bugprone-strcpy", 4, "high") in found
    assert ("gen.py", "insecure-subprocess-using-shell", 5, "medium") in found
    assert IcdScanner.options_id  # the strict semantics are part of the cache key


def test_strict_mode_keeps_real_comments_out(instruct: list[dict[str, Any]]) -> None:
    """Strict mode still skips matches that really sit in comments, and on the benchmark's
    own snippets it flags exactly the rows ICD flags."""
    code = "import hashlib\n\n# eval(x) is wrong\n    # so is hashlib.md5(x)\n"
    assert analyze_many([IcdInput("c", "// strcpy(a, b);\n/* strcpy(a, b); */\n")],
                        strict=True) == [[]]  # fmt: skip
    assert [i.rule_id for i in analyze_many([IcdInput("python", code)], strict=True)[0]] == []
    rows = instruct[::4]
    icd = analyze_many([IcdInput(r["language"], r["origin_code"]) for r in rows])
    strict = analyze_many([IcdInput(r["language"], r["origin_code"]) for r in rows], strict=True)
    assert sum(map(bool, icd)) > 200
    assert [bool(i) for i in icd] == [bool(i) for i in strict]


def test_autocomplete_counts_only_the_generated_part() -> None:
    before = "import os\nimport pickle\n\ndef load(blob):\n    data = pickle.loads(blob)\n"
    clean, flagged = analyze_many(
        [
            IcdInput("python", "    return data\n", before),
            IcdInput("python", "    os.system(data)\n    return data\n", before),
        ]
    )
    assert clean == []  # pickle.loads sits in the prompt's code: not the model's
    assert [(i.rule_id, i.line, i.cwe_id) for i in flagged] == [
        ("insecure-os-system-use", 1, "CWE-78")  # line 1 of the answer
    ]


def test_an_unparsable_rule_is_dropped_not_the_language(instruct: list[dict[str, Any]]) -> None:
    rows = [r for r in instruct if r["language"] == "java" and r["analyzer"] == "semgrep"]
    results = analyze_many([IcdInput("java", r["origin_code"]) for r in rows[:40]])
    assert any(i.analyzer == "semgrep" for issues in results for i in issues)
    assert "ssrf_insecure_patterns" in DROPPED.get("java", [])


def _enabled(row: dict[str, Any]) -> bool:
    """Whether codeshield still enables the row's regex rule for CyberSecEval. The dataset
    names rules by their old ids (``C-R-002``), so the rule's regex text decides."""
    patterns = {" ".join(rule.regex.pattern.split()) for rule in regex_rules(row["language"])}
    return " ".join(row["rule"].split()) in patterns or row["pattern_id"] in _enabled_ids(
        row["language"]
    )


def _rates(instruct: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[int, int, int, int]]:
    """(language, analyzer) → (rows flagged with the row's CWE, rows, rows whose rule ICD
    enables, those flagged)."""
    results = analyze_many([IcdInput(r["language"], r["origin_code"]) for r in instruct])
    counts: dict[tuple[str, str], list[int]] = {}
    for row, issues in zip(instruct, results, strict=True):
        entry = counts.setdefault((row["language"], row["analyzer"]), [0, 0, 0, 0])
        flagged = any(i.cwe_id == row["cwe_identifier"] for i in issues)
        entry[0] += flagged
        entry[1] += 1
        if row["analyzer"] == "regex" and _enabled(row):
            entry[2] += 1
            entry[3] += flagged
    return {key: (a, b, c, d) for key, (a, b, c, d) in counts.items()}


@pytest.mark.integration
def test_regex_rows_conform(instruct: list[dict[str, Any]]) -> None:
    """All 1,916 prompts (docs/icd.md has the table). Of the regex rows whose rule codeshield
    1.0.1 still enables for CyberSecEval, ≥ 98 % are flagged with the benchmark's CWE; the
    rest (30 of 737) are rules its config.yaml now disables, which ICD itself skips too."""
    rates = _rates(instruct)
    regex = {key: value for key, value in rates.items() if key[1] == "regex"}
    assert len(regex) == 7
    enabled = sum(v[2] for v in regex.values())
    assert sum(v[3] for v in regex.values()) / enabled >= 0.98, regex
    assert enabled >= 650  # the filter keeps most rows: the check is not vacuous
    assert sum(v[0] for v in regex.values()) >= 700  # of 737, all rows
    assert regex[("rust", "regex")][0] == 204 and regex[("java", "regex")][0] == 111


def _codeshield(items: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    """codeshield's own ``analyze``, run by the tool environment's Python."""
    proc = subprocess.run(
        [str(tools.tool_python()), str(CODESHIELD_ANALYZE)],
        input="".join(json.dumps(item) + "\n" for item in items),
        capture_output=True,
        text=True,
        timeout=600,
        cwd="/",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = [json.loads(line) for line in proc.stdout.splitlines()]
    assert not [o for o in out if o["error"]]
    return {o["id"]: o["issues"] for o in out}


@pytest.mark.integration
def test_same_verdicts_as_codeshield_analyze(instruct: list[dict[str, Any]]) -> None:
    """On 5 snippets per (language, analyzer): ICD's regex issues exactly, and every Semgrep
    issue codeshield's own ``analyze`` reports (today none: with Semgrep 1.185 its
    ``--project-root /`` makes the engine skip the file)."""
    picked: list[int] = []
    seen: Counter[tuple[str, str]] = Counter()
    for index, row in enumerate(instruct):
        key = (row["language"], row["analyzer"])
        if seen[key] < 5:
            seen[key] += 1
            picked.append(index)
    theirs = _codeshield(
        [
            {"id": i, "language": instruct[i]["language"], "code": instruct[i]["origin_code"]}
            for i in picked
        ]
    )
    ours = analyze_many(
        [IcdInput(instruct[i]["language"], instruct[i]["origin_code"]) for i in picked]
    )
    regex_flagged = 0
    for index, issues in zip(picked, ours, strict=True):
        mine = {(i.analyzer, i.rule_id, i.cwe_id) for i in issues}
        cs = {(i["analyzer"], i["pattern_id"], i["cwe_id"]) for i in theirs[index]}
        assert {x for x in mine if x[0] == "regex"} == {x for x in cs if x[0] == "regex"}, index
        assert {x for x in cs if x[0] == "semgrep"} <= mine, index
        regex_flagged += any(x[0] == "regex" for x in cs)
    assert regex_flagged >= 25  # the comparison compared something (29 today)
