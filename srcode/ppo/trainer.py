"""The PPO loop: build everything from a config, then ``train()`` (see srcode/ppo/__init__.py).

One iteration is :meth:`PPOTrainer.step_once`; the maths it calls is in
:mod:`srcode.ppo.maths`, the tensors it moves in :mod:`srcode.ppo.model`, checkpoints and
the final model in :mod:`srcode.ppo.saving`.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from srcode.config import PLAIN_PROMPT_SUFFIX, SRCodeConfig
from srcode.data import check_model_source, load_examples, resolve_model_path
from srcode.ppo.maths import (
    AdaptiveKLController,
    FixedKLController,
    compute_gae,
    group_advantages,
    kl_estimate,
    masked_mean,
    masked_whiten,
    policy_loss,
    value_loss,
)
from srcode.ppo.model import (
    PolicyWithValueHead,
    RewardFn,
    Rollout,
    RolloutBatch,
    disable_dropout,
    position_ids,
    response_logprobs,
)
from srcode.ppo.saving import CheckpointMixin
from srcode.ppo_config import validate_ppo
from srcode.rollout import TransformersRollouts


class PPOTrainer(CheckpointMixin):
    """Build everything from a config, then ``train()``; see the package docstring."""

    def __init__(self, config: SRCodeConfig, reward_fn: RewardFn | None = None) -> None:
        self.config = config
        self.run = run = config.ppo
        validate_ppo(run)  # cheap checks first: nothing heavy is built for a bad config
        if run.init_from:
            check_model_source(run.init_from, None, "ppo.init_from")
        else:
            check_model_source(config.model.path, config.model.revision, "model.path")
        self.reward_fn: RewardFn = reward_fn or _scanner_reward(config.reward.options)

        from accelerate import Accelerator
        from accelerate.utils import set_seed

        from srcode.sft import load_causal_lm, load_tokenizer, lora_config

        self.output_dir = Path(run.output_dir)
        self.micro_batch_size = run.mini_batch_size // run.gradient_accumulation_steps
        _forget_accelerator_settings()
        self.accelerator = acc = Accelerator(
            gradient_accumulation_steps=run.gradient_accumulation_steps,
            mixed_precision=run.mixed_precision,
        )
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
            self.ref_model: nn.Module | None = None  # the same network, adapters disabled
        else:
            self.ref_model = load_causal_lm(self.model_path, config.model).eval()
            self.ref_model.requires_grad_(False)
            disable_dropout(self.ref_model)
            self.ref_model.to(acc.device)
        if run.gradient_checkpointing:  # transformers 5 renamed it activation checkpointing
            enable = getattr(policy, "activation_checkpointing_enable", None)
            (enable or policy.gradient_checkpointing_enable)()
            if config.model.lora:
                policy.enable_input_require_grads()
        disable_dropout(policy)
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
            dtype = next(acc.unwrap_model(self.model).policy.parameters()).dtype
            self.rollouts: Any = _vllm_rollouts(self.model_path, run, self.eos_ids, acc, dtype)
        else:
            self.rollouts = TransformersRollouts(run, self.pad_id, self.eos_ids)
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
        """This process's rows for ``step`` (1-based), each repeated ``samples_per_prompt``
        times in a row (one group per prompt): a fixed function of (seed, step)."""
        n = len(self.rows)
        group = self.run.samples_per_prompt
        per_process = self.run.rollout_batch_size // group
        world = self.accelerator.num_processes
        start = (step - 1) * per_process * world + self.accelerator.process_index * per_process
        out = []
        for position in range(start, start + per_process):
            epoch, offset = divmod(position, n)
            if epoch not in self._orders:
                order = list(range(n))
                random.Random(self.run.seed * 100_003 + epoch).shuffle(order)
                self._orders = {epoch: order}  # one pass at a time is all a step needs
            out.extend([self._orders[epoch][offset]] * group)
        return out

    # ---------------------------------------------------------------- forward passes

    @torch.no_grad()
    def _score_tokens(self, batch: RolloutBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(old log-probs, reference log-probs, values) of the responses, micro by micro.

        Eval mode (no dropout) and the policy's autocast for the reference too, so with
        equal weights both give bit-identical log-probs (KL exactly 0 before any update).
        """
        logprobs, ref_logprobs, values = [], [], []
        acc = self.accelerator
        unwrapped = acc.unwrap_model(self.model)
        was_training = self.model.training
        self.model.eval()
        try:
            for index in torch.arange(len(batch.responses)).split(self.micro_batch_size):
                part = batch.rows(index.to(batch.responses.device))
                lp, _, value = self._forward(self.model, part)
                logprobs.append(lp)
                values.append(value)
                inputs = {
                    "input_ids": part.input_ids,
                    "attention_mask": part.attention_mask,
                    "position_ids": position_ids(part.attention_mask),
                    "use_cache": False,
                }
                with acc.autocast():
                    if self.ref_model is None:
                        with unwrapped.policy.disable_adapter():
                            ref_logits = unwrapped.policy(**inputs).logits
                    else:
                        ref_logits = self.ref_model(**inputs).logits
                ref_lp, _ = response_logprobs(
                    ref_logits[:, part.prompt_width - 1 : -1], part.responses, self.run.temperature
                )
                ref_logprobs.append(ref_lp)
        finally:
            self.model.train(was_training)
        return torch.cat(logprobs), torch.cat(ref_logprobs), torch.cat(values)

    def _forward(
        self, model: nn.Module, part: RolloutBatch
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log-probs, entropies, values) of ``part``'s response tokens under ``model``."""
        with self.accelerator.autocast():
            logits, values = model(part.input_ids, part.attention_mask)
        width = part.prompt_width
        logprobs, entropy = response_logprobs(
            logits[:, width - 1 : -1], part.responses, self.run.temperature
        )
        return logprobs, entropy, values[:, width - 1 : -1].float()

    # ---------------------------------------------------------------- one PPO iteration

    def step_once(self) -> dict[str, float]:
        """Roll out, score, compute advantages, update; return this step's metrics."""
        acc, run = self.accelerator, self.run
        self.step += 1
        timings: dict[str, float] = {}
        started = time.perf_counter()

        # 1. rollouts (under the policy's autocast, like the scoring below) -------------
        indices = self._prompt_indices(self.step)
        prompts = [self.prompts[i] for i in indices]
        policy = acc.unwrap_model(self.model).policy
        with acc.autocast():
            responses = self.rollouts.generate(policy, prompts)
        engine_logprobs = getattr(self.rollouts, "last_logprobs", None)
        batch = RolloutBatch.pack(prompts, responses, self.pad_id, acc.device)
        timings["time/rollout"] = time.perf_counter() - started

        # 2. scores from the reward function ------------------------------------------
        t0 = time.perf_counter()
        rollouts = [
            self._make_rollout(i, r, n // run.samples_per_prompt)
            for n, (i, r) in enumerate(zip(indices, responses, strict=True))
        ]
        score = self._pad_scores(self.reward_fn(rollouts), rollouts, batch)
        timings["time/reward"] = time.perf_counter() - t0

        # 3. log-probs and values -------------------------------------------------------
        t0 = time.perf_counter()
        logprobs, ref_logprobs, values = self._score_tokens(batch)
        mask = batch.mask
        kl = kl_estimate(logprobs, ref_logprobs, run.kl_estimator) * mask

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
        rewards = score - self.kl_ctl.value * kl if run.kl_penalty == "reward" else score
        rewards = rewards * mask
        # ============================================================================
        if run.advantage == "gae":
            if run.whiten_rewards:
                rewards = masked_whiten(rewards, mask, shift_mean=False) * mask
            advantages, returns = compute_gae(rewards, values, mask, run.gamma, run.lam)
            if run.whiten_advantages:
                advantages = masked_whiten(advantages, mask) * mask
        else:  # critic-free: the group of samples_per_prompt responses is the baseline
            advantages = group_advantages(
                rewards, mask, run.samples_per_prompt, run.advantage, run.gamma
            )
            returns = torch.zeros_like(advantages)
        batch.logprobs, batch.ref_logprobs, batch.values = logprobs, ref_logprobs, values
        batch.advantages, batch.returns = advantages, returns
        timings["time/logprobs"] = time.perf_counter() - t0

        # 4. update ---------------------------------------------------------------------
        t0 = time.perf_counter()
        update_stats = self._update(batch)
        self.rollouts.sync_weights(acc.unwrap_model(self.model).policy)
        timings["time/update"] = time.perf_counter() - t0

        # 5. KL control (global mean KL, same β on every process) and metrics ----------
        local = {
            "reward/score_mean": (score * mask).sum(-1).mean(),
            "reward/score_token_mean": masked_mean(score, mask),
            "reward/total_mean": rewards.sum(-1).mean(),
            "kl/mean": kl.sum(-1).mean(),
            "advantages/mean": masked_mean(advantages, mask),
            "advantages/abs_mean": masked_mean(advantages.abs(), mask),
            "response/length_mean": mask.sum(-1).float().mean(),
            "response/truncated_frac": torch.tensor(
                [float(r.metadata["truncated"]) for r in rollouts], device=acc.device
            ).mean(),
            **update_stats,
        }
        if run.advantage == "gae":
            local["returns/mean"] = masked_mean(returns, mask)
        if engine_logprobs is not None:  # the rollout engine's own log-probs (vLLM)
            diff = (batch.padded(engine_logprobs).to(logprobs.device) - logprobs).abs() * mask
            local["rollout/logprob_abs_diff_mean"] = masked_mean(diff, mask)
            local["rollout/logprob_abs_diff_max"] = diff.max()
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

    def _make_rollout(self, row_index: int, response: list[int], group: int) -> Rollout:
        from srcode.rewards import decode_with_offsets

        row = self.rows[row_index]
        text, offsets = decode_with_offsets(self.tokenizer, response)
        metadata = {k: v for k, v in row.items() if k not in {"prompt", "language"}}
        metadata.update(
            row_index=row_index,
            group=group,
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
        """``ppo_epochs`` passes of shuffled mini-batches; mean stats over all micro-batches.

        Train mode only when gradient checkpointing needs it (transformers checkpoints in
        train mode only); dropout is off either way (``disable_dropout``).
        """
        acc, run = self.accelerator, self.run
        self.model.train(run.gradient_checkpointing)
        critic = run.advantage == "gae"
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
                        pg_loss, stats = policy_loss(
                            logprobs,
                            part.logprobs,
                            part.advantages,
                            part.mask,
                            cliprange=run.cliprange,
                            clip_mode=run.clip_mode,
                            tau_pos=run.soft_clip_tau,
                            tau_neg=run.soft_clip_tau_neg,
                            dual_clip=run.dual_clip,
                            max_log_ratio=run.max_log_ratio,
                        )
                        loss = pg_loss
                        if critic:
                            vf_loss, vf_stats = value_loss(
                                values,
                                part.values,
                                part.returns,
                                part.mask,
                                cliprange_value=run.cliprange_value,
                            )
                            loss = loss + run.vf_coef * vf_loss
                            stats.update(vf_stats, **{"loss/value": vf_loss.detach()})
                        else:  # the value head takes no part, but DDP wants every parameter used
                            loss = loss + 0.0 * values.sum()
                        if run.kl_penalty == "loss":
                            kl = kl_estimate(logprobs, part.ref_logprobs, run.kl_estimator)
                            kl_loss = masked_mean(kl, part.mask)
                            loss = loss + self.kl_ctl.value * kl_loss
                            stats["loss/kl"] = kl_loss.detach()
                        acc.backward(loss)
                        if acc.sync_gradients:
                            acc.clip_grad_norm_(self.model.parameters(), run.max_grad_norm)
                        self.optimizer.step()
                        self.optimizer.zero_grad()
                    stats.update(
                        {
                            "loss/policy": pg_loss.detach(),
                            "loss/total": loss.detach(),
                            "policy/entropy": masked_mean(entropy.detach(), part.mask),
                        }
                    )
                    for key, value in stats.items():
                        if key == "policy/ratio_max":
                            sums[key] = torch.maximum(sums.get(key, value), value)
                        else:
                            sums[key] = sums.get(key, 0.0) + value
                    count += 1
        return {k: v if k == "policy/ratio_max" else v / count for k, v in sums.items()}


def _forget_accelerator_settings() -> None:
    """Let a second trainer in one process (benchmarks, tests) pick its own mixed precision.

    accelerate keeps the first Accelerator's settings in a process-wide singleton and refuses
    different ones later; the process group (PartialState) is kept.
    """
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=False)


def _scanner_reward(options: dict[str, Any]) -> RewardFn:
    """The ``reward:`` section's scanner-based reward (srcode.rewards.ScannerReward)."""
    from srcode.rewards import ScannerReward

    return ScannerReward(options)


def _vllm_rollouts(model_path: str, run: Any, eos_ids: list[int], acc: Any, dtype: Any) -> Any:
    """The colocated vLLM engine (srcode.rollout_vllm; vLLM imported only when asked for)."""
    from srcode.rollout_vllm import VLLMRollouts

    return VLLMRollouts(model_path, run, eos_ids, acc.process_index, dtype=dtype)
