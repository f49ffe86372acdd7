"""HumanEval Pro / MBPP Pro: loading, prompt and program assembly, and the reference
solutions run in the real sandbox (all of them in the integration tests)."""

from __future__ import annotations

import ast
import json
import warnings
from pathlib import Path

import pytest

from vul2safe import plugins
from vul2safe.benchmark import BenchmarkKind, DatasetUnavailable, dataset_hash
from vul2safe.errors import InputError
from vul2safe.functional import score_samples
from vul2safe.plugins.benchmark.codeeval_pro import CodeEvalProBenchmark
from vul2safe.plugins.benchmark.humaneval_pro import HumanEvalPro
from vul2safe.plugins.benchmark.mbpp_pro import MbppPro

needs_bwrap = pytest.mark.usefixtures("require_bwrap")

COUNTS = {"humaneval-pro": 164, "mbpp-pro": 378}
FILES = {"humaneval-pro": "humaneval_pro.json", "mbpp-pro": "mbpp_pro.json"}
#: the one reference whose tests all expect None, so a `pass` body passes them
TRIVIALLY_PASSING_STUBS = {"HumanEvalPro/32"}


@pytest.fixture
def codeeval_dir(shared_data: Path) -> Path:
    return shared_data / "codeeval-pro"


def _raw(codeeval_dir: Path, name: str) -> list[dict[str, object]]:
    return json.loads((codeeval_dir / FILES[name]).read_text())


def _bench(name: str) -> CodeEvalProBenchmark:
    return HumanEvalPro() if name == "humaneval-pro" else MbppPro()


def test_both_are_registered_functional_benchmarks() -> None:
    for name in COUNTS:
        bench = plugins.benchmarks.get(name)
        assert bench.kind is BenchmarkKind.functional
        assert bench.hub_id == f"CodeEval-Pro/{name}"
        assert "2412.21199" in bench.citation


@pytest.mark.parametrize("name", COUNTS)
def test_load_from_folder_and_from_file_give_the_same_tasks(name: str, codeeval_dir: Path) -> None:
    bench = _bench(name)
    from_dir = bench.load(codeeval_dir)
    from_file = bench.load(codeeval_dir / FILES[name])
    assert len(from_dir) == COUNTS[name]
    assert [t.task_id for t in from_dir] == [f"{bench.id_prefix}/{i}" for i in range(COUNTS[name])]
    assert dataset_hash(from_dir) == dataset_hash(from_file)
    assert bench.source(codeeval_dir) == str((codeeval_dir / FILES[name]).resolve())


def test_jsonl_file_loads_like_the_json_array(codeeval_dir: Path, tmp_path: Path) -> None:
    rows = _raw(codeeval_dir, "mbpp-pro")
    jsonl = tmp_path / "mbpp_pro.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    bench = MbppPro()
    assert dataset_hash(bench.load(tmp_path)) == dataset_hash(bench.load(codeeval_dir))


