"""Functional scoring on real HumanEval Pro tasks in the real sandbox: every kind of sample
ends in its own column, nothing is dropped, and the numbers are the hand-computed ones."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from vul2safe.benchmark import Task
from vul2safe.errors import InputError, UsageError
from vul2safe.fileio import write_json_atomic
from vul2safe.functional import (
    INVALID_CLASSES,
    OUTCOMES,
    FunctionalResult,
    SampleInput,
    read_samples,
    score_samples,
)
from vul2safe.plugins.benchmark.humaneval_pro import HumanEvalPro
from vul2safe.sandbox import SandboxLimits, sandbox_available

BWRAP_OK, BWRAP_REASON = sandbox_available()
needs_bwrap = pytest.mark.usefixtures("require_bwrap")
BENCH = HumanEvalPro()


@pytest.fixture(scope="module")
def tasks(shared_data: Path) -> list[Task]:
    return BENCH.load(shared_data / "codeeval-pro")


def _wrong_new_body(task: Task) -> str:
    """Correct base function, self-invoking function that returns the wrong thing."""
    raw = str(task.metadata["raw_problem"])
    reference = task.reference or ""
    head = reference[: reference.index(str(task.metadata["new_problem"]))]
    assert raw  # the base body is the head of the reference
    return head + str(task.metadata["new_problem"]) + "    return 'wrong'\n"


def _mixed(tasks: list[Task]) -> list[dict[str, Any]]:
    t0, t2 = tasks[0], tasks[2]
    whole = str(t2.metadata["raw_problem"]) + (t2.reference or "")
    return [
        # task 0: two correct continuations and one wrong one -> c = 2 of n = 3
        {"task_id": "HumanEvalPro/0", "completion": t0.reference},
        {"task_id": 0, "completion": [t0.reference, _wrong_new_body(t0)]},
        # task 1: unparsable, empty, refusal
        {"task_id": "1", "completion": "    for x in numbers\n        return True\n"},
        {"task_id": 1, "completion": "   \n"},
        {"task_id": 1, "completion": "I'm sorry, but I can't help with that."},
        # task 2: a fenced chat answer in `completion`, a `solution`, a truncated output
        {"task_id": 2, "completion": f"```python\n{whole}```\nThis works because..."},
        {"task_id": 2, "solution": f"Here is the code:\n```python\n{whole}```\n"},
        {
            "task_id": 2,
            "completion": "    return number %",
            "finish_reason": "length",
        },
        # task 3: a NameError, and an infinite loop at module level
        {"task_id": 3, "completion": "    return undefined_name\n"},
        {"task_id": 3, "completion": "    return False\n\nwhile True:\n    pass\n"},
    ]


@pytest.fixture(scope="module")
def mixed_result(tasks: list[Task]) -> FunctionalResult:
    if not BWRAP_OK:
        pytest.fail(f"no working bubblewrap: {BWRAP_REASON}; apt-get install bubblewrap")
    limits = SandboxLimits(timeout_s=2.0)
    return score_samples(
        BENCH, tasks, _mixed(tasks), limit=6, jobs=2, limits=limits, protocol="strict"
    )


def _by_task(result: FunctionalResult) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for sample in result.samples:
        out.setdefault(sample.task_id, []).append(sample)
    return out


def test_every_sample_lands_in_its_own_column(mixed_result: FunctionalResult) -> None:
    assert mixed_result.n_samples == 11
    assert mixed_result.outcomes == {
        "passed": 4, "failed": 1, "error": 1, "timeout": 1, "memory": 0, "killed": 0,
        "no_code": 1, "unparsable": 1, "truncated": 1, "refusal": 1,
    }  # fmt: skip
    assert mixed_result.invalid_outputs == {
        "no_code": 1, "unparsable": 1, "truncated": 1, "refusal": 1
    }  # fmt: skip
    assert set(mixed_result.outcomes) == set(OUTCOMES)
    assert mixed_result.execution["programs_run"] == 7  # 11 samples - 4 invalid
    assert mixed_result.execution["sandbox"] == "bubblewrap"


def test_per_sample_details(mixed_result: FunctionalResult) -> None:
    by_task = _by_task(mixed_result)
    assert [s.index for s in by_task["HumanEvalPro/0"]] == [0, 1, 2]
    assert [s.outcome for s in by_task["HumanEvalPro/0"]] == ["passed", "passed", "failed"]
    assert [s.line for s in by_task["HumanEvalPro/0"]] == [None] * 3
    fenced, solution, truncated = by_task["HumanEvalPro/2"]
    assert fenced.standalone and fenced.rule.startswith("fenced") and fenced.passed
    assert solution.standalone and solution.field == "solution" and solution.passed
    assert truncated.outcome == "truncated" and truncated.duration_s is None
    name_error, loop = by_task["HumanEvalPro/3"]
    assert "NameError" in name_error.detail
    assert loop.outcome == "timeout"
    assert by_task["HumanEvalPro/1"][0].detail.startswith("SyntaxError")


def test_pass_at_k_over_tasks_with_samples(mixed_result: FunctionalResult) -> None:
    # n = 3 per task; c = 2, 0, 2, 0 for tasks 0..3; tasks 4, 5 have no samples
    assert mixed_result.n_tasks == 6
    assert mixed_result.n_tasks_scored == 4
    assert mixed_result.n_tasks_missing == 2
    assert mixed_result.missing_task_ids == ["HumanEvalPro/4", "HumanEvalPro/5"]
    # task 3 has 2 samples, so only k <= 2 is reported
    assert list(mixed_result.pass_at_k) == ["pass@1", "pass@2"]
    assert mixed_result.pass_at_k["pass@1"] == pytest.approx((2 / 3 + 0 + 2 / 3 + 0) / 4)
    # pass@2 with n=3, c=2 is 1 - C(1,2)/C(3,2) = 1
    assert mixed_result.pass_at_k["pass@2"] == pytest.approx((1 + 0 + 1 + 0) / 4)
    per_task = {t.task_id: (t.n, t.c) for t in mixed_result.tasks}
    assert per_task == {
        "HumanEvalPro/0": (3, 2), "HumanEvalPro/1": (3, 0),
        "HumanEvalPro/2": (3, 2), "HumanEvalPro/3": (2, 0),
    }  # fmt: skip
    ci = mixed_result.pass_at_1_ci
    assert 0.0 <= ci["low"] <= mixed_result.pass_at_k["pass@1"] <= ci["high"] <= 1.0
    assert any("2 of 6 tasks have no samples" in n for n in mixed_result.notes)
    assert any("k <= 2" in n for n in mixed_result.notes)


def test_result_is_self_describing_json(mixed_result: FunctionalResult, tmp_path: Path) -> None:
    target = tmp_path / "out" / "result.json"
    mixed_result.write(target)
    data = json.loads(target.read_text())
    assert data["benchmark"]["name"] == "humaneval-pro"
    assert data["benchmark"]["dataset_hash"].startswith("sha256:")
    assert data["benchmark"]["dataset_tasks"] == 164 and data["benchmark"]["limit"] == 6
    assert data["execution"]["limits"]["timeout_s"] == 2.0
    assert data["vul2safe_version"] and data["created_at"]
    assert len(data["samples"]) == 11 and len(data["tasks"]) == 4
    assert [p.name for p in target.parent.iterdir()] == ["result.json"]  # no temp left


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "result.json"
    write_json_atomic(target, {"ok": 1})
    with pytest.raises(TypeError):
        write_json_atomic(target, {"bad": object()})
    assert json.loads(target.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


@needs_bwrap
def test_samples_beyond_limit_are_counted_not_run(tasks: list[Task]) -> None:
    samples = [
        {"task_id": 0, "completion": tasks[0].reference},
        {"task_id": 9, "completion": tasks[9].reference},
    ]
    seen: list[int] = []
    result = score_samples(BENCH, tasks, samples, limit=2, jobs=1, progress=seen.append)
    assert result.n_samples == 1 and result.n_samples_outside_limit == 1
    assert result.pass_at_k == {"pass@1": 1.0}
    assert sum(seen) == 2  # progress covers every sample, run or not


def test_unknown_task_id_lists_valid_ones(tasks: list[Task]) -> None:
    with pytest.raises(InputError) as err:
        score_samples(BENCH, tasks, [{"task_id": "MbppPro/3", "completion": "x"}])
    message = str(err.value)
    assert "unknown task id 'MbppPro/3'" in message
    assert "'HumanEvalPro/0'" in message and "'HumanEvalPro/163'" in message
    with pytest.raises(InputError, match=r"\(line 4\)"):
        score_samples(BENCH, tasks, [SampleInput("999", "x", line=4)])


def test_bad_arguments(tasks: list[Task]) -> None:
    with pytest.raises(UsageError, match="--limit"):
        score_samples(BENCH, tasks, [{"task_id": 0, "completion": "x"}], limit=0)
    with pytest.raises(InputError, match="no samples"):
        score_samples(BENCH, tasks, [])
    with pytest.raises(InputError, match="missing field 'completion'"):
        score_samples(BENCH, tasks, [{"task_id": 0, "code": "x"}])


def test_read_samples_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text('{"task_id": 0, "completion": "x"}\n\n{"task_id": 1, "completion": \n')
    with pytest.raises(InputError, match=r"s\.jsonl:3: invalid JSON"):
        read_samples(path)
    path.write_text('{"task_id": 0, "completion": "x"}\n{"completion": "y"}\n')
    with pytest.raises(InputError, match=r"s\.jsonl:2: missing field 'task_id'"):
        read_samples(path)
    path.write_text('{"task_id": 0, "completion": 5}\n')
    with pytest.raises(InputError, match="must be a string or a list of strings"):
        read_samples(path)
    path.write_text("[1, 2]\n")
    with pytest.raises(InputError, match=r":1: expected a JSON object"):
        read_samples(path)
    path.write_text("\n\n")
    with pytest.raises(InputError, match="no samples"):
        read_samples(path)
    with pytest.raises(InputError, match="cannot read"):
        read_samples(tmp_path / "missing.jsonl")


def test_read_samples_expands_lists_and_keeps_fields(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    lines = [
        {"task_id": 0, "completion": ["a", "b"]},
        {"task_id": "HumanEvalPro/1", "solution": "c", "finish_reason": "length"},
    ]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    samples = read_samples(path)
    assert [(s.task_id, s.text, s.field, s.line) for s in samples] == [
        ("0", "a", "completion", 1),
        ("0", "b", "completion", 1),
        ("HumanEvalPro/1", "c", "solution", 2),
    ]
    assert samples[2].finish_reason == "length"
    assert set(INVALID_CLASSES) == {"no_code", "unparsable", "truncated", "refusal"}


@needs_bwrap
def test_official_protocol_is_the_default_with_labelled_numbers(tasks: list[Task]) -> None:
    t0 = tasks[0]
    reference = t0.reference or ""
    samples = [
        {"task_id": 0, "completion": reference},  # passes raw and sanitized
        # the model's own test section fails: raw fails, santize.py cuts it, sanitized passes
        {"task_id": 0, "completion": reference + "\n# Test\nassert False\n"},
        # an early sys.exit(0) must not pass (code_eval: SystemExit is a failure)
        {"task_id": 0, "completion": reference + "\nimport sys\nsys.exit(0)\n"},
        # prose after the code is cut at the first ``` (official cut), not run
        {"task_id": 0, "completion": reference + "```\nThis works because ...```"},
        # a whole answer: after the first ```python, up to the next ```
        {"task_id": 0, "solution": f"Sure:\n```python\n{t0.metadata['raw_problem']}"
         f"{reference}```\nDone."},
    ]  # fmt: skip
    seen: list[int] = []
    result = score_samples(BENCH, tasks, samples, limit=1, jobs=2, progress=seen.append)
    assert result.protocol["name"] == "official"
    assert result.execution["limits"]["timeout_s"] == 3.0
    assert result.execution["run_mode"] == "exec"
    assert sum(seen) == len(samples)  # one step per sample, sanitized runs included
    assert [s.passed for s in result.samples] == [True, False, False, True, True]
    assert [s.sanitized_passed for s in result.samples] == [True, True, False, True, True]
    assert result.samples[2].detail == "SystemExit: 0"
    assert result.pass_at_k_label == "raw extraction"
    assert result.pass_at_k["pass@1"] == pytest.approx(3 / 5)
    assert result.pass_at_k_sanitized is not None
    assert result.pass_at_k_sanitized["pass@1"] == pytest.approx(4 / 5)
    assert result.pass_at_k_higher_of_raw_and_sanitized == result.pass_at_k_sanitized
    data = result.to_dict()
    assert data["samples"][1]["sanitized_outcome"] == "passed"
    assert data["samples"][1]["outcome"] == "failed"


def test_unknown_protocol_is_one_clear_error(tasks: list[Task]) -> None:
    with pytest.raises(UsageError, match=r"unknown protocol 'offical'; choose one of: official"):
        score_samples(BENCH, tasks, [{"task_id": 0, "completion": "x"}], protocol="offical")


@needs_bwrap
def test_answer_that_ignored_the_prefill_is_scored_as_a_solution(tasks: list[Task]) -> None:
    """An OpenAI-compatible server that ignores the assistant prefill answers from scratch;
    the generation row says it was prefilled, and the whole answer is scored as a solution."""
    from vul2safe.evaluate import _scored_field

    t0 = tasks[0]
    whole = f"Here you go:\n```python\n{t0.metadata['raw_problem']}{t0.reference}```\n"
    continued = (t0.reference or "") + "```\n"
    rows = [
        {"completion": whole, "field": "completion", "prefilled": True},
        {"completion": continued, "field": "completion", "prefilled": True},
        {"completion": whole, "field": "completion", "prefilled": False},  # never relabelled
    ]
    fields = [_scored_field(row) for row in rows]
    assert fields == ["solution", "completion", "completion"]
    samples = [{"task_id": 0, f: r["completion"]} for f, r in zip(fields, rows, strict=True)]
    result = score_samples(BENCH, tasks, samples, limit=1, jobs=2)
    assert [s.passed for s in result.samples] == [True, True, False]
