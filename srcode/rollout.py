"""Rollout engines for SRCode's PPO: sample responses from the policy being trained.

An engine has ``generate(policy, prompts) -> list[list[int]]`` (token ids cut at the first
EOS) and ``sync_weights(policy)`` (called after every update); it may expose
``last_logprobs`` (the sampled tokens' log-probs as the engine computed them), which the
trainer compares with its own. ``TransformersRollouts`` (here) calls ``generate`` on the policy
itself; ``srcode.rollout_vllm.VLLMRollouts`` drives a colocated vLLM engine.
:mod:`srcode.ppo` turns the ids into a ``RolloutBatch``.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from srcode.ppo_config import PPORunConfig


class TransformersRollouts:
    """Sample with ``generate`` on the policy being trained (no weight sync needed).

    Every sampling parameter is set here, and the checkpoint's own ``generation_config`` is
    set aside while sampling: transformers fills the fields we leave unset from it (a Qwen
    checkpoint's ``repetition_penalty`` 1.05-1.1, ``top_k`` 20), which would sample from a
    distribution PPO's log-probs (softmax at ``temperature``) do not describe. The policy runs
    in eval mode (no dropout). tests/srcode/test_rollout.py checks the processed scores
    ``generate`` samples from against the trainer's log-probs.
    """

    def __init__(self, run: PPORunConfig, pad_id: int, eos_ids: list[int]) -> None:
        from transformers import GenerationConfig

        self.pad_id = pad_id
        self.eos_ids = eos_ids
        self.generation_config = GenerationConfig(
            do_sample=True,
            temperature=run.temperature,
            top_p=1.0,
            top_k=0,
            min_p=None,
            typical_p=1.0,
            repetition_penalty=1.0,
            no_repeat_ngram_size=0,
            min_length=0,
            max_new_tokens=run.max_new_tokens,
            eos_token_id=eos_ids,
            pad_token_id=pad_id,
        )

    def generate(self, policy: Any, prompts: list[list[int]]) -> list[list[int]]:
        """Responses for ``prompts`` from ``policy`` (a transformers or peft causal LM)."""
        return self.sample(policy, prompts)[0]

    @torch.no_grad()
    def sample(
        self, policy: Any, prompts: list[list[int]], with_scores: bool = False
    ) -> tuple[list[list[int]], list[torch.Tensor] | None]:
        """Responses, and (``with_scores``) the per-step scores ``generate`` sampled from.

        The scores (one (batch, vocab) tensor per generated position, after every logits
        processor) cost steps x batch x vocab floats: for tests and diagnostics only.
        """
        from transformers import GenerationConfig

        device = next(policy.parameters()).device
        input_ids, attention_mask = left_pad(prompts, self.pad_id, device)
        config = self.generation_config
        if with_scores:
            config = copy.deepcopy(config)
            config.output_scores = True
            config.return_dict_in_generate = True
        base = policy.get_base_model() if hasattr(policy, "get_base_model") else policy
        own_config = base.generation_config
        was_training = policy.training
        policy.eval()
        try:
            base.generation_config = GenerationConfig()  # only neutral global defaults fill
            out = policy.generate(
                input_ids=input_ids, attention_mask=attention_mask, generation_config=config
            )
        finally:
            base.generation_config = own_config
            policy.train(was_training)
        sequences = out.sequences if with_scores else out
        generated = sequences[:, input_ids.shape[1] :].tolist()
        responses = [cut_at_eos(tokens, self.eos_ids) for tokens in generated]
        return responses, (list(out.scores) if with_scores else None)

    def sync_weights(self, policy: Any) -> None:
        del policy  # generate() runs on the live weights


def cut_at_eos(tokens: list[int], eos_ids: list[int]) -> list[int]:
    """``tokens`` up to and including the first EOS (all of them when there is none)."""
    for i, token in enumerate(tokens):
        if token in eos_ids:
            return tokens[: i + 1]
    return tokens


def left_pad(
    rows: list[list[int]], pad_id: int, device: torch.device | str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ids and attention mask: prompts end where generation starts."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
        mask[i, width - len(row) :] = 1
    return ids.to(device), mask.to(device)
