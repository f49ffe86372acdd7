"""SRCode's PPO: a compact, self-contained trainer with token-level rewards.

TRL removed its PPO trainer after 1.12, so this package owns one, written to be read top to
bottom: :mod:`.maths` (losses, GAE, group advantages, KL — pure functions), :mod:`.model`
(rollouts, the policy with its value head, padded batches), :mod:`.trainer` (one iteration),
:mod:`.saving` (the loop, checkpoints, the final model). One iteration
(``PPOTrainer.step_once``):

1. **Rollouts** — sample ``rollout_batch_size`` responses to ``rollout_batch_size /
   samples_per_prompt`` rl prompts with the policy (``srcode.rollout``: transformers
   ``generate`` with every sampling parameter explicit, or a colocated vLLM engine), cut each
   at its first EOS.
2. **Scores** — the reward function turns each response into one float per response token
   (``RewardFn``; srcode.rewards maps scanner findings onto tokens).
3. **Log-probs and values** — of the response tokens under the policy (``old``), the frozen
   reference model (the LoRA-disabled base when LoRA is on) and the value head, in eval mode
   and under one autocast, so the first ratio and the first KL are exactly what they should be.
4. **Rewards** — ``r_t = score_t − β·KL_t`` (``kl_penalty: reward``; KL estimator k1 or k3,
   β fixed or adaptive) or ``r_t = score_t`` with ``β·KL`` in the loss (``kl_penalty:
   loss``). *This is where SRCode differs from TRL's old PPO*, which put one scalar on the
   last token; see the marked block in ``PPOTrainer.step_once``.
5. **Advantages** — GAE with the value head (``advantage: gae``), or critic-free over each
   prompt's group of responses (``grpo``, ``rloo``); formulas in :mod:`.maths`.
6. **Update** — ``ppo_epochs`` passes of shuffled mini-batches (each ``gradient_accumulation
   _steps`` micro-batches): clipped surrogate (hard, optionally dual-clipped, or soft) from a
   clamped log-ratio, plus ``vf_coef``·value loss for GAE, plus the KL term when it is in the
   loss. Means are over response tokens (``mask``), never over padding.

Runs unchanged under ``accelerate launch -m srcode.cli ppo CONFIG`` (DDP; on CPUs
``ACCELERATE_USE_CPU=1 torchrun --nproc_per_node N -m srcode.cli ppo CONFIG``): each process
samples its own prompts (groups never straddle processes), the KL controller sees the global
mean KL, metrics are averaged across processes, only the main process writes files.
When the rollout engine exposes ``last_logprobs`` (vLLM: the sampled tokens' log-probs as the
engine computed them), ``rollout/logprob_abs_diff_mean`` and ``_max`` log how far they are
from the trainer's own each step.
"""

from __future__ import annotations

from pathlib import Path

from srcode.config import SRCodeConfig
from srcode.ppo.maths import (
    AdaptiveKLController,
    FixedKLController,
    compute_gae,
    group_advantages,
    kl_estimate,
    masked_mean,
    masked_whiten,
    policy_loss,
    reward_to_go,
    value_loss,
)
from srcode.ppo.model import (
    PolicyWithValueHead,
    RewardFn,
    Rollout,
    RolloutBatch,
    disable_dropout,
    response_logprobs,
)
from srcode.ppo.saving import iter_metrics
from srcode.ppo.trainer import PPOTrainer


def run_ppo(config: SRCodeConfig, reward_fn: RewardFn | None = None) -> Path:
    """Train with PPO as configured; ``reward_fn`` overrides the ``reward:`` section."""
    return PPOTrainer(config, reward_fn=reward_fn).train()


__all__ = [
    "AdaptiveKLController",
    "FixedKLController",
    "PPOTrainer",
    "PolicyWithValueHead",
    "RewardFn",
    "Rollout",
    "RolloutBatch",
    "compute_gae",
    "disable_dropout",
    "group_advantages",
    "iter_metrics",
    "kl_estimate",
    "masked_mean",
    "masked_whiten",
    "policy_loss",
    "response_logprobs",
    "reward_to_go",
    "run_ppo",
    "value_loss",
]
