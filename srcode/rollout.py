"""Rollout engines for SRCode's PPO: sample responses from the policy being trained.

``TransformersRollouts`` calls ``generate`` on the policy itself (no weight sync needed);
``VLLMRollouts`` drives a colocated vLLM engine when one is installed and configured. Both
return token ids cut at the first EOS; :mod:`srcode.ppo` turns them into a ``RolloutBatch``.
"""

from __future__ import annotations

from typing import Any

import torch

from srcode.config import ConfigError, PPORunConfig


class TransformersRollouts:
    """Sample with ``generate`` on the policy being trained (no weight sync needed)."""

    def __init__(self, run: PPORunConfig, pad_id: int, eos_ids: list[int]) -> None:
        from transformers import GenerationConfig

        self.pad_id = pad_id
        self.eos_ids = eos_ids
        # An explicit config: checkpoints' own defaults (Qwen's top_k=20, repetition
        # penalty) would sample from a distribution the PPO log-probs do not describe.
        self.generation_config = GenerationConfig(
            do_sample=True,
            temperature=run.temperature,
            top_p=run.top_p,
            top_k=0,
            max_new_tokens=run.max_new_tokens,
            eos_token_id=eos_ids,
            pad_token_id=pad_id,
        )

    @torch.no_grad()
    def generate(self, policy: Any, prompts: list[list[int]]) -> list[list[int]]:
        """Responses for ``prompts`` from ``policy`` (a transformers or peft causal LM)."""
        device = next(policy.parameters()).device
        input_ids, attention_mask = left_pad(prompts, self.pad_id, device)
        was_training = policy.training
        policy.eval()
        out = policy.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            generation_config=self.generation_config,
        )
        policy.train(was_training)
        generated = out[:, input_ids.shape[1] :].tolist()
        return [cut_at_eos(tokens, self.eos_ids) for tokens in generated]

    def sync_weights(self, policy: Any) -> None:
        del policy  # generate() runs on the live weights


class VLLMRollouts:
    """A colocated vLLM engine per process; weights are pushed to it after every update.

    Not exercised on CPU CI (the ``vllm`` extra is optional): the weight push goes through the
    engine's model runner as TRL's colocate mode does, and may need adjusting when vLLM moves
    that attribute.
    """

    def __init__(
        self, model_path: str, run: PPORunConfig, eos_ids: list[int], process_index: int
    ) -> None:
        try:
            from vllm import LLM, SamplingParams
        except ImportError:
            raise ConfigError(
                "ppo.rollout_backend is 'vllm' but vLLM is not installed; "
                "pip install 'vul2safe[vllm]' or set rollout_backend: transformers"
            ) from None
        self.llm = LLM(
            model=model_path,
            gpu_memory_utilization=run.vllm_gpu_memory_utilization,
            max_model_len=run.max_prompt_length + run.max_new_tokens,
            distributed_executor_backend="external_launcher",
            seed=run.seed + process_index,
            enable_prefix_caching=True,
        )
        self.sampling = SamplingParams(
            temperature=run.temperature,
            top_p=run.top_p,
            max_tokens=run.max_new_tokens,
            stop_token_ids=eos_ids,
        )
        self.eos_ids = eos_ids

    def generate(self, policy: Any, prompts: list[list[int]]) -> list[list[int]]:
        del policy
        outputs = self.llm.generate(
            [{"prompt_token_ids": ids} for ids in prompts], self.sampling, use_tqdm=False
        )
        return [cut_at_eos(list(o.outputs[0].token_ids), self.eos_ids) for o in outputs]

    @torch.no_grad()
    def sync_weights(self, policy: Any) -> None:
        """Push the policy's weights (LoRA merged in) into the engine, by HF parameter name."""
        runner = self.llm.llm_engine.model_executor.driver_worker.model_runner
        merged = hasattr(policy, "merge_adapter")
        if merged:
            policy.merge_adapter()
        try:
            for name, param in policy.named_parameters():
                if merged:
                    if "lora_" in name or "original_module" in name:
                        continue
                    name = name.removeprefix("base_model.model.").replace(".base_layer", "")
                runner.model.load_weights([(name, param.data)])
        finally:
            if merged:
                policy.unmerge_adapter()
        self.llm.reset_prefix_cache()


def cut_at_eos(tokens: list[int], eos_ids: list[int]) -> list[int]:
    for i, token in enumerate(tokens):
        if token in eos_ids:
            return tokens[: i + 1]
    return tokens


def left_pad(
    rows: list[list[int]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
        mask[i, width - len(row) :] = 1
    return ids.to(device), mask.to(device)
