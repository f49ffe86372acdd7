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
