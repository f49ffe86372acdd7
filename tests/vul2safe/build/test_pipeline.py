"""The whole PrimeVul+ build on real pairs, with the scripted teacher over HTTP through the
real ``openai`` backend: datasets that reload, a card that parses, commit-disjoint splits,
resuming without repeated teacher calls, and the CLI end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scripted_teacher import TeacherServer, start_teacher

from vul2safe.build.config import BuildConfig, load_config
from vul2safe.build.pipeline import NothingSurvived, run_build
from vul2safe.build.records import STAGES, is_done
from vul2safe.errors import UsageError

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]
LIMIT = 12  # per source: 24 real pairs in


@pytest.fixture
def teacher() -> Iterator[TeacherServer]:
    server = start_teacher()
    yield server
    server.close()


def _sources(data: Path) -> list[str]:
    return [
        f"primevul:{data / 'primevul-format' / 'sven_c_train_paired.jsonl'}",
        f"safecoder:{data / 'safecoder'}",
    ]


def _config(data: Path, teacher: TeacherServer, **extra: Any) -> BuildConfig:
    overrides: dict[str, Any] = {
        "sources": _sources(data),
        "limit": LIMIT,
        "teacher": {
            "spec": f"openai:{teacher.model}",
            "base_url": teacher.base_url,
            "max_retries": 2,
        },
        "assemble": {"benchmark_data_dir": str(data)},
        "publish": {"build_note": "scripted test teacher"},
        **extra,
    }
    return load_config(None, overrides)


def _commits_by_split(output: Path) -> dict[str, set[str]]:
    import datasets

    pairs = datasets.load_from_disk(str(output / "dataset" / "pairs"))
    splits: dict[str, set[str]] = defaultdict(set)
    for split, table in pairs.items():
        for row in table:
            splits[row["commit"] or row["commit_url"] or row["pair_id"]].add(split)
    return splits


def test_full_build(tmp_path: Path, shared_data: Path, teacher: TeacherServer) -> None:
    import datasets
    from huggingface_hub import DatasetCard

    from vul2safe import plugins

    seen: list[tuple[str, int, int]] = []
    report = run_build(_config(shared_data, teacher), tmp_path, progress=lambda *a: seen.append(a))
    assert [s.stage for s in report.stages] == list(STAGES)
    assert all(s.status == "ran" for s in report.stages)
    assert report.stage("pairs").pairs_in == 2 * LIMIT
    for before, after in zip(report.stages, report.stages[1:-1], strict=False):
        assert after.pairs_in == before.kept  # each stage reads the previous kept file
    assert report.stage("publish").kept >= 10
    assert report.teacher is not None and report.teacher["model"] == teacher.model
    assert report.stage("reflect").teacher_requests > 0
    assert json.loads((tmp_path / "report.json").read_text())["stages"][0]["stage"] == "pairs"
    assert {stage for stage, _, _ in seen} == set(STAGES)
    # a finished stage leaves neither its checkpoint nor the settings stamp beside it
    assert not list((tmp_path / "stages").glob("*.checkpoint.jsonl*"))

    for name in ("pairs", "sft", "rl", "eval"):
        reloaded = datasets.load_from_disk(str(tmp_path / "dataset" / name))
        assert sum(d.num_rows for d in reloaded.values()) > 0, name
    card = DatasetCard((tmp_path / "card.hub.md").read_text())
    assert [c["config_name"] for c in card.data.to_dict()["configs"]] == [
        "pairs", "sft", "rl", "eval"
    ]  # fmt: skip
    assert "scripted test teacher" in card.text
    assert all(len(splits) == 1 for splits in _commits_by_split(tmp_path).values())
    # the eval config is what the primevul-plus benchmark reads
    tasks = plugins.benchmarks.get("primevul-plus").load(tmp_path / "dataset")
    assert tasks and all(t.reference and t.metadata["mode"] == "chat" for t in tasks)


def test_resume_after_reflect_repeats_no_teacher_call(
    tmp_path: Path, shared_data: Path, teacher: TeacherServer
) -> None:
    config = _config(shared_data, teacher, reflect={"scanners": []})
    first = run_build(config, tmp_path, stages=["pairs", "reflect"])
    after_reflect = teacher.request_count
    assert after_reflect == first.stage("reflect").teacher_requests > 0
    assert is_done(tmp_path, "reflect") and not is_done(tmp_path, "localize")

    again = run_build(config, tmp_path, stages=["reflect"])  # resumed: nothing to do
    assert again.stage("reflect").status == "resumed"
    forced = run_build(config, tmp_path, stages=["reflect"], resume=False)  # cache answers
    assert forced.stage("reflect").status == "ran"
    assert forced.stage("reflect").teacher_requests == 0
    assert teacher.request_count == after_reflect

    rest = run_build(config, tmp_path)
    assert [s.status for s in rest.stages] == ["resumed"] * 2 + ["ran"] * 4
    prompts_calls = rest.stage("prompts").teacher_requests
    assert prompts_calls and teacher.request_count == after_reflect + prompts_calls
    assert (tmp_path / "dataset" / "sft" / "dataset_dict.json").is_file()


def test_subset_needs_previous_stage(
    tmp_path: Path, shared_data: Path, teacher: TeacherServer
) -> None:
    config = _config(shared_data, teacher)
    with pytest.raises(UsageError, match="needs the output of stage reflect"):
        run_build(config, tmp_path, stages=["localize"])
    with pytest.raises(UsageError, match="unknown stage"):
        run_build(config, tmp_path, stages=["reflekt"])
    assert teacher.request_count == 0


def test_changed_settings_rerun_the_stage(
    tmp_path: Path, shared_data: Path, teacher: TeacherServer
) -> None:
    config = _config(shared_data, teacher, limit=3)
    run_build(config, tmp_path, stages=["pairs"])
    changed = _config(shared_data, teacher, limit=4)
    report = run_build(changed, tmp_path, stages=["pairs"])
    assert report.stage("pairs").status == "ran" and report.stage("pairs").pairs_in == 8
    with pytest.raises(UsageError, match="other settings"):
        run_build(config, tmp_path, stages=["reflect"])


# ----------------------------------------------------------------------------- the CLI


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vul2safe", "build", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "160"},
        timeout=600,
    )


def test_cli_end_to_end(tmp_path: Path, shared_data: Path, teacher: TeacherServer) -> None:
    settings = tmp_path / "build.yaml"
    settings.write_text(
        f"assemble:\n  benchmark_data_dir: {shared_data}\nreflect:\n  votes: 1\nlimit: 99\n"
    )
    out = tmp_path / "out"
    args = [f"--source={s}" for s in _sources(shared_data)]
    proc = run_cli(
        *args, "--teacher", f"openai:{teacher.model}", "--base-url", teacher.base_url,
        "--output", str(out), "--limit", "10", "--config", str(settings),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    for stage in STAGES:
        assert stage in proc.stdout
    assert "report:" in proc.stdout and "dataset:" in proc.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["stages"][0]["pairs_in"] == 20  # --limit beats the file's limit
    assert all(len(s) == 1 for s in _commits_by_split(out).values())
    # a second run resumes every stage and asks the teacher nothing
    calls = teacher.request_count
    again = run_cli(
        *args, "--teacher", f"openai:{teacher.model}", "--base-url", teacher.base_url,
        "--output", str(out), "--limit", "10", "--config", str(settings),
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("resumed") == len(STAGES)
    assert teacher.request_count == calls


def test_teacher_answering_garbage_stops_with_a_report(tmp_path: Path, shared_data: Path) -> None:
    """Every reply is prose: reflect drops every pair. The build stops there, writes the
    report (later stages "not run") and says in one line which stage and why; exit 1."""
    settings = tmp_path / "build.yaml"
    settings.write_text(
        f"assemble:\n  benchmark_data_dir: {shared_data}\n"
        "reflect:\n  votes: 1\n  max_retries: 0\n  scanners: []\n"
    )
    out = tmp_path / "out"
    with start_teacher(misbehave={"*": "prose"}) as garbage:
        proc = run_cli(
            "--source", f"sven:{shared_data / 'sven' / 'train'}", "--limit", "3",
            "--teacher", f"openai:{garbage.model}", "--base-url", garbage.base_url,
            "--output", str(out), "--config", str(settings),
        )  # fmt: skip
        asked = garbage.request_count
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("vul2safe: error: no pair survived the reflect stage: all 3 ")
    assert "no valid teacher vote x3" in lines[0] and "report.json" in lines[0]
    assert "unusable teacher replies: analyse: off-format reply (no JSON block) x3" in lines[0]
    assert asked == 3  # one vote, no retry, then nothing more was asked
    report = json.loads((out / "report.json").read_text())
    assert report["stopped"]["stage"] == "reflect"
    status = {s["stage"]: s["status"] for s in report["stages"]}
    assert status == {
        "pairs": "ran", "reflect": "ran", "localize": "not run", "prompts": "not run",
        "assemble": "not run", "publish": "not run",
    }  # fmt: skip
    assert report["stages"][1]["dropped"] == 3
    assert not (out / "README.md").exists() and not (out / "dataset").exists()


def test_a_stage_left_empty_stops_the_api_too(tmp_path: Path, shared_data: Path) -> None:
    """Through the Python API: :class:`NothingSurvived` carries the written report; a
    resumed run stops at the same stage without asking anything."""
    config = load_config(
        None,
        {
            "sources": [f"sven:{shared_data / 'sven' / 'train'}"],
            "limit": 2,
            "teacher": {"spec": "openai:x", "base_url": "http://127.0.0.1:9/v1"},
            "pairs": {"max_lines": 1},  # every real function is longer: pairs drops all
        },
    )
    for _ in range(2):
        with pytest.raises(NothingSurvived) as info:
            run_build(config, tmp_path, stages=["pairs", "reflect"])
        assert info.value.report.stopped is not None
        assert info.value.report.stopped["stage"] == "pairs"
        assert "no pair survived the pairs stage: all 2 pairs were dropped" in str(info.value)
        assert json.loads((tmp_path / "report.json").read_text())["stopped"]["stage"] == "pairs"
    assert info.value.report.stage("pairs").status == "resumed"


def test_cli_print_config_precedence(tmp_path: Path) -> None:
    settings = tmp_path / "build.json"
    settings.write_text(json.dumps({"limit": 5, "reflect": {"votes": 1}, "sources": ["sven:x"]}))
    proc = run_cli("--config", str(settings), "--limit", "7", "--print-config")
    assert proc.returncode == 0, proc.stderr
    import yaml

    effective = yaml.safe_load(proc.stdout)
    assert effective["limit"] == 7 and effective["reflect"]["votes"] == 1
    assert effective["sources"] == ["sven:x"] and effective["assemble"]["ngram"] == 13
    assert load_config(None, effective).model_dump() == load_config(None, effective).model_dump()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--source", "nosuch:/tmp/x"], "Unknown source 'nosuch'"),
        (["--source", "sven:/does/not/exist"], "no such file or directory"),
        (["--stages", "pairs,reflekt"], "unknown stage"),
        (["--push-to-hub", "me/primevul-plus"], "offline"),
        ([], "assemble.benchmark_data_dir"),  # no decontamination data, and the Hub is offline
    ],
)
def test_cli_errors_are_one_line(
    tmp_path: Path, shared_data: Path, args: list[str], expected: str
) -> None:
    base = ["--source", f"sven:{shared_data / 'sven' / 'train'}", "--output", str(tmp_path)]
    base += ["--teacher", "openai:never-asked", "--base-url", "http://127.0.0.1:9/v1"]
    proc = run_cli(*base, *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vul2safe: error:"), proc.stderr
    assert expected in lines[0]
    assert not (tmp_path / "stages" / "reflect.jsonl").exists()


def test_cli_unknown_setting_in_config_file(tmp_path: Path) -> None:
    settings = tmp_path / "build.yaml"
    settings.write_text("reflect:\n  vots: 3\n")
    proc = run_cli("--config", str(settings), "--print-config")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "vul2safe: error: unknown setting reflect.vots. Did you mean 'votes'? Known: "
        + proc.stderr.split("Known: ", 1)[1].strip()
    )
