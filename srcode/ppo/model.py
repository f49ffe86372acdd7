"""What the trainer holds: rollouts, the policy with its value head, and padded batches.

``Rollout`` is what a reward function sees; ``PolicyWithValueHead`` is the one module
``accelerate`` wraps, saves and restores; ``RolloutBatch`` keeps every (batch, tokens) tensor
aligned with the responses. ``disable_dropout`` and ``response_logprobs`` are the two places
where "the distribution PPO scores is the one the rollouts were sampled from" is decided.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from srcode.rollout import left_pad


@dataclass
class Rollout:
    """One sampled response, as the reward function sees it.

    ``response_ids`` are the generated tokens up to and including the first EOS (no EOS when
    ``metadata["truncated"]``). ``response_text`` is their incremental decoding without
    special tokens and ``response_offsets[i] = (start, end)`` the characters of it that token
    i produced (``srcode.rewards.decode_with_offsets``: decoding the ids we train on, since
    re-tokenizing the text could split it differently; special tokens get an empty span, a
    token holding part of a multi-byte character shares the span of the token completing
    it). ``prompt_text`` is the task prompt as written in the data
    (``metadata["rendered_prompt"]`` is what the model saw, chat template included).
    ``metadata`` carries the rl row: reference, vulnerable, vulnerable_spans, secure_spans,
    cwe, plus truncated, row_index and group (rollouts of one prompt share a group).
    """

    prompt_text: str
    response_text: str
    response_ids: list[int]
    response_offsets: list[tuple[int, int]]
    language: str
    metadata: dict[str, Any] = field(default_factory=dict)


#: rollouts -> one float tensor per rollout, of length len(rollout.response_ids), without KL
RewardFn = Callable[[list[Rollout]], list[torch.Tensor]]


class PolicyWithValueHead(nn.Module):
    """The causal LM (LoRA-wrapped or not) plus a linear value head on its last hidden state.

    One module, so ``accelerator.prepare`` wraps, saves and restores both together.
    """

    def __init__(self, policy: nn.Module, hidden_size: int) -> None:
        super().__init__()
        self.policy = policy
        self.value_head = nn.Linear(hidden_size, 1)
        nn.init.normal_(self.value_head.weight, std=1.0 / math.sqrt(hidden_size + 1))
        nn.init.zeros_(self.value_head.bias)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.policy(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids(attention_mask),
            output_hidden_states=True,
            use_cache=False,
        )
        hidden = out.hidden_states[-1].to(self.value_head.weight.dtype)
        return out.logits, self.value_head(hidden).squeeze(-1)


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip left padding, as ``generate`` computes them."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


#: float attributes that attention/MLP modules read as a dropout probability in train mode
_DROPOUT_ATTRIBUTES = ("attention_dropout", "attn_dropout", "dropout", "hidden_dropout")


def disable_dropout(model: nn.Module) -> None:
    """PPO needs ρ = 1 exactly on the first mini-batch: no dropout anywhere, in any mode.

    ``nn.Dropout`` modules get p = 0; Llama/Qwen attention keeps its own float
    ``attention_dropout`` copied from the config at build time (``dropout=0.0 if not
    self.training else self.attention_dropout``), so editing the config afterwards changes
    nothing: the module attribute is zeroed too. The trainer also scores and samples in eval
    mode; this covers the update, which runs in train mode when gradient checkpointing needs it.
    """
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
        for name in _DROPOUT_ATTRIBUTES:
            value = getattr(module, name, None)
            if isinstance(value, float) and not isinstance(value, bool):
                setattr(module, name, 0.0)
        config = getattr(module, "config", None)
        if config is not None and isinstance(getattr(config, "attention_dropout", None), float):
            config.attention_dropout = 0.0


def response_logprobs(
    logits: torch.Tensor, responses: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs of ``responses`` and entropies under ``logits`` at the sampling temperature.

    Exactly the distribution TransformersRollouts samples from: softmax(logits / T), no
    top-k/top-p (srcode.ppo_config rejects them) and no penalties.
    """
    logp = torch.log_softmax(logits.float() / temperature, dim=-1)
    chosen = logp.gather(-1, responses.unsqueeze(-1)).squeeze(-1)
    entropy = -(logp.exp() * logp).sum(-1)
    return chosen, entropy


@dataclass
class RolloutBatch:
    """Prompts (left-padded to ``prompt_width``) + responses (right-padded), and PPO tensors.

    Every (batch, tokens) tensor is aligned with ``responses``; ``mask`` marks real tokens.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    prompt_width: int
    responses: torch.Tensor
    mask: torch.Tensor
    # filled in by PPOTrainer.step_once once the rollouts are scored
    logprobs: torch.Tensor = field(default_factory=lambda: torch.empty(0))
    ref_logprobs: torch.Tensor = field(default_factory=lambda: torch.empty(0))
    values: torch.Tensor = field(default_factory=lambda: torch.empty(0))
    advantages: torch.Tensor = field(default_factory=lambda: torch.empty(0))
    returns: torch.Tensor = field(default_factory=lambda: torch.empty(0))

    @classmethod
    def pack(
        cls, prompts: list[list[int]], responses: list[list[int]], pad_id: int, device: Any
    ) -> RolloutBatch:
        prompt_ids, prompt_mask = left_pad(prompts, pad_id, device)
        width = max(1, max(len(r) for r in responses))
        response_ids = torch.full((len(responses), width), pad_id, dtype=torch.long)
        response_mask = torch.zeros((len(responses), width), dtype=torch.float32)
        for i, row in enumerate(responses):
            response_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            response_mask[i, : len(row)] = 1.0
        response_ids, response_mask = response_ids.to(device), response_mask.to(device)
        return cls(
            input_ids=torch.cat([prompt_ids, response_ids], dim=1),
            attention_mask=torch.cat([prompt_mask, response_mask.long()], dim=1),
            prompt_width=prompt_ids.shape[1],
            responses=response_ids,
            mask=response_mask,
        )

    def rows(self, index: torch.Tensor) -> RolloutBatch:
        """The sub-batch at ``index`` (every per-rollout tensor sliced alike)."""
        n = len(self.responses)
        sliced: dict[str, Any] = {
            name: value[index]
            for name, value in self.__dict__.items()
            if isinstance(value, torch.Tensor) and len(value) == n
        }
        return replace(self, **sliced)

    def padded(self, rows: list[list[float]]) -> torch.Tensor:
        """Per-rollout float lists (e.g. an engine's log-probs) as a (batch, tokens) tensor."""
        out = torch.zeros_like(self.mask)
        for i, row in enumerate(rows):
            width = min(len(row), out.shape[1])
            out[i, :width] = torch.tensor(row[:width], dtype=out.dtype)
        return out
