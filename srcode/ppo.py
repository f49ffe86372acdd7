"""SRCode's PPO: a compact, self-contained trainer with token-level rewards.

TRL removed its PPO trainer after 1.12, so this module owns one, written to be read top to
bottom. One iteration (``PPOTrainer.step_once``):

1. **Rollouts** — sample ``rollout_batch_size`` rl prompts, generate responses with the
   policy (``srcode.rollout``: transformers ``generate``, or a colocated vLLM engine), cut
   each at its first EOS.
2. **Scores** — the reward function turns each response into one float per response token
   (``RewardFn``; srcode/rewards.py maps scanner findings onto tokens).
3. **Log-probs and values** — of the response tokens under the policy (``old``), the frozen
   reference model (the LoRA-disabled base when LoRA is on) and the value head.
4. **Rewards** — ``r_t = score_t − β·(log π(y_t) − log π_ref(y_t))`` per token (β from a fixed
   or adaptive KL controller). *This is where SRCode differs from TRL's old PPO*, which put one
   scalar on the last token; see the marked block in ``PPOTrainer.step_once``.
5. **GAE** — ``δ_t = r_t + γ·V_{t+1} − V_t``, ``A_t = δ_t + γλ·A_{t+1}`` (0 past the last
   response token), returns ``R_t = A_t + V_t``; advantages whitened over the batch.
6. **Update** — ``ppo_epochs`` passes of shuffled mini-batches (each ``gradient_accumulation
   _steps`` micro-batches), loss = policy loss + ``vf_coef``·value loss:

   - hard clip: ``L = mean_t max(−A_t·ρ_t, −A_t·clip(ρ_t, 1−ε, 1+ε))``, ``ρ_t = π/π_old``;
   - soft clip (``clip_mode: soft``): ``L = mean_t −A_t·(4/τ)·σ(τ(ρ_t − 1))``, with
     ``τ = soft_clip_tau`` for ``A_t > 0`` and ``soft_clip_tau_neg`` otherwise. Its gradient
     is ``−A_t·ρ_t·w(ρ_t)·∇log π`` with ``w = 4σ(1−σ)``: exactly PPO's at ``ρ = 1``, halved at
     ``|ρ−1| = 1.763/τ``, fading smoothly instead of dropping to zero at ``1±ε``. Hard clipping
     zeroes the gradient of every token past the bound, which is where a few strongly rewarded
     or penalised tokens (a vulnerable call, its secure replacement) land — the paper's worry
     that clipping mutes token-level signals. This is a sigmoid-gated soft clip in the spirit
     of SAPO (Qwen, 2025);
   - value: ``L_V = ½·mean_t max((V − R)², (V_old + clip(V − V_old, ±ε_v) − R)²)``.

   Means are over response tokens (``mask``), never over padding.

Runs unchanged under ``accelerate launch -m srcode.cli ppo CONFIG`` (DDP; on CPUs
``ACCELERATE_USE_CPU=1 torchrun --nproc_per_node N -m srcode.cli ppo CONFIG``): each process
samples its own prompts, the KL controller sees the global mean KL, metrics are averaged
across processes, only the main process writes files. Checkpoints
(``accelerator.save_state``: weights incl. value head, optimizer, every process's RNG, the KL
controller) live in ``OUTPUT_DIR/checkpoints/step-N``; ``resume_from: latest`` continues at
step N+1 with the same prompts and samples (bit-identical to an uninterrupted run on CPU).
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from srcode.config import (
    PLAIN_PROMPT_SUFFIX,
    ConfigError,
    SRCodeConfig,
    check_reward_section,
    load_examples,
    resolve_model_path,
    validate_ppo,
)
from srcode.rewards import apply_kl, decode_with_offsets
from srcode.rollout import TransformersRollouts, VLLMRollouts, left_pad

# =========================================================================== 1. interfaces


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
    cwe, plus truncated and row_index.
    """

    prompt_text: str
    response_text: str
    response_ids: list[int]
    response_offsets: list[tuple[int, int]]
    language: str
    metadata: dict[str, Any] = field(default_factory=dict)


