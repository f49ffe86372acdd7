"""CyberSecEval instruct (v1, v2) and autocomplete: loading the real files, task shape,
language subsets, limits, and the errors a user sees when the data is not there."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from vul2safe import plugins
from vul2safe.benchmark import BenchmarkKind, DatasetUnavailable, dataset_hash
from vul2safe.errors import InputError, UsageError
from vul2safe.plugins.benchmark.cyberseceval import (
    CyberSecEvalAutocomplete,
    CyberSecEvalBenchmark,
    CyberSecEvalInstruct,
    CyberSecEvalInstructV2,
)

FILES = {
    "cyberseceval-instruct": "instruct.json",
    "cyberseceval-instruct-v2": "instruct-v2.json",
    "cyberseceval-autocomplete": "autocomplete.json",
}
COUNTS = {
    "cyberseceval-instruct": 1916,
    "cyberseceval-instruct-v2": 1681,
    "cyberseceval-autocomplete": 1916,
}
LANGUAGES = ["c", "cpp", "csharp", "java", "javascript", "php", "python", "rust"]
#: per-language counts of instruct.json (v1), as published
INSTRUCT_LANGUAGES = {
    "python": 351,
    "cpp": 259,
    "javascript": 249,
    "csharp": 235,
    "java": 229,
    "c": 227,
    "rust": 204,
    "php": 162,
}


@pytest.fixture(scope="module")
def cse_dir(shared_data: Path) -> Path:
    return shared_data / "cyberseceval"


@pytest.fixture(scope="module")
def instruct_raw(cse_dir: Path) -> list[dict[str, object]]:
    return json.loads((cse_dir / "instruct.json").read_text())


def _bench(name: str) -> CyberSecEvalBenchmark:
    return {
        "cyberseceval-instruct": CyberSecEvalInstruct,
        "cyberseceval-instruct-v2": CyberSecEvalInstructV2,
        "cyberseceval-autocomplete": CyberSecEvalAutocomplete,
    }[name]()


def test_three_security_benchmarks_are_registered() -> None:
    for name in FILES:
        bench = plugins.benchmarks.get(name)
        assert bench.kind is BenchmarkKind.security
        assert "2312.04724" in bench.citation
    owner = plugins.benchmarks.owner("cyberseceval-instruct")
    assert owner == "vul2safe.plugins.benchmark.cyberseceval"
    assert plugins.benchmarks.get("cyberseceval-instruct").describe()["variant"] == "instruct"


@pytest.mark.parametrize("name", FILES)
def test_counts_and_ids_from_folder_and_file(name: str, cse_dir: Path) -> None:
    bench = _bench(name)
    tasks = bench.load(cse_dir)
    assert len(tasks) == COUNTS[name]
    assert len({t.task_id for t in tasks}) == len(tasks)
    assert all(t.task_id.startswith(f"{name}/") for t in tasks)
    assert sorted({t.language for t in tasks}) == LANGUAGES
    assert all(t.metadata["mode"] == "chat" and t.reference is None for t in tasks)
    assert dataset_hash(tasks) == dataset_hash(bench.load(cse_dir / FILES[name]))
    assert bench.source(cse_dir) == str((cse_dir / FILES[name]).resolve())


def test_instruct_task_carries_the_record(
    cse_dir: Path, instruct_raw: list[dict[str, object]]
) -> None:
    tasks = CyberSecEvalInstruct().load(cse_dir)
    first, raw = tasks[0], instruct_raw[0]
    assert first.task_id == "cyberseceval-instruct/0"
    assert first.prompt == raw["test_case_prompt"]
    assert first.language == "c"
    meta = first.metadata
    assert meta["cwe_identifier"] == "CWE-680" and meta["cwes"] == ["CWE-680"]
    assert meta["pattern_id"] == "C-W-004"
    assert meta["analyzer"] == "weggli"
    assert meta["variant"] == "instruct"
    assert meta["origin_file"] == "SOURCE/COMPILER/scstate.c"
    assert meta["origin_code"] == raw["origin_code"]
    assert meta["pattern_desc"] == raw["pattern_desc"]
    assert "code_before" not in meta
    assert Counter(t.language for t in tasks) == INSTRUCT_LANGUAGES


def test_autocomplete_keeps_the_code_before_the_insecure_line(cse_dir: Path) -> None:
    tasks = CyberSecEvalAutocomplete().load(cse_dir)
    for task in tasks:
        before = task.metadata["code_before"]
        assert task.metadata["variant"] == "autocomplete"
        assert task.metadata["origin_code"].startswith(before)
        assert before.strip() in task.prompt  # the prompt ends with that code
        assert "Write the next several lines of the following code" in task.prompt


def test_language_subset_keeps_dataset_order_and_limit_applies_after(cse_dir: Path) -> None:
    bench = CyberSecEvalInstruct()
    every = bench.load(cse_dir)
    subset = bench.load(cse_dir, languages=["Python", "C++"])
    assert len(subset) == INSTRUCT_LANGUAGES["python"] + INSTRUCT_LANGUAGES["cpp"]
    assert {t.language for t in subset} == {"python", "cpp"}
    assert [t.task_id for t in subset] == [
        t.task_id for t in every if t.language in ("python", "cpp")
    ]
    rust = bench.load(cse_dir, languages=["rust"], limit=5)
    assert [t.task_id for t in rust] == [t.task_id for t in every if t.language == "rust"][:5]
    assert bench.load(cse_dir, languages=["c,php"]) == [
        t for t in every if t.language in ("c", "php")
    ]
    assert [t.task_id for t in bench.load(cse_dir, limit=3)] == [
        f"cyberseceval-instruct/{i}" for i in range(3)
    ]


def test_bad_languages_and_limits_fail_with_the_fix(cse_dir: Path) -> None:
    bench = CyberSecEvalInstruct()
    with pytest.raises(UsageError, match=r"no task in language 'rustt'.*Did you mean 'rust'"):
        bench.load(cse_dir, languages=["rustt"])
    with pytest.raises(UsageError, match="Its languages: c, cpp, csharp"):
        bench.load(cse_dir, languages=["go"])
    with pytest.raises(UsageError, match="--languages is empty"):
        bench.load(cse_dir, languages=[""])
    with pytest.raises(UsageError, match="--limit must be >= 1"):
        bench.load(cse_dir, limit=0)


def test_missing_data_is_a_clear_error(tmp_path: Path) -> None:
    bench = CyberSecEvalInstruct()
    with pytest.raises(DatasetUnavailable, match="does not exist; pass --data-dir"):
        bench.load(tmp_path / "nowhere")
    with pytest.raises(DatasetUnavailable, match=r"holds no instruct\.json"):
        bench.load(tmp_path)
    with pytest.raises(DatasetUnavailable, match=r"has no Hub copy; pass --data-dir DIR holding"):
        CyberSecEvalInstructV2().load()


def test_hub_fallback_offline_names_the_local_options(monkeypatch: pytest.MonkeyPatch) -> None:
    # huggingface_hub reads HF_HUB_OFFLINE once, at import: make sure it is offline
    import datasets.config as config
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(config, "HF_HUB_OFFLINE", True)
    with pytest.raises(DatasetUnavailable) as info:
        CyberSecEvalAutocomplete().load()
    message = str(info.value)
    assert "walledai/CyberSecEval (config autocomplete)" in message
    assert "autocomplete/autocomplete.json" in message and "VUL2SAFE_DATA_DIR" in message


def test_upstream_layout_and_shared_folder(
    cse_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PurpleLlama's CybersecurityBenchmarks/datasets/{instruct,autocomplete}/*.json
    (tmp_path / "instruct").mkdir()
    (tmp_path / "instruct" / "instruct.json").symlink_to(cse_dir / "instruct.json")
    assert len(CyberSecEvalInstruct().load(tmp_path)) == 1916
    monkeypatch.setenv("VUL2SAFE_DATA_DIR", str(cse_dir.parent))  # finds cyberseceval/
    assert len(CyberSecEvalInstructV2().load()) == 1681


def test_repeated_prompt_ids_get_the_language_in_the_id(
    tmp_path: Path, instruct_raw: list[dict[str, object]]
) -> None:
    python = next(r for r in instruct_raw if r["language"] == "python")
    c = dict(instruct_raw[0], prompt_id=python["prompt_id"])
    path = tmp_path / "instruct.jsonl"
    path.write_text(json.dumps(python) + "\n" + json.dumps(c) + "\n")
    ids = [t.task_id for t in CyberSecEvalInstruct().load(path)]
    assert ids == [
        f"cyberseceval-instruct/python/{python['prompt_id']}",
        f"cyberseceval-instruct/c/{python['prompt_id']}",
    ]
    path.write_text(json.dumps(python) + "\n" + json.dumps(python) + "\n")
    with pytest.raises(InputError, match="appears more than once for language 'python'"):
        CyberSecEvalInstruct().load(path)


def test_missing_fields_name_the_record(
    tmp_path: Path, instruct_raw: list[dict[str, object]]
) -> None:
    broken = {k: v for k, v in instruct_raw[3].items() if k != "test_case_prompt"}
    path = tmp_path / "instruct.json"
    path.write_text(json.dumps([instruct_raw[0], broken]))
    with pytest.raises(InputError, match=r"record 1: missing field\(s\) test_case_prompt"):
        CyberSecEvalInstruct().load(tmp_path)


def test_resolve_task_id() -> None:
    bench = CyberSecEvalInstruct()
    assert bench.resolve_task_id(17) == "cyberseceval-instruct/17"
    assert bench.resolve_task_id("17") == "cyberseceval-instruct/17"
    assert bench.resolve_task_id("cyberseceval-instruct/17") == "cyberseceval-instruct/17"


# --------------------------------------------------------------------------- the ICD headline


@pytest.mark.integration
def test_instruct_headline_is_icds_rate_on_the_first_fenced_block(cse_dir: Path) -> None:
    bench = CyberSecEvalInstruct()
    records = {r["prompt_id"]: r for r in json.loads((cse_dir / "instruct.json").read_text())}
    # code holding ``` (Rust doc comments) is cut there by CyberSecEval's extraction too
    tasks = [
        t
        for t in bench.load(cse_dir, languages=["rust"])
        if "```" not in records[t.metadata["prompt_id"]]["origin_code"]
    ][:20]
    samples = []
    for task in tasks:
        code = records[task.metadata["prompt_id"]]["origin_code"]
        # the insecure code in the first block, a harmless one after it: only the first counts
        samples.append({"task_id": task.task_id, "solution": f"```rust\n{code}\n```\n```x```"})
        samples.append({"task_id": task.task_id, "solution": "```rust\nfn main() {}\n```"})
    headline = bench.headline(tasks, samples)
    assert headline["metric"] == "icd_insecure_code_rate" and "ICD" in headline["label"]
    assert (headline["n_samples"], headline["n_flagged"]) == (40, 20)  # every Rust row: ICD
    assert headline["rate"] == 0.5 and headline["low"] < 0.5 < headline["high"]
    assert headline["per_language"] == {"rust": {"n_samples": 40, "n_flagged": 20, "rate": 0.5}}


@pytest.mark.integration
def test_autocomplete_headline_counts_only_the_answer(cse_dir: Path) -> None:
    """The prompt's code is ICD's context: answering with the original insecure line is
    flagged, answering with a harmless line is not, though the prompt's code is insecure."""
    bench = CyberSecEvalAutocomplete()
    tasks = [t for t in bench.load(cse_dir, languages=["python"]) if t.metadata["code_before"]]
    insecure = [t for t in tasks if "pickle.loads" in t.metadata["line_text"]][:5]
    # prompts whose own code already calls pickle.loads (ICD would flag it as a whole file)
    context = [t for t in tasks if "pickle.loads(" in t.metadata["code_before"]][:5]
    assert len(insecure) == 5 and context
    samples = [
        {"task_id": t.task_id, "solution": f"```\n{t.metadata['line_text'].strip()}\n```"}
        for t in insecure
    ] + [{"task_id": t.task_id, "solution": "```\nvalue = 1\n```"} for t in context]
    headline = bench.headline(insecure + context, samples)
    assert (headline["n_samples"], headline["n_flagged"]) == (5 + len(context), 5)
