"""The flawfinder plugin: real flawfinder on real snippets, and its CSV parser on output
captured from one real run (so the parser is tested on what the tool really prints)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from vul2safe.errors import ScannerFailed
from vul2safe.languages import EXTENSIONS, SUFFIXES
from vul2safe.plugins.scanner.flawfinder import (
    FlawfinderScanner,
    parse_flawfinder_csv,
    register_scanners,
)
from vul2safe.scanning import BatchResult, ScanOptions, ScanTarget
from vul2safe.schema import Finding, Severity

SCANNER = FlawfinderScanner()

STRCPY = """#include <string.h>
void copy(const char *input) {
    char *dest = get_buffer();
    strcpy(dest, input);
}
"""
GETS = """#include <stdio.h>
void read_line(char *line) {
    gets(line);
}
"""
FIXED_ARRAY_ONLY = """int total(void) {
    char buf[10];
    buf[0] = 1;
    return buf[0];
}
"""
CLEAN = """int add(int a, int b) { return a + b; }
"""

# `python -X utf8 -m flawfinder --csv --dataonly --quiet --columns --minlevel=0 --neverignore
#  -- one.c latin1.c` (flawfinder 2.0.20, exit code 15), where one.c has `char buf[10];`,
# `strcpy(buf, input);` and `gets(buf);` on lines 4-6 and latin1.c is not valid UTF-8.
CAPTURED_CSV = """File,Line,Column,DefaultLevel,Level,Category,Name,Warning,Suggestion,Note,CWEs,Context,Fingerprint,ToolVersion,RuleId,HelpUri
Warning: encoding error in latin1.c -- skipping file.
'utf-8' codec can't decode byte 0xe9 in position 6: invalid continuation byte

Python3 requires input character data to be perfectly encoded;
it also requires perfectly correct system encoding settings.
Unfortunately, your data and/or system settings are not.
Here are some options:
1. Run: PYTHONUTF8=0 python3 flawfinder
   if your system and data are all properly set up for a
   non-UTF-8 encoding.
2. Run: PYTHONUTF8=0 LC_ALL=C.ISO-2022 python3 flawfinder
   if your data has a specific encoding such as ISO-2022
   (replace "ISO-2022" with the name of your encoding,
   and optionally replace "C" with your native language).
3. Run: PYTHONUTF8=0 LC_ALL=C.ISO-8859-1 python3 flawfinder
   if your data has an unknown or inconsistent encoding
   (ISO-8859-1 encoders normally allow anything).
4. Convert all your source code to the UTF-8 encoding.
   The system program "iconv" or Python program "cvt2utf" can
   do this (for cvt2utf, you can use "pip install cvt2utf").
5. Run: python2 flawfinder
   (That is, use Python 2 instead of Python 3).
Some of these options may not work depending on circumstance.
In the long term, we recommend using UTF-8 for source code.
For more information, see the documentation.
one.c,6,5,5,5,buffer,gets,"Does not check for buffer overflows (CWE-120, CWE-20).",Use fgets() instead.,,"CWE-120, CWE-20",    gets(buf);,8681551908ef1699f55d6a2ebaaaf86b1ea2b769e66a0011ce774ac9fac1026c,2.0.20,FF1014,https://cwe.mitre.org/data/definitions/120.html
one.c,5,5,4,4,buffer,strcpy,Does not check for buffer overflows when copying to destination [MS-banned] (CWE-120).,"Consider using snprintf, strcpy_s, or strlcpy (warning: strncpy easily misused).",,CWE-120,"    strcpy(buf, input);",73ad2def97eaedf42e0be9a64caf4aa94f5620a02102bb3f53cc3e994d9f368a,2.0.20,FF1001,https://cwe.mitre.org/data/definitions/120.html
one.c,4,5,2,2,buffer,char,"Statically-sized arrays can be improperly restricted, leading to potential overflows or other issues (CWE-119!/CWE-120).","Perform bounds checking, use functions that limit length, or ensure that the size is larger than the maximum possible length.",,CWE-119!/CWE-120,    char buf[10];,9be0047bb01729e0b107fd1018f57326904460be88591f71182c8343cd5132c9,2.0.20,FF1013,https://cwe.mitre.org/data/definitions/119.html
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
    return SCANNER.scan_batch(targets, ScanOptions(), timeout_s=120)


