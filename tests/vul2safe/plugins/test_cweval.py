"""CWEval: loading, prompts, extraction, assembly, metrics (fast) and, in the sandbox, the
reference check through the CLI, hostile answers, and ``vul2safe eval MODEL`` end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from vul2safe import plugins
from vul2safe.errors import InputError
from vul2safe.metrics import pass_at_k
from vul2safe.plugins.benchmark.cweval import CWEval
from vul2safe.plugins.benchmark.cweval.ground_truth import _cell
from vul2safe.plugins.benchmark.cweval.references import check_references, reference_samples
from vul2safe.plugins.benchmark.cweval.runner import RunSettings
from vul2safe.plugins.benchmark.cweval.scoring import (
    CWEvalSample,
    parse_samples,
    score_cweval,
    summarize,
)
from vul2safe.plugins.benchmark.cweval.tasks import assemble, extract_answer

#: references that cannot behave, and why (docs/cweval.md): recheck (ReDoS) is not
#: available, and js/cwe_078_0's test calls the Python reference instead of the answer
KNOWN_REFERENCE_FAILURES = {
    ("py/cwe_1333_0", "secure"), ("py/cwe_1333_0", "unsafe"),
    ("cpp/cwe_1333_0", "secure"), ("cpp/cwe_1333_0", "unsafe"),
    ("js/cwe_1333_0", "secure"), ("js/cwe_1333_0", "unsafe"),
    ("js/cwe_078_0", "unsafe"),
}  # fmt: skip


@pytest.fixture(scope="module")
def cweval_dir(shared_data: Path) -> Path:
    return shared_data / "cweval"


@pytest.fixture(scope="module")
def tasks(cweval_dir: Path) -> list[Any]:
    return CWEval().load(cweval_dir)


def test_registered_and_loads_every_task(tasks: list[Any]) -> None:
    assert isinstance(plugins.benchmarks.get("cweval"), CWEval)
    assert str(plugins.benchmarks.get("cweval").kind) == "both"
    assert len(tasks) == 119
    counts = Counter(t.language for t in tasks)
    assert counts == {"python": 25, "c": 31, "cpp": 21, "go": 19, "javascript": 23}
    ids = [t.task_id for t in tasks]
    assert len(set(ids)) == 119 and "py/cwe_078_0" in ids and "c/cwe_022_0" in ids
    assert {t.metadata["suite"] for t in tasks if t.task_id == "c/cwe_120_0"} == {"lang"}
    asan = sorted(t.task_id for t in tasks if t.metadata["asan"])
    assert len(asan) == 10 and "c/cwe_476_0" not in asan  # upstream's exclusion
    assert sorted(t.task_id for t in tasks if t.metadata["needs_recheck"]) == [
        "cpp/cwe_1333_0", "js/cwe_1333_0", "py/cwe_1333_0",
    ]  # fmt: skip


def test_prompt_is_upstreams_direct_prompt(tasks: list[Any]) -> None:
    task = next(t for t in tasks if t.task_id == "c/cwe_022_0")
    assert task.prompt.startswith("You are a helpful coding assistant producing high-quality")
    assert "You should implement the function in pure C (NOT C++). " in task.prompt
    assert "```c\n/**\nGiven a user-provided directory path" in task.prompt
    # the code prompt stops before the BEGIN SOLUTION line and leaves the headers out
    assert "BEGIN SOLUTION" not in task.prompt and "#include" not in task.prompt
    assert "char *read_file_from_dir(const char *filename, const char *dir_path) {\n```" in (
        task.prompt
    )
    assert task.prompt.endswith("in a single code block.\n")
    python = next(t for t in tasks if t.task_id == "py/cwe_078_0")
    assert "```py\ndef get_ls_result(dir_path: str) -> str:" in python.prompt
    compl = CWEval().completion_prefix(python)
    assert compl.startswith("The following code always gracefully return.")
    assert "The function is implemented in Python. " in compl
    assert compl.endswith("an empty string if any error occurs.\n    '''\n")


def test_extraction_is_first_fenced_block_else_raw() -> None:
    text = "Sure:\n```python\ndef f():\n    return 1\n```\nand\n```python\nx = 2\n```\n"
    assert extract_answer(text) == ("def f():\n    return 1", "fenced")
    assert extract_answer("def f(): pass") == ("def f(): pass", "raw")
    assert extract_answer("```\n```\nrest") == ("```\n```\nrest", "raw")  # empty block
    assert extract_answer("```c\nint x;") == ("int x;", "fenced")  # unclosed: to the end


def test_assembly_adds_headers_and_entrypoint(tasks: list[Any]) -> None:
    task = next(t for t in tasks if t.task_id == "c/cwe_022_0")
    program = assemble(task, "char *read_file_from_dir(const char *a, const char *b) {}")
    assert program.startswith("#include <archive.h>\n")
    assert "\n\n// BEGIN ENTRYPOINT\nint main(int argc, char *argv[]) {" in program
    assert assemble(task, "whole", whole_program=True) == "whole"
    python = next(t for t in tasks if t.task_id == "py/cwe_078_0")
    assert assemble(python, "def get_ls_result(d): return ''") == (
        "def get_ls_result(d): return ''"
    )
    bench = CWEval()
    assert bench.program(python, "```python\nX = 1\n```", standalone=True) == "X = 1"


def test_python_unsafe_reference_is_the_tests_unsafe_function(tasks: list[Any]) -> None:
    task = next(t for t in tasks if t.task_id == "py/cwe_113_0")
    unsafe = task.metadata["unsafe_reference"]
    assert "def store_info_in_header(" in unsafe and "_unsafe" not in unsafe
    assert "type_to_key = {" in unsafe  # the module-level table it uses comes along
    assert all(t.metadata["unsafe_reference"] for t in tasks)


def test_task_ids_resolve_from_upstream_stems() -> None:
    bench = CWEval()
    assert bench.resolve_task_id("cwe_022_0_c") == "c/cwe_022_0"
    assert bench.resolve_task_id("cwe_078_0") == "py/cwe_078_0"
    assert bench.resolve_task_id("js/cwe_020_0") == "js/cwe_020_0"


def test_missing_data_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vul2safe.benchmark import DatasetUnavailable

    monkeypatch.delenv("VUL2SAFE_DATA_DIR", raising=False)
    with pytest.raises(DatasetUnavailable, match="--data-dir naming the CWEval folder"):
        CWEval().load()
    with pytest.raises(DatasetUnavailable, match="holds no CWEval benchmark/core"):
        CWEval().load(tmp_path)


def test_sample_lines_are_validated() -> None:
    with pytest.raises(InputError, match="exactly one of 'completion' or 'solution'"):
        parse_samples([(3, {"task_id": "py/cwe_078_0"})], str)
    with pytest.raises(InputError, match="'whole_program' must be true or false"):
        parse_samples([(1, {"task_id": "x", "solution": "", "whole_program": "yes"})], str)
    rows = parse_samples([(1, {"task_id": "x", "solution": ["a", "b"]})], str)
    assert [r["text"] for r in rows] == ["a", "b"]


def _record(task: str, passed: bool | None, secure: bool | None, cwe: str = "CWE-1") -> Any:
    return CWEvalSample(task, 0, "python", cwe, "solution", "raw", "ran", passed, secure)


def test_metrics_by_hand() -> None:
    records = [
        _record("a", True, True), _record("a", True, False), _record("a", False, None),
        _record("b", True, True), _record("b", True, True), _record("b", True, True),
        _record("c", True, None, "CWE-2"), _record("c", True, None, "CWE-2"),
        _record("c", False, None, "CWE-2"),
    ]  # fmt: skip
    result = summarize(records)
    func = (pass_at_k(3, 2, 1) + 1.0 + pass_at_k(3, 2, 1)) / 3
    both = (pass_at_k(3, 1, 2) + 1.0 + 0.0) / 3  # c: never secure (secure is None)
    assert result["func@1"] == pytest.approx(func)
    assert result["func-sec@2"] == pytest.approx(both)
    assert result["func@1_ci"]["low"] <= result["func@1"] <= result["func@1_ci"]["high"]
    assert result["per_cwe"]["CWE-2"]["func-sec@1"] == 0.0
    assert result["per_cwe"]["CWE-2"]["func@1"] == pytest.approx(2 / 3)


def test_agreement_cell_by_hand() -> None:
    pairs = [(True, True)] * 3 + [(True, False)] + [(False, True)] * 2 + [(False, False)] * 4
    cell = _cell(pairs)
    assert (cell["tp"], cell["fp"], cell["fn"], cell["tn"]) == (3, 1, 2, 4)
    assert cell["precision"] == pytest.approx(0.75) and cell["recall"] == pytest.approx(0.6)
    assert _cell([(False, False)])["precision"] is None  # nothing flagged: undefined, not 0


# ------------------------------------------------------------------ in the sandbox


@pytest.mark.integration
def test_hostile_answers_are_contained(
    require_bwrap: None, tasks: list[Any], tmp_path: Path
) -> None:
    """Each hostile answer fails its own sample; the host and the other samples are fine."""
    task = next(t for t in tasks if t.task_id == "py/cwe_078_0")
    marker = tmp_path / "escaped"
    head = "def get_ls_result(dir_path):\n    return ''\n"
    hostile = {
        "write": head + f"open({str(marker)!r}, 'w').write('x')\n",
        "network": head + "import socket\nsocket.create_connection(('1.1.1.1', 53), 2)\n",
        "loop": head + "while True:\n    pass\n",
        "fork": head + "import os\nwhile True:\n    os.fork()\n",
        "exit": head + "import os\nos._exit(0)\n",
        "disk": head + "i = 0\nwhile True:\n    open(f'junk{i}', 'wb').write(b'x' * (1 << 20))\n"
        "    i += 1\n",
    }
    samples = [{"task_id": task.task_id, "solution": code} for code in hostile.values()]
    samples.append({"task_id": task.task_id, "solution": task.reference})
    parsed = parse_samples([(None, s) for s in samples], str)
    records = score_cweval(tasks, parsed, settings=RunSettings(timeout_s=15), jobs=2)
    by_kind = dict(zip([*hostile, "reference"], records, strict=True))
    assert not marker.exists()
    assert by_kind["reference"].passed is True and by_kind["reference"].secure is True
    for kind in ("write", "network", "loop", "fork", "disk"):
        assert by_kind[kind].passed is False, kind
        assert by_kind[kind].func_sec is False, kind
    assert by_kind["loop"].status == "timeout" and by_kind["loop"].secure is None
    # the work folder is a capped tmpfs: filling it fails the sample, not the host's disk
    assert by_kind["disk"].status == "error", by_kind["disk"]
    assert "No space left on device" in by_kind["disk"].detail, by_kind["disk"]
    # os._exit is neutralised (as upstream does): the answer is judged on its tests
    assert by_kind["exit"].status == "ran" and by_kind["exit"].passed is False


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vul2safe", *args], capture_output=True, text=True,
        env={**os.environ}, timeout=1800,
    )  # fmt: skip


@pytest.fixture(scope="module")
def reference_run(
    tasks: list[Any], cweval_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """Every reference through ``vul2safe eval --samples FILE --benchmark cweval``, once."""
    folder = tmp_path_factory.mktemp("cweval-refs")
    samples = folder / "references.jsonl"
    samples.write_text("".join(json.dumps(line) + "\n" for line in reference_samples(tasks)))
    out = folder / "result.json"
    proc = _run_cli(
        "eval", "--samples", str(samples), "--benchmark", "cweval", "--data-dir",
        str(cweval_dir), "-o", str(out), "--jobs", "2", "--timeout", "30", "--scanner", "bandit",
        "--scanner", "flawfinder",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.integration
def test_references_behave(require_bwrap: None, reference_run: dict[str, Any]) -> None:
    """Secure references pass both kinds of test, unsafe ones pass function and fail
    security, in every language this machine can build; the exceptions are known."""
    unsupported = reference_run["dynamic"]["unsupported"]
    for task_id, reason in unsupported.items():  # C, C++ and Python must always run
        assert task_id.split("/")[0] in ("js", "go"), (
            f"{task_id} cannot run here: {reason}; CI needs apt-get install gcc g++ "
            "libsqlite3-dev libjwt-dev libssl-dev libarchive-dev libxml2-dev"
        )
    check = check_references(reference_run["samples"])
    failures = {(f["task_id"], f["reference"]) for f in check["failures"]}
    assert failures <= KNOWN_REFERENCE_FAILURES, check["failures"]
    python = check["per_language"]["python"]
    assert python["secure"]["ok"] == 24 and python["secure"]["n"] == 25
    for language in ("c", "cpp"):
        for kind in ("secure", "unsafe"):
            assert check["per_language"][language][kind]["rate"] >= 0.9
    unjudged = reference_run["dynamic"]["security_unjudged"]
    assert "py/cwe_1333_0" in unjudged
    recheck = [s for s in reference_run["samples"] if s["task_id"] == "py/cwe_1333_0"]
    assert all(s["secure"] is None and not s["func_sec"] for s in recheck)
    failing = next(s for s in reference_run["samples"] if s["task_id"] == "py/cwe_078_0"
                   and s["sample_index"] == 1)  # fmt: skip
    assert failing["secure"] is False and failing["failing"]["security"]
    assert all("hacked" in test for test in failing["failing"]["security"])
    # an out-of-bounds write that only AddressSanitizer sees (lang/c, built with ASan)
    asan = next(s for s in reference_run["samples"] if s["task_id"] == "c/cwe_787_2"
                and s["sample_index"] == 1)  # fmt: skip
    assert asan["passed"] is True and asan["secure"] is False


@pytest.mark.integration
def test_scanner_agreement_on_references(reference_run: dict[str, Any]) -> None:
    block = reference_run["scanner_agreement"]
    assert set(block["scanners"]) == {"bandit", "flawfinder"}
    bandit = block["scanners"]["bandit"]
    assert bandit["n"] == 48  # 24 judged Python tasks x (secure, unsafe)
    assert bandit["tp"] + bandit["fn"] == 24 and bandit["fp"] + bandit["tn"] == 24
    assert 0 < bandit["recall"] < 1 and "CWE-78" in bandit["per_cwe"]
    assert block["scanners"]["flawfinder"]["per_language"].keys() <= {"c", "cpp"}


@pytest.mark.integration
def test_eval_model_end_to_end(
    require_bwrap: None, tiny_model_dir: Path, cweval_dir: Path, tmp_path: Path
) -> None:
    output = tmp_path / "run"
    proc = _run_cli(
        "eval", str(tiny_model_dir), "--benchmarks", "cweval", "--languages", "python,c",
        "--limit", "3", "-n", "2", "--max-tokens", "24", "--temperature", "0.8",
        "--data-dir", str(cweval_dir), "--output", str(output), "--scanner", "bandit",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    entry = json.loads((output / "results.json").read_text())["benchmarks"]["cweval"]
    assert entry["n_samples"] == 6 and entry["dataset"]["n_tasks"] == 3
    assert set(entry["functional"]["pass_at_k"]) == {"pass@1", "pass@2"}
    assert entry["func_sec"]["source"] == "exploit tests"
    assert set(entry["func_sec_static"]) == {"func-sec@1", "func-sec@2"}
    assert entry["security"]["n_samples"] == 6  # the static rates beside the dynamic ones
    assert len(entry["samples"]) == 6
    for sample in entry["samples"]:
        assert sample["passed"] in (True, False) and "failing" in sample
        assert sample["secure"] in (True, False, None)
    assert entry["execution"]["sandbox"] == "bubblewrap"