def test_env_var_and_a_shared_parent_folder(
    shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VUL2SAFE_DATA_DIR", str(shared_data))  # finds codeeval-pro/ below it
    assert len(HumanEvalPro().load()) == 164
    assert len(HumanEvalPro().load(limit=5)) == 5


def test_explicit_data_dir_beats_the_env_var(
    codeeval_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VUL2SAFE_DATA_DIR", str(tmp_path / "nowhere"))
    assert len(MbppPro().load(codeeval_dir, limit=3)) == 3


def test_missing_data_says_how_to_fix_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VUL2SAFE_DATA_DIR", raising=False)
    with pytest.raises(DatasetUnavailable) as hub:
        HumanEvalPro().load()
    assert str(hub.value).startswith(
        "could not load CodeEval-Pro/humaneval-pro from the Hub (offline?); pass --data-dir DIR "
        "holding humaneval_pro.json or set VUL2SAFE_DATA_DIR"
    )
    with pytest.raises(DatasetUnavailable, match="does not exist; pass --data-dir DIR"):
        HumanEvalPro().load(tmp_path / "missing")
    with pytest.raises(DatasetUnavailable, match=r"holds no mbpp_pro\.json"):
        MbppPro().load(tmp_path)
    monkeypatch.setenv("VUL2SAFE_DATA_DIR", str(tmp_path))
    with pytest.raises(DatasetUnavailable, match="VUL2SAFE_DATA_DIR"):
        MbppPro().load()


def test_malformed_record_is_named(tmp_path: Path) -> None:
    (tmp_path / "humaneval_pro.json").write_text(json.dumps([{"id": 0, "raw_problem": "x"}]))
    with pytest.raises(InputError, match="record 0: missing field"):
        HumanEvalPro().load(tmp_path)
    (tmp_path / "humaneval_pro.json").write_text('[{"id": 0,')
    with pytest.raises(InputError, match="invalid JSON"):
        HumanEvalPro().load(tmp_path)


def test_prompt_and_program_follow_the_official_harness(codeeval_dir: Path) -> None:
    raw = _raw(codeeval_dir, "humaneval-pro")[2]  # raw_problem starts with blank lines
    bench = HumanEvalPro()
    task = bench.load(codeeval_dir)[2]
    rp, np_ = str(raw["raw_problem"]), str(raw["new_problem"])
    assert task.prompt == (
        "Write a solution of python file to the following problems, the solution of the "
        "second problem requires single or multiple calls to the first solution.\n"
        f"```python\n{rp.strip()}\n{np_.strip()}\n```"
    )
    assert task.metadata["response_prefix"] == f"```python\n{rp.strip()}\n"
    assert bench.completion_prefix(task) == rp
    assert task.reference == f"{raw['raw_solution']}{np_}{raw['new_solution']}"
    assert task.tests == raw["test_code"]
    assert bench.program(task, task.reference) == (
        f"{rp}{raw['raw_solution']}{np_}{raw['new_solution']}\n{raw['test_code']}"
    )
    assert bench.program(task, "CODE", standalone=True) == f"CODE\n{raw['test_code']}"
    assert task.language == "python"


def test_mbpp_prompt_holds_both_signatures(codeeval_dir: Path) -> None:
    task = MbppPro().load(codeeval_dir, limit=1)[0]
    assert "def similar_elements(test_tup1, test_tup2):" in task.prompt
    assert "def shared_elements(lists):" in task.prompt
    assert task.metadata["entry_point"] == "shared_elements"


def test_entry_point_even_when_the_signature_sits_in_new_solution(codeeval_dir: Path) -> None:
    tasks = HumanEvalPro().load(codeeval_dir)
    assert tasks[46].metadata["entry_point"] == "sum_fib4_values"
    assert tasks[63].metadata["entry_point"] == "sum_fibfib_positions"
    assert all(t.metadata["entry_point"] for t in tasks)


def test_task_ids_accept_the_official_integers() -> None:
    bench = HumanEvalPro()
    assert bench.resolve_task_id(7) == bench.resolve_task_id("7") == "HumanEvalPro/7"
    assert bench.resolve_task_id("HumanEvalPro/7") == "HumanEvalPro/7"
    assert MbppPro().resolve_task_id(3) == "MbppPro/3"


def test_dataset_hash_changes_with_content(codeeval_dir: Path) -> None:
    tasks = MbppPro().load(codeeval_dir, limit=4)
    before = dataset_hash(tasks)
    assert before.startswith("sha256:") and len(before) == 7 + 64
    tasks[0].tests = (tasks[0].tests or "") + "\n"
    assert dataset_hash(tasks) != before


def _stub(task_source: str) -> str:
    """The reference code with every function body replaced by ``pass`` (AST, not regex)."""
    with warnings.catch_warnings():  # the data has strings like "\\." in non-raw literals
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", SyntaxWarning)
        tree = ast.parse(task_source)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            node.body = [ast.Pass()]
    return ast.unparse(tree) + "\n"


def _reference_run(name: str, codeeval_dir: Path, limit: int | None) -> dict[str, object]:
    bench = _bench(name)
    tasks = bench.load(codeeval_dir)
    chosen = tasks[:limit] if limit else tasks
    samples = [{"task_id": t.metadata["id"], "completion": t.reference} for t in chosen]
    return score_samples(bench, tasks, samples, limit=limit, jobs=2).to_dict()


def _stub_run(name: str, codeeval_dir: Path, limit: int | None) -> dict[str, object]:
    bench = _bench(name)
    tasks = bench.load(codeeval_dir)
    chosen = tasks[:limit] if limit else tasks
    samples = [
        {
            "task_id": t.task_id,
            "solution": "```python\n"
            + _stub(bench.completion_prefix(t) + (t.reference or ""))
            + "```\n",
        }
        for t in chosen
    ]
    return score_samples(bench, tasks, samples, limit=limit, jobs=2).to_dict()


@needs_bwrap
@pytest.mark.parametrize("name", COUNTS)
def test_first_references_pass_and_stubs_fail(name: str, codeeval_dir: Path) -> None:
    good = _reference_run(name, codeeval_dir, limit=6)
    assert good["outcomes"]["passed"] == 6, good["samples"]
    assert good["pass_at_k"] == {"pass@1": 1.0}
    bad = _stub_run(name, codeeval_dir, limit=6)
    assert bad["outcomes"]["passed"] == 0
    assert bad["invalid_outputs"] == dict.fromkeys(bad["invalid_outputs"], 0)


@pytest.mark.integration
@needs_bwrap
@pytest.mark.parametrize("name", COUNTS)
def test_all_reference_solutions_pass_in_the_sandbox(name: str, codeeval_dir: Path) -> None:
    result = _reference_run(name, codeeval_dir, limit=None)
    failures = [s for s in result["samples"] if not s["passed"]]  # type: ignore[union-attr]
    assert not failures, failures[:3]
    assert result["outcomes"]["passed"] == COUNTS[name]  # type: ignore[index]
    assert result["n_tasks_scored"] == COUNTS[name]
    assert result["pass_at_k"] == {"pass@1": 1.0}
    assert result["execution"]["sandbox"] == "bubblewrap"  # type: ignore[index]


@pytest.mark.integration
@needs_bwrap
@pytest.mark.parametrize("name", COUNTS)
def test_stubbed_solutions_fail_in_the_sandbox(name: str, codeeval_dir: Path) -> None:
    """Every function body replaced by ``pass``: nothing may pass, except HumanEvalPro/32,
    whose four asserts all compare the result with None (what ``pass`` returns)."""
    result = _stub_run(name, codeeval_dir, limit=None)
    passed = {s["task_id"] for s in result["samples"] if s["passed"]}  # type: ignore[union-attr]
    assert passed == (TRIVIALLY_PASSING_STUBS if name == "humaneval-pro" else set())
    assert result["outcomes"]["passed"] == len(passed)  # type: ignore[index]
    assert sum(result["invalid_outputs"].values()) == 0  # type: ignore[union-attr]


def test_hub_path_uses_datasets_lazily(codeeval_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No network: a stand-in ``datasets`` module checks the call and the error mapping."""
    import sys
    import types

    rows = _raw(codeeval_dir, "mbpp-pro")[:3]
    calls: list[tuple[str, str]] = []

    def load_dataset(path: str, split: str) -> list[dict[str, object]]:
        calls.append((path, split))
        return rows

    fake = types.ModuleType("datasets")
    fake.load_dataset = load_dataset  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "datasets", fake)
    monkeypatch.delenv("VUL2SAFE_DATA_DIR", raising=False)
    assert [t.task_id for t in MbppPro().load()] == ["MbppPro/0", "MbppPro/1", "MbppPro/2"]
    assert calls == [("CodeEval-Pro/mbpp-pro", "train")]
    assert MbppPro().source() == "hub:CodeEval-Pro/mbpp-pro"

    def offline(path: str, split: str) -> None:
        raise ConnectionError("offline")

    fake.load_dataset = offline  # type: ignore[attr-defined]
    with pytest.raises(DatasetUnavailable, match=r"from the Hub \(offline\?\).*ConnectionError"):
        MbppPro().load()


def test_generation_prompts_are_the_official_ones(codeeval_dir: Path) -> None:
    """Local models (base or chat) continue the plain-text wrapper (eval/inference.py); chat
    models over the OpenAI protocol get the API path's system + user turn (eval/run_api.py),
    with no assistant prefill."""
    task = HumanEvalPro().load(codeeval_dir)[0]
    raw = str(task.metadata["raw_problem"]).strip()
    system = (
        "You are an exceptionally intelligent coding assistant that consistently delivers "
        "accurate and reliable responses to user instructions."
    )
    for chat, backend in ((False, "transformers"), (True, "transformers"), (True, "vllm"),
                          (False, "openai")):  # fmt: skip
        prompt = HumanEvalPro().generation_prompt(task, "k", chat=chat, backend=backend)
        assert prompt.mode == "completion" and prompt.response_prefix == ""
        assert prompt.text == (
            f"{system}\n@@ Instruction\n{task.prompt}\n\n@@ Response\n```python\n{raw}\n"
        )
    api = HumanEvalPro().generation_prompt(task, "k", chat=True, backend="openai")
    assert api.mode == "chat" and api.response_prefix == ""
    assert api.messages == (
        {"role": "system", "content": system},
        {"role": "user", "content": f"\n@@ Instruction\n{task.prompt}\n@@ Response\n"},
    )