def _only(result: BatchResult, target: ScanTarget, rule_suffix: str) -> Finding:
    hits = [f for f in result.findings[str(target.path)] if f.rule_id.endswith(rule_suffix)]
    assert len(hits) == 1, result.findings
    return hits[0]


def test_is_available_with_a_version() -> None:
    assert SCANNER.available().ok
    assert re.fullmatch(r"\d+\.\d+\.\d+", SCANNER.version())
    first = SCANNER.rules_hash(ScanOptions())
    assert re.fullmatch(r"[0-9a-f]{16}", first)
    assert first == SCANNER.rules_hash(ScanOptions(jobs=7))  # jobs do not change the rules


def test_strcpy_is_high_cwe_120(tmp_path: Path) -> None:
    (target,) = _targets(tmp_path, {"copy.c": STRCPY})
    finding = _only(_scan([target]), target, "buffer/strcpy")
    assert finding.rule_id == "FF1001:buffer/strcpy"
    assert finding.severity is Severity.HIGH
    assert finding.tool_severity == "level 4"
    assert finding.cwe == ["CWE-120"]
    assert finding.path == str(target.path)
    # 1-based: `strcpy` starts in column 5 of line 4 and is 6 characters long
    assert (finding.start_line, finding.end_line) == (4, 4)
    assert (finding.start_column, finding.end_column) == (5, 11)
    assert finding.message.startswith("strcpy: Does not check for buffer overflows")


def test_gets_is_high(tmp_path: Path) -> None:
    (target,) = _targets(tmp_path, {"read.c": GETS})
    finding = _only(_scan([target]), target, "buffer/gets")
    assert finding.severity is Severity.HIGH
    assert finding.tool_severity == "level 5"
    assert finding.cwe == ["CWE-120", "CWE-20"]
    assert finding.start_line == 3


def test_fixed_size_array_alone_is_low(tmp_path: Path) -> None:
    (target,) = _targets(tmp_path, {"array.c": FIXED_ARRAY_ONLY})
    findings = _scan([target]).findings[str(target.path)]
    assert [(f.rule_id, f.tool_severity, f.severity) for f in findings] == [
        ("FF1013:buffer/char", "level 2", Severity.LOW)
    ]
    assert findings[0].cwe == ["CWE-119", "CWE-120"]  # flawfinder writes "CWE-119!/CWE-120"


def test_ignore_comments_in_scanned_code_are_not_honoured(tmp_path: Path) -> None:
    """Scanned code is untrusted: a model must not be able to silence the scanner."""
    code = STRCPY.replace("strcpy(dest, input);", "strcpy(dest, input); /* flawfinder: ignore */")
    (target,) = _targets(tmp_path, {"quiet.c": code})
    assert _only(_scan([target]), target, "buffer/strcpy").severity is Severity.HIGH


def test_one_batch_maps_findings_to_each_target_path(tmp_path: Path) -> None:
    """A .c and a .cpp in two directories, reached through a symlink: every finding is keyed
    by exactly the string the engine passed in, a clean file has no entry."""
    real = tmp_path / "real"
    targets = _targets(real / "a", {"copy.c": STRCPY, "clean.c": CLEAN})
    targets += _targets(real / "b", {"read.cpp": GETS})
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    linked = [
        ScanTarget(t.sample_id, t.language, tmp_path / "link" / t.path.relative_to(real))
        for t in targets
    ]
    result = _scan(linked)
    copy, _clean, read = (str(t.path) for t in linked)
    assert set(result.findings) == {copy, read}
    assert not result.errors
    assert [f.rule_id for f in result.findings[copy]] == ["FF1001:buffer/strcpy"]
    assert [f.rule_id for f in result.findings[read]] == ["FF1014:buffer/gets"]
    assert all(f.path == key for key, fs in result.findings.items() for f in fs)


