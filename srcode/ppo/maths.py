"""PPO's maths on (batch, tokens) tensors: pure functions, tested against hand computations.

- **KL** — per-token estimate of KL(π‖π_ref) from the sampled tokens, ``d = log π − log π_ref``:
  k1 = d (unbiased, noisy, negative on some tokens), k3 = exp(−d) − 1 + d (never negative,
  lower variance; Schulman's "Approximating KL divergence"). In the reward (classic RLHF PPO:
  ``r_t = score_t − β·KL_t``) or in the loss (GRPO: ``+ β·mean_t KL_t``, differentiated
  through π; with k1 that gradient is 0 in expectation on-policy, so use k3 there).
- **GAE** — ``δ_t = r_t + γ·V_{t+1} − V_t``, ``A_t = δ_t + γλ·A_{t+1}`` (0 past the last
  response token), returns ``R_t = A_t + V_t``.
- **Group-relative advantages** (critic-free) — with ``G_t`` the reward-to-go of a response
  and ``G_0`` its total: GRPO ``A_t = (G_t − mean_g G_0) / std_g G_0``; RLOO ``A_t = G_t −
  mean_{j≠i} G_0^j``, over the responses to the same prompt. With every reward on the last
  token (instance level) ``G_t = G_0`` and these are exactly GRPO's and RLOO's advantages;
  with token-level rewards a token is credited only with what follows it, and the group
  baseline (which no token of the response chose) keeps the estimate unbiased.
- **Policy loss**, ``ρ_t = π/π_old`` from a log-ratio clamped to ±``max_log_ratio``:

  - hard clip: ``L = mean_t max(−A_t·ρ_t, −A_t·clip(ρ_t, 1−ε, 1+ε))``. Its gradient is zero
    only where the ratio has already moved past the bound *in the direction the advantage
    pushes* (A > 0, ρ > 1+ε; A < 0, ρ < 1−ε); on the restorative side (A > 0 with ρ < 1−ε,
    A < 0 with ρ > 1+ε) the unclipped term wins and the full gradient pulls the token back.
    Optional dual clip (``dual_clip = c``): for A < 0 the loss is capped at −c·A, so a token
    whose ratio exploded contributes a bounded loss and no gradient;
  - soft clip (``clip_mode: soft``): ``L = mean_t −A_t·(4/τ)·σ(τ(ρ_t − 1))``, ``τ =
    soft_clip_tau`` for ``A_t > 0`` and ``soft_clip_tau_neg`` otherwise. Gradient
    ``−A_t·ρ_t·w(ρ_t)·∇log π``, ``w = 4σ(1−σ)``: PPO's at ρ = 1, halved at ``|ρ−1| =
    1.763/τ``, and — unlike the hard clip — fading smoothly on the side the advantage pushes
    instead of dropping to zero at 1±ε, so a token that already moved keeps a (shrinking)
    share of its signal. The price: on the restorative side it is damped too (the hard clip
    keeps the full gradient there). A sigmoid-gated soft clip in the spirit of SAPO (Qwen,
    2025); benchmarks/soft_clip measures what it changes.
- **Value loss**: ``½·mean_t max((V − R)², (V_old + clip(V − V_old, ±ε_v) − R)²)``.

Means are over response tokens (``mask``), never over padding.
"""

from __future__ import annotations

import torch


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


def kl_estimate(
    logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k1"
) -> torch.Tensor:
    """Per-token KL(π‖π_ref) estimate of the sampled tokens (k1 or k3; module docstring)."""
    d = logprobs - ref_logprobs
    if estimator == "k1":
        return d
    if estimator == "k3":
        d = d.clamp(-20.0, 20.0)  # exp(−d) of a collapsed reference token stays finite
        return torch.expm1(-d) + d
    raise ValueError(f"kl estimator must be 'k1' or 'k3', not {estimator!r}")


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


def reward_to_go(rewards: torch.Tensor, mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """``G_t = Σ_{t' ≥ t} γ^(t'−t)·r_t'`` per row, 0 at padding (GAE with V = 0, λ = 1)."""
    returns, _ = compute_gae(rewards, torch.zeros_like(rewards), mask, gamma, 1.0)
    return returns


def group_advantages(
    rewards: torch.Tensor, mask: torch.Tensor, group_size: int, mode: str, gamma: float = 1.0
) -> torch.Tensor:
    """Critic-free advantages over consecutive groups of ``group_size`` rows (one prompt each).

    ``mode`` "grpo": ``(G_t − mean G_0) / (std G_0 + 1e-4)`` (unbiased std, as GRPO's
    reference code; a group whose responses all scored alike gets advantage ~0, not a blow-up);
    "rloo": ``G_t − mean of the other rows' G_0``. See the module docstring.
    """
    rows = rewards.shape[0]
    if group_size < 2 or rows % group_size:
        raise ValueError(f"{rows} rows do not split into groups of {group_size} (need >= 2)")
    to_go = reward_to_go(rewards, mask, gamma)
    totals = to_go[:, 0].view(-1, group_size)
    if mode == "grpo":
        baseline = totals.mean(dim=1, keepdim=True)
        scale = totals.std(dim=1, keepdim=True) + 1e-4
    elif mode == "rloo":
        baseline = (totals.sum(dim=1, keepdim=True) - totals) / (group_size - 1)
        scale = torch.ones_like(totals)
    else:
        raise ValueError(f"group advantage mode must be 'grpo' or 'rloo', not {mode!r}")
    baseline = baseline.expand(-1, group_size).reshape(-1, 1)
    scale = scale.expand(-1, group_size).reshape(-1, 1)
    return (to_go - baseline) / scale * mask


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
    dual_clip: float | None = None,
    max_log_ratio: float = 20.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's clipped surrogate (``hard``, optionally dual-clipped) or the soft clip (``soft``).

    Formulas in the module docstring. ``clipfrac`` counts tokens whose ratio left [1−ε, 1+ε]
    (hard: where the clipped branch won), so the two modes can be compared on one chart.
    """
    log_ratio = (logprobs - old_logprobs).clamp(-max_log_ratio, max_log_ratio)
    ratio = torch.exp(log_ratio)
    if clip_mode == "hard":
        unclipped = -advantages * ratio
        clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
        per_token = torch.maximum(unclipped, clipped)
        clipfrac = masked_mean((clipped > unclipped).float(), mask)
        if dual_clip is not None:
            capped = torch.minimum(per_token, -dual_clip * advantages)
            per_token = torch.where(advantages < 0, capped, per_token)
    elif clip_mode == "soft":
        if dual_clip is not None:
            raise ValueError("dual_clip applies to clip_mode 'hard' only")
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
        "policy/ratio_max": (ratio * mask).max().detach(),
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
