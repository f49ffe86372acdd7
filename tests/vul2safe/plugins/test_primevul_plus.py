"""PrimeVul+ ``eval``: every accepted layout yields the same tasks; the schema is enforced.

The data is a tiny eval split built here from real SafeCoder fix pairs (their ``description``
is the prompt, the fixed function the reference), written the ways ``vul2safe build`` and
the Hub may write it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from vul2safe import plugins
from vul2safe.benchmark import BenchmarkKind, DatasetUnavailable, dataset_hash
from vul2safe.errors import InputError, UsageError
from vul2safe.plugins.benchmark.primevul_plus import PrimeVulPlus

#: SafeCoder file suffix → the language name the builder writes (deliberately not canonical
#: for some, to check normalisation)
SUFFIX_LANGUAGE = {"py": "Python", "c": "c", "cc": "C++", "js": "javascript", "go": "go"}
N_RECORDS = 12


def _offline_datasets() -> Any:
    """Import ``datasets`` in offline mode: huggingface_hub reads HF_HUB_OFFLINE once, at
    import, so importing it at collection time (before conftest's env) would go online."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HF_DATASETS_OFFLINE", "1")
        import datasets

        return datasets


@pytest.fixture(scope="module")
def datasets() -> Any:
    return _offline_datasets()


@pytest.fixture
def hub_offline(datasets: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline even if another test imported the Hub libraries online first."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="module")
def eval_rows(shared_data: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    path = shared_data / "safecoder" / "sec-new-desc-train.jsonl"
    for line in path.read_text().splitlines():
        record = json.loads(line)
        suffix = record["file_name"].rsplit(".", 1)[-1]
        if suffix not in SUFFIX_LANGUAGE or not record["description"].strip():
            continue
        commit = record["commit_link"]
        rows.append(
            {
                "id": f"safecoder-{len(rows)}",
                "prompt": record["description"],
                "language": SUFFIX_LANGUAGE[suffix],
                "cwe": [record["vul_type"]],  # "cwe-079": normalised on load
                "prompt_style": "task-description",
                "project": commit.split("/")[4] if commit.count("/") >= 4 else None,
                "commit": commit,
                "reference": record["func_src_after"],
            }
        )
        if len(rows) == N_RECORDS:
            break
    assert len({r["language"] for r in rows}) >= 3
    return rows


@pytest.fixture(scope="module")
def eval_ds(datasets: Any, eval_rows: list[dict[str, Any]]) -> Any:
    return datasets.Dataset.from_list(eval_rows)


@pytest.fixture(scope="module")
def expected_hash(eval_rows: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("jsonl") / "eval.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in eval_rows))
    return dataset_hash(PrimeVulPlus().load(path))


def test_registered_as_a_security_benchmark() -> None:
    bench = plugins.benchmarks.get("primevul-plus")
    assert bench.kind is BenchmarkKind.security
    assert "2602.23407" in bench.citation


def test_task_shape(tmp_path: Path, eval_rows: list[dict[str, Any]]) -> None:
    path = tmp_path / "eval.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in eval_rows))
    tasks = PrimeVulPlus().load(path)
    assert len(tasks) == N_RECORDS
    first, row = tasks[0], eval_rows[0]
    assert first.task_id == "primevul-plus/safecoder-0"
    assert first.prompt == row["prompt"]
    assert first.reference == row["reference"]
    assert first.metadata["cwe"] == [f"CWE-{int(row['cwe'][0].split('-')[1])}"]
    assert first.metadata["commit"] == row["commit"]
    assert first.metadata["prompt_style"] == "task-description"
    assert first.metadata["mode"] == "chat"
    languages = {t.language for t in tasks}
    assert languages <= {"python", "c", "cpp", "javascript", "go"}
    assert "Python" not in languages and "C++" not in languages


def test_every_layout_gives_the_same_tasks(
    datasets: Any, tmp_path: Path, eval_ds: Any, expected_hash: str
) -> None:
    other = eval_ds.select(range(3))
    # 1. one DatasetDict keyed by config
    datasets.DatasetDict({"sft": other, "eval": eval_ds}).save_to_disk(tmp_path / "by-config")
    # 2. one folder per config, each a DatasetDict of splits
    datasets.DatasetDict({"train": other}).save_to_disk(tmp_path / "root" / "sft")
    datasets.DatasetDict({"test": eval_ds}).save_to_disk(tmp_path / "root" / "eval")
    # 3. the eval config alone, with its split; 4. a bare Dataset
    datasets.DatasetDict({"test": eval_ds}).save_to_disk(tmp_path / "split")
    eval_ds.save_to_disk(tmp_path / "bare")
    # 5. Parquet, as a file and as eval.parquet in a folder
    (tmp_path / "pq").mkdir()
    eval_ds.to_parquet(str(tmp_path / "pq" / "eval.parquet"))
    # 6. the Hub's file layout: eval/{split}-00000-of-00001.parquet
    (tmp_path / "hub" / "eval").mkdir(parents=True)
    eval_ds.to_parquet(str(tmp_path / "hub" / "eval" / "test-00000-of-00001.parquet"))
    other.to_parquet(str(tmp_path / "hub" / "eval" / "train-00000-of-00001.parquet"))
    bench = PrimeVulPlus()
    for where in (
        tmp_path / "by-config",
        tmp_path / "root",
        tmp_path / "root" / "eval",
        tmp_path / "split",
        tmp_path / "bare",
        tmp_path / "pq",
        tmp_path / "pq" / "eval.parquet",
        tmp_path / "hub",
    ):
        assert dataset_hash(bench.load(where)) == expected_hash, where
    assert bench.source(tmp_path / "split") == str((tmp_path / "split").resolve())


def test_shared_data_folder_via_env(
    datasets: Any,
    tmp_path: Path,
    eval_ds: Any,
    expected_hash: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    datasets.DatasetDict({"test": eval_ds}).save_to_disk(tmp_path / "primevul-plus" / "eval")
    monkeypatch.setenv("VUL2SAFE_DATA_DIR", str(tmp_path))
    assert dataset_hash(PrimeVulPlus().load()) == expected_hash


def test_languages_and_limit(tmp_path: Path, eval_ds: Any) -> None:
    eval_ds.save_to_disk(tmp_path / "ds")
    bench = PrimeVulPlus()
    every = bench.load(tmp_path / "ds")
    python = bench.load(tmp_path / "ds", languages=["py"])
    assert python and python == [t for t in every if t.language == "python"]
    assert bench.load(tmp_path / "ds", languages=["python"], limit=1) == python[:1]
    with pytest.raises(UsageError, match="no task in language 'rust'"):
        bench.load(tmp_path / "ds", languages=["rust"])


@pytest.mark.usefixtures("hub_offline")
def test_where_the_data_is_not(datasets: Any, tmp_path: Path, eval_ds: Any) -> None:
    bench = PrimeVulPlus()
    with pytest.raises(DatasetUnavailable, match="no published Hub copy yet; pass --data-dir"):
        bench.load()
    with pytest.raises(DatasetUnavailable, match="does not exist"):
        bench.load(tmp_path / "missing")
    with pytest.raises(DatasetUnavailable, match="holds no PrimeVul\\+ eval data"):
        bench.load(tmp_path)
    with pytest.raises(DatasetUnavailable, match=r"could not load someone/pv \(config eval\)"):
        bench.load("hub:someone/pv")  # conftest: HF_HUB_OFFLINE=1
    assert bench.source("hub:someone/pv") == "hub:someone/pv"
    datasets.DatasetDict({"train": eval_ds, "validation": eval_ds}).save_to_disk(tmp_path / "dd")
    with pytest.raises(InputError, match="splits train, validation; expected 'eval', 'test'"):
        bench.load(tmp_path / "dd")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"cwe": None}, r"missing field\(s\) cwe"),
        ({"cwe": "CWE-79"}, "'cwe' must be a list of strings"),
        ({"prompt": "  "}, "'prompt' must be a non-empty string"),
        ({"reference": 3}, "'reference' must be a string"),
    ],
)
def test_schema_errors_name_the_record(
    tmp_path: Path, eval_rows: list[dict[str, Any]], change: dict[str, Any], message: str
) -> None:
    rows = [eval_rows[0], {**eval_rows[1], **change}]
    path = tmp_path / "eval.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(InputError, match=f"record 1: {message}"):
        PrimeVulPlus().load(path)


def test_duplicate_ids_are_an_error(tmp_path: Path, eval_rows: list[dict[str, Any]]) -> None:
    path = tmp_path / "eval.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [eval_rows[0], eval_rows[0]]))
    with pytest.raises(InputError, match="'primevul-plus/safecoder-0' appears 2 times"):
        PrimeVulPlus().load(path)


def test_resolve_task_id() -> None:
    bench = PrimeVulPlus()
    assert bench.resolve_task_id("safecoder-3") == "primevul-plus/safecoder-3"
    assert bench.resolve_task_id("primevul-plus/safecoder-3") == "primevul-plus/safecoder-3"
