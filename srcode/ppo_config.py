"""The ``ppo:`` section: PPO's knobs (pydantic, like the rest of srcode.config) and their checks.

Its own module because it is the largest section and the one the trainer (srcode/ppo/)
reads; :func:`validate_ppo` holds the cross-field rules that must hold before a GPU is
touched.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from srcode.errors import ConfigError


class PPORunConfig(BaseModel):
    """PPO (or critic-free GRPO/RLOO) with token-level rewards (srcode/ppo/)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    output_dir: str = Field(
        default="runs/ppo", description="Checkpoints, final model, metrics.jsonl, tensorboard/."
    )
    init_from: str | None = Field(
        default=None,
        description=(
            "Start the policy (and reference) from this checkpoint, e.g. the SFT output_dir; "
            "None = `model.path`."
        ),
    )
    seed: int = Field(default=0, description="Seed for prompt order, sampling, value head.")
    steps: int = Field(default=100, description="PPO iterations (rollout batch + update).")
    rollout_batch_size: int = Field(
        default=64,
        description=(
            "Responses sampled per iteration, per process: rollout_batch_size / "
            "samples_per_prompt prompts, each answered samples_per_prompt times."
        ),
    )
    samples_per_prompt: int = Field(
        default=1,
        description=(
            "Responses per prompt (a group). grpo/rloo need at least 2; with gae, more than 1 "
            "just samples each prompt several times. Divides rollout_batch_size."
        ),
    )
    advantage: Literal["gae", "grpo", "rloo"] = Field(
        default="gae",
        description=(
            "'gae' = PPO with the value head (GAE over the per-token rewards). Critic-free, over "
            "each prompt's group of samples_per_prompt responses, on the reward-to-go "
            "G_t = sum of rewards from token t on: 'grpo' = (G_t - group mean of G_0) / "
            "group std of G_0; 'rloo' = G_t - mean of the other responses' G_0. The value "
            "head is then neither used nor trained."
        ),
    )
    mini_batch_size: int = Field(
        default=16, description="Rollouts per optimizer step; divides rollout_batch_size."
    )
    gradient_accumulation_steps: int = Field(
        default=1,
        description="Micro-batches per mini-batch (micro = mini_batch_size / this).",
    )
    ppo_epochs: int = Field(default=4, description="Passes over each rollout batch.")
    learning_rate: float = Field(
        default=1e-6, description="AdamW learning rate (policy and value head)."
    )
    weight_decay: float = Field(default=0.0, description="AdamW weight decay.")
    max_grad_norm: float = Field(default=1.0, description="Gradient-norm clip per step.")
    max_prompt_length: int = Field(
        default=512, description="Prompt tokens kept (left-truncated) for generation."
    )
    max_new_tokens: int = Field(default=512, description="Longest response sampled.")
    temperature: float = Field(
        default=1.0,
        description="Sampling temperature; log-probs are taken at the same temperature.",
    )
    top_p: float = Field(
        default=1.0,
        description=(
            "Must be 1.0: PPO scores the full softmax at `temperature`, so nucleus sampling "
            "would sample from a distribution the log-probs do not describe."
        ),
    )
    top_k: int = Field(
        default=0,
        description="Must be 0 (no top-k), for the same reason as top_p.",
    )
    gamma: float = Field(default=1.0, description="Discount factor over response tokens.")
    lam: float = Field(default=0.95, description="GAE lambda (bias/variance trade-off).")
    cliprange: float = Field(default=0.2, description="PPO ratio clip ε: hard clip to [1-ε, 1+ε].")
    dual_clip: float | None = Field(
        default=None,
        description=(
            "Dual-clip PPO (Ye et al., 2020): for negative advantages the loss is capped at "
            "-c·A, so one token whose ratio exploded cannot dominate a batch. c > 1 (e.g. 3); "
            "None = off. Hard clip only (the soft clip's loss is bounded already)."
        ),
    )
    max_log_ratio: float = Field(
        default=20.0,
        description=(
            "Clamp log(π/π_old) to ±this before exponentiating (no inf/NaN from one token "
            "whose probability collapsed; the clamp also zeroes that token's gradient)."
        ),
    )
    cliprange_value: float = Field(
        default=0.2, description="Value clip: new values stay within ± this of the old ones."
    )
    vf_coef: float = Field(default=0.1, description="Weight of the value loss (gae only).")
    clip_mode: Literal["hard", "soft"] = Field(
        default="hard",
        description=(
            "'hard' = PPO's clipped surrogate. 'soft' = sigmoid-gated surrogate "
            "-(4/τ)·σ(τ(r-1))·A: gradients fade smoothly as the ratio leaves 1 instead of "
            "vanishing at 1±ε on the side the advantage pushes towards (srcode/ppo/maths.py)."
        ),
    )
    soft_clip_tau: float = Field(
        default=10.0,
        description=(
            "τ of the soft clip for positive advantages; the gradient weight halves at "
            "|r-1| = 1.763/τ (0.176 for τ=10, close to ε=0.2)."
        ),
    )
    soft_clip_tau_neg: float | None = Field(
        default=None,
        description="τ for negative advantages (larger = stricter); None = soft_clip_tau.",
    )
    kl_estimator: Literal["k1", "k3"] = Field(
        default="k1",
        description=(
            "Per-token KL(π‖π_ref) estimate, d = log π - log π_ref: 'k1' = d (unbiased, can be "
            "negative per token); 'k3' = exp(-d) - 1 + d (never negative, lower variance)."
        ),
    )
    kl_penalty: Literal["reward", "loss"] = Field(
        default="reward",
        description=(
            "'reward' = subtract β·KL_t from each token's reward (classic RLHF PPO); 'loss' = "
            "add β·mean KL_t to the loss, differentiated through π (GRPO's way)."
        ),
    )
    kl_control: Literal["fixed", "adaptive"] = Field(
        default="adaptive",
        description="'fixed' keeps init_kl_coef; 'adaptive' steers the KL to kl_target.",
    )
    init_kl_coef: float = Field(default=0.05, description="β of the per-token KL penalty.")
    kl_target: float = Field(
        default=6.0, description="Adaptive control: target KL (nats per response)."
    )
    kl_horizon: int = Field(
        default=10000, description="Adaptive control: rollouts over which β adapts."
    )
    whiten_advantages: bool = Field(
        default=True,
        description=(
            "gae: normalise advantages to zero mean / unit variance over the batch. "
            "grpo/rloo are normalised per group already and ignore it."
        ),
    )
    whiten_rewards: bool = Field(
        default=False, description="Scale rewards to unit variance before GAE."
    )
    save_every: int = Field(
        default=50, description="Checkpoint every N steps (and always at the end); 0 = end."
    )
    resume_from: str | None = Field(
        default=None,
        description="'latest' or a checkpoint directory to continue from; None = fresh.",
    )
    tensorboard: bool = Field(
        default=True,
        description="Write TensorBoard events to OUTPUT_DIR/tensorboard (metrics.jsonl always).",
    )
    mixed_precision: Literal["no", "bf16", "fp16"] = Field(
        default="no",
        description="Autocast precision for the policy, the reference and the update alike.",
    )
    gradient_checkpointing: bool = Field(
        default=False, description="Trade compute for memory on large models."
    )
    rollout_backend: Literal["transformers", "vllm"] = Field(
        default="transformers",
        description=(
            "'transformers' = model.generate on the policy itself; 'vllm' = a colocated vLLM "
            "engine per process whose weights are refreshed after every update."
        ),
    )
    vllm_gpu_memory_utilization: float = Field(
        default=0.3, description="GPU memory fraction the colocated vLLM engine may take."
    )