#: rollouts -> one float tensor per rollout, of length len(rollout.response_ids), without KL
RewardFn = Callable[[list[Rollout]], list[torch.Tensor]]


# =========================================================================== 2. PPO math


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the positions where ``mask`` is 1 (response tokens, not padding)."""
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def masked_whiten(
    values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True
) -> torch.Tensor:
    """Zero mean (optional) and unit variance over masked positions; padding stays as is."""
    mean = masked_mean(values, mask)
    count = mask.sum()
    var = masked_mean((values - mean) ** 2, mask)
    if count > 1:  # unbiased, like torch.var
        var = var * count / (count - 1)
    whitened = (values - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        whitened = whitened + mean
    return whitened


def compute_gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over (batch, tokens); returns (advantages, returns).

    Positions where ``mask`` is 0 (padding after the last response token) count as terminal:
    their value is 0, so the last real token bootstraps from nothing.
    """
    rewards = rewards * mask
    values = values * mask
    steps = rewards.shape[1]
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(steps)):
        next_value = values[:, t + 1] if t + 1 < steps else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = delta + gamma * lam * running
        advantages[:, t] = running
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    cliprange: float,
    clip_mode: str = "hard",
    tau_pos: float = 10.0,
    tau_neg: float | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's clipped surrogate (``hard``) or the sigmoid-gated soft clip (``soft``).

    Formulas in the module docstring. ``clipfrac`` counts tokens whose ratio left [1−ε, 1+ε]
    (hard: where the clipped branch won), so the two modes can be compared on one chart.
    """
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    if clip_mode == "hard":
        unclipped = -advantages * ratio
        clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
        per_token = torch.maximum(unclipped, clipped)
        clipfrac = masked_mean((clipped > unclipped).float(), mask)
    elif clip_mode == "soft":
        tau = torch.where(
            advantages > 0,
            torch.full_like(advantages, tau_pos),
            torch.full_like(advantages, tau_pos if tau_neg is None else tau_neg),
        )
        per_token = -advantages * torch.sigmoid(tau * (ratio - 1.0)) * (4.0 / tau)
        clipfrac = masked_mean(((ratio - 1.0).abs() > cliprange).float(), mask)
    else:
        raise ValueError(f"clip_mode must be 'hard' or 'soft', not {clip_mode!r}")
    loss = masked_mean(per_token, mask)
    stats = {
        "policy/clipfrac": clipfrac.detach(),
        "policy/approx_kl": (0.5 * masked_mean(log_ratio**2, mask)).detach(),
        "policy/ratio_mean": masked_mean(ratio, mask).detach(),
    }
    return loss, stats


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    *,
    cliprange_value: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped value loss: the value head may not move more than ±ε_v per rollout batch."""
    clipped = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
    loss_unclipped = (values - returns) ** 2
    loss_clipped = (clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(loss_unclipped, loss_clipped), mask)
    stats = {
        "value/clipfrac": masked_mean((loss_clipped > loss_unclipped).float(), mask).detach(),
        "value/mean": masked_mean(values, mask).detach(),
    }
    return loss, stats


class FixedKLController:
    """β stays at its initial value."""

    def __init__(self, kl_coef: float) -> None:
        self.value = kl_coef

    def update(self, current_kl: float, n_steps: int) -> None:
        del current_kl, n_steps

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value = float(state["value"])


class AdaptiveKLController(FixedKLController):
    """Ziegler et al. (2019): move β proportionally towards the KL target.

    ``e = clip(KL/target − 1, −0.2, 0.2)``; ``β ← β·(1 + e·n/horizon)`` after ``n`` rollouts.
    """

    def __init__(self, kl_coef: float, target: float, horizon: int) -> None:
        super().__init__(kl_coef)
        self.target = target
        self.horizon = horizon

    def update(self, current_kl: float, n_steps: int) -> None:
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon


# =========================================================================== 3. the models


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
            position_ids=_position_ids(attention_mask),
            output_hidden_states=True,
            use_cache=False,
        )
        hidden = out.hidden_states[-1].to(self.value_head.weight.dtype)
        return out.logits, self.value_head(hidden).squeeze(-1)


def _position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip left padding, as ``generate`` computes them."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def _disable_dropout(model: nn.Module) -> None:
    """PPO needs ρ = 1 exactly on the first mini-batch: no dropout anywhere (TRL does this)."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "attention_dropout"):
            config.attention_dropout = 0.0


def response_logprobs(
    logits: torch.Tensor, responses: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs of ``responses`` and entropies under ``logits`` at the sampling temperature."""
    logp = torch.log_softmax(logits.float() / temperature, dim=-1)
    chosen = logp.gather(-1, responses.unsqueeze(-1)).squeeze(-1)
    entropy = -(logp.exp() * logp).sum(-1)
    return chosen, entropy


# =========================================================================== 4. rollout batches


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


# =========================================================================== 5. the trainer


class PPOTrainer:
    """Build everything from a config, then ``train()``; see the module docstring."""

    def __init__(self, config: SRCodeConfig, reward_fn: RewardFn | None = None) -> None:
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        from srcode.sft import load_causal_lm, load_tokenizer, lora_config

        self.config = config
        self.run = run = config.ppo
        validate_ppo(run)
        self.output_dir = Path(run.output_dir)
        self.micro_batch_size = run.mini_batch_size // run.gradient_accumulation_steps
        self.accelerator = Accelerator(
            gradient_accumulation_steps=run.gradient_accumulation_steps,
            mixed_precision=run.mixed_precision,
        )
        acc = self.accelerator
        if acc.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        set_seed(run.seed, device_specific=True)  # each process samples differently

        # --- tokenizer, prompts -------------------------------------------------------
        with acc.main_process_first():  # tiny:// is built once, by the main process
            self.model_path = run.init_from or resolve_model_path(config.model, self.output_dir)
        self.tokenizer = tok = load_tokenizer(self.model_path, config.model)
        self.rows = load_examples(config.data, "rl", config.source_path)
        self.prompts = [self._encode_prompt(row["prompt"]) for row in self.rows]
        self._orders: dict[int, list[int]] = {}

        # --- policy + value head, reference ------------------------------------------
        policy = load_causal_lm(self.model_path, config.model)
        eos = policy.generation_config.eos_token_id
        eos_ids = eos if isinstance(eos, list) else [eos] if eos is not None else []
        self.eos_ids = sorted({*eos_ids, tok.eos_token_id} - {None})
        self.pad_id = tok.pad_token_id
        if config.model.lora:
            from peft import get_peft_model

            policy = get_peft_model(policy, lora_config(config.model, dropout=0.0))
            self.ref_model = None  # the same network with adapters disabled
        else:
            self.ref_model = load_causal_lm(self.model_path, config.model).eval()
            self.ref_model.requires_grad_(False)
            self.ref_model.to(acc.device)
        if run.gradient_checkpointing:  # transformers 5 renamed it activation checkpointing
            enable = getattr(policy, "activation_checkpointing_enable", None)
            (enable or policy.gradient_checkpointing_enable)()
            if config.model.lora:
                policy.enable_input_require_grads()
        _disable_dropout(policy)
        model = PolicyWithValueHead(policy, policy.config.get_text_config().hidden_size)
        optimizer = torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad],
            lr=run.learning_rate,
            weight_decay=run.weight_decay,
        )
        self.model, self.optimizer = acc.prepare(model, optimizer)

        if run.kl_control == "adaptive":
            self.kl_ctl: FixedKLController = AdaptiveKLController(
                run.init_kl_coef, run.kl_target, run.kl_horizon
            )
        else:
            self.kl_ctl = FixedKLController(run.init_kl_coef)
        acc.register_for_checkpointing(self.kl_ctl)

        if run.rollout_backend == "vllm":
            self.rollouts: TransformersRollouts | VLLMRollouts = VLLMRollouts(
                self.model_path, run, self.eos_ids, acc.process_index
            )
        else:
            self.rollouts = TransformersRollouts(run, self.pad_id, self.eos_ids)
        self.reward_fn: RewardFn = reward_fn or ScannerReward(config.reward.options)
        self.step = 0
        self.writer: Any = None

    # ---------------------------------------------------------------- data and prompts

    def _encode_prompt(self, prompt: str) -> list[int]:
        """The prompt as SFT trained it (chat template or plain suffix), left-truncated."""
        tok = self.tokenizer
        if tok.chat_template is not None:
            text = tok.apply_chat_template(
                [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
            )
            ids = tok(text, add_special_tokens=False)["input_ids"]
        else:
            ids = tok(prompt + PLAIN_PROMPT_SUFFIX)["input_ids"]
        return ids[-self.run.max_prompt_length :]

    def _prompt_indices(self, step: int) -> list[int]:
        """This process's rows for ``step`` (1-based): a fixed function of (seed, step)."""
        n = len(self.rows)
        world = self.accelerator.num_processes
        per_step = self.run.rollout_batch_size * world
        start = (step - 1) * per_step + self.accelerator.process_index * self.run.rollout_batch_size
        out = []
        for position in range(start, start + self.run.rollout_batch_size):
            epoch, offset = divmod(position, n)
            if epoch not in self._orders:
                order = list(range(n))
                random.Random(self.run.seed * 100_003 + epoch).shuffle(order)
                self._orders = {epoch: order}  # one pass at a time is all a step needs
            out.append(self._orders[epoch][offset])
        return out

    # ---------------------------------------------------------------- forward passes

    @torch.no_grad()
    def _score_tokens(self, batch: RolloutBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(old log-probs, reference log-probs, values) of the responses, micro by micro."""
        logprobs, ref_logprobs, values = [], [], []
        unwrapped = self.accelerator.unwrap_model(self.model)
        for index in torch.arange(len(batch.responses)).split(self.micro_batch_size):
            part = batch.rows(index)
            lp, _, value = self._forward(self.model, part)
            logprobs.append(lp)
            values.append(value)
            if self.ref_model is None:
                with unwrapped.policy.disable_adapter():
                    ref_logits = unwrapped.policy(
                        input_ids=part.input_ids,
                        attention_mask=part.attention_mask,
                        position_ids=_position_ids(part.attention_mask),
                        use_cache=False,
                    ).logits
            else:
                ref_logits = self.ref_model(
                    input_ids=part.input_ids,
                    attention_mask=part.attention_mask,
                    position_ids=_position_ids(part.attention_mask),
                    use_cache=False,
                ).logits
            ref_lp, _ = response_logprobs(
                self._response_logits(ref_logits, part), part.responses, self.run.temperature
            )
            ref_logprobs.append(ref_lp)
        return torch.cat(logprobs), torch.cat(ref_logprobs), torch.cat(values)

    def _forward(
        self, model: nn.Module, part: RolloutBatch
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log-probs, entropies, values) of ``part``'s response tokens under ``model``."""
        logits, values = model(part.input_ids, part.attention_mask)
        logprobs, entropy = response_logprobs(
            self._response_logits(logits, part), part.responses, self.run.temperature
        )
        width = part.prompt_width
        return logprobs, entropy, values[:, width - 1 : -1].float()

    @staticmethod
    def _response_logits(logits: torch.Tensor, part: RolloutBatch) -> torch.Tensor:
        """Position t−1 predicts response token t."""
        return logits[:, part.prompt_width - 1 : -1]

    # ---------------------------------------------------------------- one PPO iteration

    def step_once(self) -> dict[str, float]:
        """Roll out, score, compute advantages, update; return this step's metrics."""
        acc, run = self.accelerator, self.run
        self.step += 1
        timings: dict[str, float] = {}
        started = time.perf_counter()

        # 1. rollouts ----------------------------------------------------------------
        indices = self._prompt_indices(self.step)
        prompts = [self.prompts[i] for i in indices]
        policy = acc.unwrap_model(self.model).policy
        responses = self.rollouts.generate(policy, prompts)
        batch = RolloutBatch.pack(prompts, responses, self.pad_id, acc.device)
        timings["time/rollout"] = time.perf_counter() - started

        # 2. scores from the reward function ------------------------------------------
        t0 = time.perf_counter()
        rollouts = [self._make_rollout(i, r) for i, r in zip(indices, responses, strict=True)]
        scores = self.reward_fn(rollouts)
        score = self._pad_scores(scores, rollouts, batch)
        timings["time/reward"] = time.perf_counter() - t0

        # 3. log-probs and values -------------------------------------------------------
        t0 = time.perf_counter()
        logprobs, ref_logprobs, values = self._score_tokens(batch)
        mask = batch.mask

        # ============================================================================
        # TOKEN-LEVEL REWARDS — where SRCode differs from TRL's old PPO.
        # TRL's PPO (PPOTrainer to 0.11, then the PPOv2 design, removed after 1.12) did
        #     rewards = -β·KL_t  at every token,  and  rewards[i, last] += score_i,
        # i.e. one scalar per sample on its final token, so GAE had to propagate credit
        # backwards through γλ. Here `score` is already a (batch, tokens) tensor from
        # srcode.rewards: penalties on the tokens inside a scanner finding, bonuses on
        # tokens that reproduce the reference fix's secure spans, sequence-level terms on
        # the last token. With `granularity: instance` the same reward arrives summed on
        # the last token — TRL's scheme — which is the ablation baseline.
        rewards, _ = apply_kl(score, logprobs, ref_logprobs, self.kl_ctl.value, mask)
        # ============================================================================
        if run.whiten_rewards:
            rewards = masked_whiten(rewards, mask, shift_mean=False) * mask
        advantages, returns = compute_gae(rewards, values, mask, run.gamma, run.lam)
        if run.whiten_advantages:
            advantages = masked_whiten(advantages, mask) * mask
        batch.logprobs, batch.values = logprobs, values
        batch.advantages, batch.returns = advantages, returns
        kl_per_sequence = ((logprobs - ref_logprobs) * mask).sum(-1)
        timings["time/logprobs"] = time.perf_counter() - t0

        # 4. update ---------------------------------------------------------------------
        t0 = time.perf_counter()
        update_stats = self._update(batch)
        self.rollouts.sync_weights(acc.unwrap_model(self.model).policy)
        timings["time/update"] = time.perf_counter() - t0

        # 5. KL control (global mean KL, same β on every process) and metrics ----------
        lengths = mask.sum(-1)
        local = {
            "reward/score_mean": (score * mask).sum(-1).mean(),
            "reward/score_token_mean": masked_mean(score, mask),
            "reward/total_mean": (rewards * mask).sum(-1).mean(),
            "kl/mean": kl_per_sequence.mean(),
            "returns/mean": masked_mean(returns, mask),
            "advantages/mean": masked_mean(advantages, mask),
            "response/length_mean": lengths.float().mean(),
            "response/truncated_frac": torch.tensor(
                [float(r.metadata["truncated"]) for r in rollouts], device=acc.device
            ).mean(),
            **update_stats,
        }
        names = list(local)
        reduced = acc.reduce(torch.stack([local[k].float() for k in names]), "mean")
        metrics = {"step": self.step, "kl/coef": self.kl_ctl.value}
        metrics.update({k: float(v) for k, v in zip(names, reduced.tolist(), strict=True)})
        self.kl_ctl.update(metrics["kl/mean"], run.rollout_batch_size * acc.num_processes)
        metrics.update(self._reward_fn_log())
        metrics["lr"] = self.optimizer.param_groups[0]["lr"]
        timings["time/step"] = time.perf_counter() - started
        metrics.update(timings)
        return metrics

    def _reward_fn_log(self) -> dict[str, float]:
        """The reward fn's own batch statistics (``last_log``), averaged over processes."""
        from accelerate.utils import gather_object

        log = dict(getattr(self.reward_fn, "last_log", None) or {})
        if self.accelerator.num_processes == 1:
            return log
        logs = gather_object([log])
        keys = sorted({k for entry in logs for k in entry})
        return {k: sum(entry.get(k, 0.0) for entry in logs) / len(logs) for k in keys}

    def _make_rollout(self, row_index: int, response: list[int]) -> Rollout:
        row = self.rows[row_index]
        text, offsets = decode_with_offsets(self.tokenizer, response)
        metadata = {k: v for k, v in row.items() if k not in {"prompt", "language"}}
        metadata.update(
            row_index=row_index,
            truncated=not response or response[-1] not in self.eos_ids,
            rendered_prompt=self.tokenizer.decode(self.prompts[row_index]),
        )
        return Rollout(
            prompt_text=row["prompt"],
            response_text=text,
            response_ids=response,
            response_offsets=offsets,
            language=row.get("language", "unknown"),
            metadata=metadata,
        )

    @staticmethod
    def _pad_scores(
        scores: list[torch.Tensor], rollouts: list[Rollout], batch: RolloutBatch
    ) -> torch.Tensor:
        """The reward fn's per-rollout vectors as one (batch, tokens) tensor."""
        if len(scores) != len(rollouts):
            raise ValueError(
                f"reward fn returned {len(scores)} tensors for {len(rollouts)} rollouts"
            )
        out = torch.zeros_like(batch.mask)
        for i, (vector, rollout) in enumerate(zip(scores, rollouts, strict=True)):
            vector = torch.as_tensor(vector, dtype=torch.float32).flatten()
            if vector.numel() != len(rollout.response_ids):
                raise ValueError(
                    f"reward fn gave {vector.numel()} values for a response of "
                    f"{len(rollout.response_ids)} tokens (rollout {i}): one value per token"
                )
            if not torch.isfinite(vector).all():
                raise ValueError(f"reward fn gave a non-finite value (rollout {i})")
            out[i, : vector.numel()] = vector.to(out.device)
        return out

    def _update(self, batch: RolloutBatch) -> dict[str, torch.Tensor]:
        """``ppo_epochs`` passes of shuffled mini-batches; mean stats over all micro-batches."""
        acc, run = self.accelerator, self.run
        self.model.train()
        sums: dict[str, torch.Tensor] = {}
        count = 0
        generator = torch.Generator().manual_seed(run.seed * 7919 + self.step)
        for _ in range(run.ppo_epochs):
            order = torch.randperm(len(batch.responses), generator=generator)
            for mini in order.split(run.mini_batch_size):
                for micro in mini.split(self.micro_batch_size):
                    part = batch.rows(micro.to(batch.responses.device))
                    with acc.accumulate(self.model):
                        logprobs, entropy, values = self._forward(self.model, part)
                        pg_loss, pg_stats = policy_loss(
                            logprobs,
                            part.logprobs,
                            part.advantages,
                            part.mask,
                            cliprange=run.cliprange,
                            clip_mode=run.clip_mode,
                            tau_pos=run.soft_clip_tau,
                            tau_neg=run.soft_clip_tau_neg,
                        )
                        vf_loss, vf_stats = value_loss(
                            values,
                            part.values,
                            part.returns,
                            part.mask,
                            cliprange_value=run.cliprange_value,
                        )
                        loss = pg_loss + run.vf_coef * vf_loss
                        acc.backward(loss)
                        if acc.sync_gradients:
                            acc.clip_grad_norm_(self.model.parameters(), run.max_grad_norm)
                        self.optimizer.step()
                        self.optimizer.zero_grad()
                    stats = {
                        "loss/policy": pg_loss.detach(),
                        "loss/value": vf_loss.detach(),
                        "loss/total": loss.detach(),
                        "policy/entropy": masked_mean(entropy.detach(), part.mask),
                        **pg_stats,
                        **vf_stats,
                    }
                    for key, value in stats.items():
                        sums[key] = sums.get(key, 0.0) + value
                    count += 1
        return {key: value / count for key, value in sums.items()}

    # ---------------------------------------------------------------- the loop

    def train(self) -> Path:
        """Resume if asked, run until ``ppo.steps``, save the final model; return its dir."""
        acc, run = self.accelerator, self.run
        metrics_path = self.output_dir / "metrics.jsonl"
        if run.resume_from:
            self.load_checkpoint(self._checkpoint_to_resume())
            if acc.is_main_process and metrics_path.exists():  # drop steps we will redo
                kept = [m for m in iter_metrics(metrics_path) if m["step"] <= self.step]
                metrics_path.write_text("".join(json.dumps(m) + "\n" for m in kept))
        elif acc.is_main_process:
            metrics_path.unlink(missing_ok=True)
        if acc.is_main_process and run.tensorboard:
            self.writer = _summary_writer(self.output_dir / "tensorboard", self.step + 1)
        while self.step < run.steps:
            metrics = self.step_once()
            if acc.is_main_process:
                metrics["time"] = time.time()
                with metrics_path.open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps(metrics) + "\n")
                if self.writer is not None:
                    for key, value in metrics.items():
                        if key not in {"step", "time"}:
                            self.writer.add_scalar(key, value, self.step)
                    self.writer.flush()
                acc.print(_progress_line(metrics))
            if (run.save_every and self.step % run.save_every == 0) or self.step == run.steps:
                self.save_checkpoint()
        if self.writer is not None:
            self.writer.close()
        return self.save_final()

    # ---------------------------------------------------------------- checkpoints

    def checkpoint_dir(self, step: int) -> Path:
        return self.output_dir / "checkpoints" / f"step-{step:06d}"

    def save_checkpoint(self) -> Path:
        """Weights (policy + value head), optimizer, RNG of every process, β, step."""
        path = self.checkpoint_dir(self.step)
        self.accelerator.save_state(str(path))
        if self.accelerator.is_main_process:
            state = {"step": self.step, "kl_coef": self.kl_ctl.value, "model": self.model_path}
            (path / "trainer_state.json").write_text(json.dumps(state, indent=2) + "\n")
        self.accelerator.wait_for_everyone()
        return path

    def _checkpoint_to_resume(self) -> Path:
        if self.run.resume_from != "latest":
            return Path(str(self.run.resume_from))
        found = sorted((self.output_dir / "checkpoints").glob("step-*/trainer_state.json"))
        if not found:
            raise ConfigError(
                f"ppo.resume_from: latest, but {self.output_dir}/checkpoints is empty"
            )
        return found[-1].parent

    def load_checkpoint(self, path: Path) -> None:
        state_file = path / "trainer_state.json"
        if not state_file.exists():
            raise ConfigError(f"ppo.resume_from: {path} is not a srcode PPO checkpoint")
        self.accelerator.load_state(str(path))
        self.step = int(json.loads(state_file.read_text())["step"])
        self.rollouts.sync_weights(self.accelerator.unwrap_model(self.model).policy)
        self.accelerator.print(f"resumed from {path} at step {self.step}")

    def save_final(self) -> Path:
        """A loadable model at OUTPUT_DIR (LoRA merged; adapters in adapter/), value head, card."""
        from safetensors.torch import save_file

        from srcode.sft import write_model_card

        acc = self.accelerator
        acc.wait_for_everyone()
        if acc.is_main_process:
            unwrapped = acc.unwrap_model(self.model)
            policy = unwrapped.policy
            if self.config.model.lora:
                policy.save_pretrained(self.output_dir / "adapter")
                policy = policy.merge_and_unload()
            policy.save_pretrained(self.output_dir)
            self.tokenizer.save_pretrained(self.output_dir)
            head = {
                k: v.detach().cpu().contiguous()
                for k, v in unwrapped.value_head.state_dict().items()
            }
            save_file(head, str(self.output_dir / "value_head.safetensors"))
            last = _last_metrics(self.output_dir / "metrics.jsonl")
            write_model_card(
                self.output_dir,
                stage="ppo",
                base_model=self.model_path,
                config=self.config,
                data_rows=len(self.rows),
                metrics=last,
            )
        acc.wait_for_everyone()
        return self.output_dir


# =========================================================================== 6. glue


class ScannerReward:
    """The ``reward:`` section's scorer (srcode.rewards.RolloutScorer) as a :data:`RewardFn`.

    Keys of ``reward:`` are srcode.rewards.RewardConfig's fields, plus ``scanners`` (names
    from vul2safe's registry; default: every available default scanner for the language) and
    ``mode`` (``chat`` | ``completion``: how code is extracted from a response). The KL
    coefficient is PPO's (``ppo.init_kl_coef`` and its controller), not the reward's.
    ``last_log`` holds the scorer's batch statistics for the metrics log.
    """

    def __init__(self, options: dict[str, Any]) -> None:
        from srcode.rewards import RewardConfig, RolloutScorer

        check_reward_section(options)
        options = dict(options)
        scanners = options.pop("scanners", None)
        mode = options.pop("mode", "chat")
        self.scorer = RolloutScorer(RewardConfig(**options), scanners=scanners, mode=mode)
        self.last_log: dict[str, float] = {}

    @staticmethod
    def to_scored(rollouts: list[Rollout]) -> list[Any]:
        """The trainer's rollouts in the form :class:`srcode.rewards.RolloutScorer` takes."""
        from srcode.rewards import Rollout as ScoredRollout

        return [
            ScoredRollout(
                prompt=r.prompt_text,
                response=r.response_text,
                offsets=r.response_offsets,
                language=r.language,
                secure_snippets=_secure_snippets(r.metadata),
                tests_passed=r.metadata.get("tests_passed"),
                finish_reason="length" if r.metadata.get("truncated") else "stop",
            )
            for r in rollouts
        ]

    def __call__(self, rollouts: list[Rollout]) -> list[torch.Tensor]:
        batch = self.scorer(self.to_scored(rollouts))
        self.last_log = batch.stats.to_log("scan/")
        return batch.rewards


def _secure_snippets(metadata: dict[str, Any]) -> tuple[str, ...]:
    """The reference fix's secure spans as text (PrimeVul+ ``localize`` character spans)."""
    reference = metadata.get("reference") or ""
    spans = metadata.get("secure_spans") or []
    return tuple(reference[start:end] for start, end in spans if end > start)


def _summary_writer(path: Path, purge_step: int) -> Any:
    """TensorBoard writer, or None (with a note) when tensorboard is not installed."""
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        print("srcode: tensorboard not installed; metrics go to metrics.jsonl only")
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(path), purge_step=purge_step)


def _progress_line(metrics: dict[str, float]) -> str:
    keys = ("reward/score_mean", "kl/mean", "kl/coef", "loss/policy", "loss/value", "time/step")
    shown = " ".join(f"{k}={metrics[k]:.4g}" for k in keys if k in metrics)
    return f"step {int(metrics['step'])}: {shown}"


def _last_metrics(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return json.loads(lines[-1]) if lines else {}


def iter_metrics(path: Path) -> Iterator[dict[str, Any]]:
    """Read a metrics.jsonl back (tests, notebooks)."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            yield json.loads(line)


def run_ppo(config: SRCodeConfig, reward_fn: RewardFn | None = None) -> Path:
    """Train with PPO as configured; ``reward_fn`` overrides the ``reward:`` section."""
    return PPOTrainer(config, reward_fn=reward_fn).train()
