"""`vul2safe eval MODEL` end to end: a tiny random model, real scanners, real sandbox.

The model writes gibberish; what is asserted is the machinery — every file written, every
sample accounted for, resumption, and one-line errors — never the model's quality.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from vul2safe.sarif import validate_sarif

BENCHMARKS = "humaneval-pro,cyberseceval-instruct"


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vul2safe", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=900,
    )


def _eval(model: str, output: Path, data: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_cli(
        "eval", model, "--benchmarks", BENCHMARKS, "--limit", "5", "-n", "2",
        "--max-tokens", "24", "--temperature", "0.8", "--output", str(output),
        "--data-dir", str(data), *extra,
    )  # fmt: skip


def _check_run(output: Path, model: str, backend: str) -> dict[str, object]:
    assert sorted(p.name for p in output.iterdir()) == [
        "findings.sarif", "results.json", "run.json", "samples.jsonl",
    ]  # fmt: skip
    results = json.loads((output / "results.json").read_text())
    assert results["completed"] is True and results["format"] == "vul2safe-results/1"
    assert results["model"]["id"] == model and results["model"]["backend"] == backend
    if backend == "transformers":  # the tiny model has a template; a local backend records it
        assert results["model"]["chat_template"]
    assert results["sampling"]["n"] == 2 and results["sampling"]["temperature"] == 0.8
    assert {"bandit", "semgrep"} <= set(results["scanners"])
    human, cyber = (results["benchmarks"][b] for b in BENCHMARKS.split(","))
    assert human["n_samples"] == cyber["n_samples"] == 10
    assert human["dataset"]["n_tasks"] == 5 and human["dataset"]["hash"].startswith("sha256:")
    assert set(human["functional"]["pass_at_k"]) == {"pass@1", "pass@2"}
    assert set(human["func_sec"]) == {"func-sec@1", "func-sec@2"}
    assert cyber["functional"] is None
    for entry in (human, cyber):
        security = entry["security"]
        assert security["n_samples"] == 10  # invalid outputs stay in the denominator
        assert set(security["vulnerability_rate"]) == {"medium", "high"}
        assert 0 <= entry["invalid"]["total"] <= 10
    samples = [json.loads(line) for line in (output / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 20
    assert {(s["task_id"], s["sample_index"]) for s in samples} == {
        (t, i) for t in {s["task_id"] for s in samples} for i in (0, 1)
    }
    assert validate_sarif(json.loads((output / "findings.sarif").read_text())) == []
    return results


@pytest.mark.integration
def test_transformers_backend_end_to_end_and_rerun_generates_nothing(
    tiny_model_dir: Path, shared_data: Path, tmp_path: Path
) -> None:
    output = tmp_path / "run"
    first = _eval(str(tiny_model_dir), output, shared_data)
    assert first.returncode == 0, first.stderr
    _check_run(output, str(tiny_model_dir), "transformers")
    before = (output / "samples.jsonl").read_bytes()
    second = _eval(str(tiny_model_dir), output, shared_data)
    assert second.returncode == 0, second.stderr
    assert (output / "samples.jsonl").read_bytes() == before  # nothing generated again
    assert "humaneval-pro" in second.stdout and "cyberseceval-instruct" in second.stdout


@pytest.mark.integration
def test_openai_backend_end_to_end(openai_server, shared_data: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    output = tmp_path / "run"
    proc = _eval("tiny", output, shared_data, "--backend", "openai",
                 "--base-url", openai_server.url, "--concurrency", "4")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    _check_run(output, "tiny", "openai")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_unreachable_endpoint_is_one_line_and_leaves_no_results(
    shared_data: Path, tmp_path: Path
) -> None:
    output = tmp_path / "run"
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    proc = _eval("tiny", output, shared_data, "--backend", "openai", "--base-url", url)
    assert "cannot reach" in _one_line_error(proc)
    assert not (output / "results.json").exists()


def test_missing_model_path(shared_data: Path, tmp_path: Path) -> None:
    proc = _eval(str(tmp_path / "no-such-model"), tmp_path / "run", shared_data)
    assert "does not exist" in _one_line_error(proc)
    assert not (tmp_path / "run" / "results.json").exists()


def test_unknown_benchmark(tmp_path: Path) -> None:
    proc = run_cli("eval", "m", "--benchmarks", "humaneval-pr", "--output", str(tmp_path / "r"))
    assert "Did you mean: humaneval-pro" in _one_line_error(proc)
    assert not (tmp_path / "r").exists()


def test_language_without_available_scanner(shared_data: Path, tmp_path: Path) -> None:
    proc = run_cli(
        "eval", "m", "--benchmarks", "cyberseceval-instruct", "--languages", "c",
        "--scanner", "bandit", "--output", str(tmp_path / "r"), "--data-dir", str(shared_data),
    )  # fmt: skip
    message = _one_line_error(proc)
    assert "do not cover language 'c'" in message
    assert not (tmp_path / "r").exists()


def test_resuming_with_another_model_is_refused(
    tiny_model_dir: Path, shared_data: Path, tmp_path: Path
) -> None:
    output = tmp_path / "run"
    output.mkdir()
    (output / "run.json").write_text(json.dumps({"config": {"model": "other"}, "benchmarks": []}))
    proc = _eval(str(tiny_model_dir), output, shared_data)
    assert "different" in _one_line_error(proc)


def _prompt_lengths(model: Path, data: Path, names: list[str], limit: int) -> list[int]:
    """Token counts of the prompts `vul2safe eval` sends the tiny model (transformers)."""
    from transformers import AutoTokenizer

    from vul2safe import plugins
    from vul2safe.evaluate import build_prompt
    from vul2safe.generation.prompting import encode_prompt

    tokenizer = AutoTokenizer.from_pretrained(model)
    lengths = []
    for name in names:
        bench = plugins.benchmarks.get(name)
        for task in bench.load(data, limit=limit, languages=["python"]):
            prompt = build_prompt(bench, task, True, task.task_id, "transformers")
            lengths.append(len(encode_prompt(tokenizer, prompt, True)))
    return lengths


@pytest.mark.integration
def test_max_tokens_default_per_benchmark_capped_by_context_and_recorded(
    tiny_model_dir: Path, shared_data: Path, tmp_path: Path
) -> None:
    """No --max-tokens: each benchmark's official default (HumanEval Pro 4096, CyberSecEval
    2048), cut per request at the model's context; an explicit --max-tokens wins; run.json and
    results.json record the values, and a resume that would change them is refused."""
    import shutil

    from vul2safe.testing.tiny_model import set_context_window

    names = ["humaneval-pro", "cyberseceval-instruct"]
    context = max(_prompt_lengths(tiny_model_dir, shared_data, names, 2)) + 12
    model = set_context_window(shutil.copytree(tiny_model_dir, tmp_path / "model"), context)

    def run(output: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        return run_cli(
            "eval", str(model), "--benchmarks", ",".join(names), "--limit", "2",
            "--languages", "python", "--scanner", "bandit", "--output", str(output),
            "--data-dir", str(shared_data), *extra,
        )  # fmt: skip

    default = tmp_path / "default"
    proc = run(default)
    assert proc.returncode == 0, proc.stderr
    results = json.loads((default / "results.json").read_text())
    wanted = {"humaneval-pro": 4096, "cyberseceval-instruct": 2048}
    assert results["sampling"]["max_tokens"] is None
    assert results["sampling"]["max_tokens_by_benchmark"] == wanted
    assert results["model"]["context_window"] == context
    manifest = json.loads((default / "run.json").read_text())
    assert manifest["max_tokens"] == wanted and manifest["config"]["sampling"]["max_tokens"] is None
    samples = [json.loads(line) for line in (default / "samples.jsonl").read_text().splitlines()]
    assert {s["benchmark"] for s in samples} == set(names) and len(samples) == 4
    for sample in samples:  # the context, not 4096/2048, bounded every request
        assert sample["prompt_tokens"] + sample["completion_tokens"] <= context
        if sample["finish_reason"] == "length":
            assert sample["prompt_tokens"] + sample["completion_tokens"] == context
    assert any(s["finish_reason"] == "length" for s in samples)

    explicit = tmp_path / "explicit"
    proc = run(explicit, "--max-tokens", "5")
    assert proc.returncode == 0, proc.stderr
    results = json.loads((explicit / "results.json").read_text())
    assert results["sampling"]["max_tokens"] == 5
    assert results["sampling"]["max_tokens_by_benchmark"] == dict.fromkeys(names, 5)
    for line in (explicit / "samples.jsonl").read_text().splitlines():
        assert json.loads(line)["completion_tokens"] <= 5

    message = _one_line_error(run(default, "--max-tokens", "5"))
    assert "generated with max_tokens 4096" in message and "asks for 5" in message
    manifest["max_tokens"]["humaneval-pro"] = 512  # as an older default would have left it
    (default / "run.json").write_text(json.dumps(manifest))
    message = _one_line_error(run(default))
    assert "humaneval-pro samples generated with max_tokens 512" in message


def test_unknown_openai_backend_arg_is_one_line(shared_data: Path, tmp_path: Path) -> None:
    """A knob the openai backend does not read (here one it dropped) fails before any request."""
    proc = _eval("tiny", tmp_path / "run", shared_data, "--backend", "openai",
                 "--base-url", f"http://127.0.0.1:{_closed_port()}/v1",
                 "--backend-arg", "retry_base_s=0.05")  # fmt: skip
    assert _one_line_error(proc) == (
        "vul2safe: error: the openai backend has no option 'retry_base_s'; valid --backend-arg "
        "keys: connect_timeout_s, continue_final_message (see docs/backends.md)"
    )
    assert not (tmp_path / "run" / "results.json").exists()


def test_help_states_the_length_default_and_points_at_the_backend_docs() -> None:
    proc = run_cli("eval", "--help", env={"COLUMNS": "400", "NO_COLOR": "1"})
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    assert "4096 for humaneval-pro/mbpp-pro" in text and "context minus the prompt" in text
    assert "gpu_memory_utilization=0.8); see docs/backends.md." in text