def validate_ppo(ppo: PPORunConfig) -> None:
    """Arithmetic and combinations that must hold before a GPU is touched."""
    if ppo.steps < 1 or ppo.ppo_epochs < 1:
        raise ConfigError("ppo.steps and ppo.ppo_epochs must be at least 1")
    if ppo.rollout_batch_size % ppo.mini_batch_size:
        raise ConfigError(
            f"ppo.mini_batch_size ({ppo.mini_batch_size}) must divide "
            f"ppo.rollout_batch_size ({ppo.rollout_batch_size})"
        )
    if ppo.mini_batch_size % ppo.gradient_accumulation_steps:
        raise ConfigError(
            f"ppo.gradient_accumulation_steps ({ppo.gradient_accumulation_steps}) must divide "
            f"ppo.mini_batch_size ({ppo.mini_batch_size})"
        )
    if ppo.samples_per_prompt < 1 or ppo.rollout_batch_size % ppo.samples_per_prompt:
        raise ConfigError(
            f"ppo.samples_per_prompt ({ppo.samples_per_prompt}) must be at least 1 and divide "
            f"ppo.rollout_batch_size ({ppo.rollout_batch_size})"
        )
    if ppo.advantage != "gae" and ppo.samples_per_prompt < 2:
        raise ConfigError(
            f"ppo.advantage: {ppo.advantage} compares responses to the same prompt; set "
            "ppo.samples_per_prompt to 2 or more (e.g. 4)"
        )
    if ppo.top_p != 1.0 or ppo.top_k != 0:
        raise ConfigError(
            "ppo.top_p must be 1.0 and ppo.top_k 0: PPO's log-probs are of the full softmax at "
            "ppo.temperature, and truncated sampling would draw from another distribution "
            "(lower ppo.temperature to sharpen sampling instead)"
        )
    if ppo.temperature <= 0:
        raise ConfigError("ppo.temperature must be above 0 (PPO needs sampled rollouts)")
    if ppo.dual_clip is not None:
        if ppo.dual_clip <= 1.0:
            raise ConfigError(f"ppo.dual_clip must be above 1 (e.g. 3), not {ppo.dual_clip}")
        if ppo.clip_mode != "hard":
            raise ConfigError("ppo.dual_clip applies to clip_mode: hard only; remove one of them")
    if ppo.max_log_ratio <= 0:
        raise ConfigError("ppo.max_log_ratio must be above 0 (e.g. 20)")