def test_bad_encoding_and_missing_file_are_per_file_errors(tmp_path: Path) -> None:
    (good,) = _targets(tmp_path, {"copy.c": STRCPY})
    latin1 = tmp_path / "latin1.c"
    latin1.write_bytes(b"/* caf\xe9 */\nvoid f(char *s) { char d[2]; strcat(d, s); }\n")
    missing = ScanTarget("missing", "c", tmp_path / "missing.c")
    result = _scan([good, ScanTarget("latin1", "c", latin1), missing])
    assert "could not decode" in result.errors[str(latin1)]
    assert "does not exist" in result.errors[str(missing.path)]
    assert str(latin1) not in result.findings
    assert [f.rule_id for f in result.findings[str(good.path)]] == ["FF1001:buffer/strcpy"]


def test_parse_captured_csv() -> None:
    result = parse_flawfinder_csv(CAPTURED_CSV)
    assert result.errors == {
        "latin1.c": "flawfinder could not decode the file in its input encoding; not scanned"
    }
    findings = result.findings["one.c"]
    # sorted by position, not by flawfinder's level order
    assert [(f.rule_id, f.start_line, f.start_column, f.severity) for f in findings] == [
        ("FF1013:buffer/char", 4, 5, Severity.LOW),
        ("FF1001:buffer/strcpy", 5, 5, Severity.HIGH),
        ("FF1014:buffer/gets", 6, 5, Severity.HIGH),
    ]
    assert [f.cwe for f in findings] == [["CWE-119", "CWE-120"], ["CWE-120"], ["CWE-120", "CWE-20"]]
    assert findings[2].message == (
        "gets: Does not check for buffer overflows (CWE-120, CWE-20). Suggestion: Use fgets() "
        "instead."
    )


def test_parse_maps_paths_and_drops_unknown_files() -> None:
    keys = {"one.c": "/work/s000001.c"}
    result = parse_flawfinder_csv(CAPTURED_CSV, keys.get)
    assert list(result.findings) == ["/work/s000001.c"]
    assert result.errors == {}  # latin1.c is not one of ours
    assert {f.path for f in result.findings["/work/s000001.c"]} == {"/work/s000001.c"}


def test_parse_header_only_is_clean_and_garbage_fails() -> None:
    header = CAPTURED_CSV.split("\n", 1)[0] + "\n"
    assert parse_flawfinder_csv(header) == BatchResult()
    with pytest.raises(ScannerFailed):
        parse_flawfinder_csv("Traceback (most recent call last):\n  boom\n")


def test_register_scanners_hook() -> None:
    registered: list[object] = []
    register_scanners(registered.append)
    assert [type(s) for s in registered] == [FlawfinderScanner]
    assert registered[0].name == "flawfinder"  # type: ignore[attr-defined]
    assert registered[0].languages == {"c", "cpp"}  # type: ignore[attr-defined]


@pytest.mark.integration
def test_sven_cwe787_before_vs_after(tmp_path: Path, shared_data: Path) -> None:
    """The first 40 SVEN CWE-787 pairs, each side as one batch: how many versions have a
    finding >= medium. Measured with flawfinder 2.0.20: 5 before, 5 after (the same five
    functions; their fixes change bounds checks, not the strcpy/sprintf calls flawfinder sees),
    so the scanner does not separate the pairs here; before >= after still holds."""
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
        assert not result.errors
        counts[side] = sum(
            any(f.severity.at_least(Severity.MEDIUM) for f in result.findings.get(str(t.path), []))
            for t in targets
        )
    print(
        f"flawfinder, SVEN cwe-787 first 40 pairs, versions with a finding >= medium: "
        f"before={counts['func_src_before']} after={counts['func_src_after']}"
    )
    assert counts["func_src_before"] > 0
    assert counts["func_src_before"] >= counts["func_src_after"]
