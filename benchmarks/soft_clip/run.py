"""What the soft clip changes against PPO's hard clip, on sparse token-level rewards.

The paper behind SRCode worries that PPO's clipping mutes token-level signals: a few strongly
rewarded or penalised tokens move past 1±ε in the first epoch and get no gradient for the rest
of the update. This script measures it with srcode's own loss (``srcode.ppo.maths.policy_loss``)
on a policy small enough to compute exactly: a table of logits, one softmax over V tokens per
position (no context), so every probability and KL below is exact, not sampled.

- **Reward** (sparse, token level): at ``secure`` positions the one "secure" token earns +1 and
  starts rare (p ≈ 1/V); at ``vulnerable`` positions one "vulnerable" token costs −1 and starts
  common (p ≈ 0.3). Every other token scores 0.
- **Advantages**: each token's own reward minus its position's batch mean, whitened over the
  batch (token-level credit with a per-position baseline; no critic to confound the clip).
- **Update**: PPO as srcode runs it — ``epochs`` passes of shuffled mini-batches, Adam.
- **Arms**: hard clip (ε = 0.2), soft clip (τ = 10, the default), soft clip (τ = 5), and no
  clip at all (the unconstrained surrogate: the "naive" bound on speed and on instability).

Reported per arm (mean ± sd over seeds): P(secure token) and P(vulnerable token) after
``iterations`` updates, expected reward per sequence, mean KL(π_new‖π_old) per update (the
trust region actually kept), and, over the rewarded tokens in the last epoch, the mean share of
the unclipped gradient they still get (signal kept: 1 = all, hard clip 0 past the bound) and the
fraction getting under 10 % of it (muted). Ratios soft/hard are printed at the end.

    python benchmarks/soft_clip/run.py            # ~1 min on 2 CPU cores
    python benchmarks/soft_clip/run.py --seeds 10 --iterations 60
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from srcode.ppo.maths import policy_loss

ARMS: dict[str, dict[str, Any]] = {
    "hard": {"clip_mode": "hard", "cliprange": 0.2},
    "soft_tau10": {"clip_mode": "soft", "cliprange": 0.2, "tau_pos": 10.0},
    "soft_tau5": {"clip_mode": "soft", "cliprange": 0.2, "tau_pos": 5.0},
    "no_clip": {"clip_mode": "hard", "cliprange": 1e9},
}


def make_task(positions: int, vocab: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Initial logits and the per-(position, token) reward table."""
    logits = torch.randn(positions, vocab, generator=generator) * 0.1
    reward = torch.zeros(positions, vocab)
    order = torch.randperm(positions, generator=generator)
    secure, vulnerable = order[:4], order[4:8]
    for p in secure.tolist():
        token = int(torch.randint(vocab, (1,), generator=generator))
        reward[p, token] = 1.0
        logits[p, token] = logits[p].mean()  # rare: about 1/vocab
    for p in vulnerable.tolist():
        token = int(torch.randint(vocab, (1,), generator=generator))
        reward[p, token] = -1.0
        logits[p, token] = logits[p].mean() + torch.log(torch.tensor(0.3 * (vocab - 1) / 0.7))
    return {"logits": logits, "reward": reward, "secure": secure, "vulnerable": vulnerable}


def run_arm(
    arm: dict[str, Any], task: dict[str, torch.Tensor], args: argparse.Namespace, seed: int
) -> dict[str, float]:
    generator = torch.Generator().manual_seed(seed)
    theta = task["logits"].clone().requires_grad_(True)
    optimizer = torch.optim.Adam([theta], lr=args.lr)
    reward_table = task["reward"]
    positions = theta.shape[0]
    kls, kept, muted, curve = [], [], [], []
    for _ in range(args.iterations):
        with torch.no_grad():
            old_logp = torch.log_softmax(theta, -1)
            tokens = torch.multinomial(
                old_logp.exp(), args.batch, replacement=True, generator=generator
            ).T  # (batch, positions)
            old = old_logp.gather(-1, tokens.T).T
            rewards = reward_table.gather(-1, tokens.T).T
            advantages = rewards - rewards.mean(0, keepdim=True)
            mask = torch.ones_like(advantages)
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        rewarded = (rewards != 0) & (advantages.abs() > 1e-6)  # tokens carrying a signal
        for epoch in range(args.epochs):
            order = torch.randperm(args.batch, generator=generator)
            weight = torch.zeros(args.batch, positions)
            for mini in order.split(args.batch // args.minibatches):
                logp = torch.log_softmax(theta, -1).gather(-1, tokens[mini].T).T
                loss, _ = policy_loss(logp, old[mini], advantages[mini], mask[mini], **arm)
                optimizer.zero_grad()
                # each token's gradient w.r.t. its own log-prob, as a share of the unclipped
                # surrogate's |A·ρ|/N: 1 = full signal, 0 = muted (hard clip past 1±ε)
                token_grad = torch.autograd.grad(loss, logp, retain_graph=True)[0]
                with torch.no_grad():
                    full = (advantages[mini] * (logp - old[mini]).exp()).abs() / mask[mini].sum()
                    weight[mini] = token_grad.abs() / full.clamp(min=1e-12)
                loss.backward()
                optimizer.step()
            if epoch == args.epochs - 1 and rewarded.any():
                kept.append(float(weight[rewarded].mean()))
                muted.append(float((weight[rewarded] < 0.1).float().mean()))
        with torch.no_grad():
            new_logp = torch.log_softmax(theta, -1)
            kl = (new_logp.exp() * (new_logp - old_logp)).sum(-1).mean()
            kls.append(float(kl))
            positive = reward_table.clamp(min=0)
            curve.append(float((new_logp.exp() * positive).sum(-1)[task["secure"]].mean()))
    with torch.no_grad():
        probs = torch.softmax(theta, -1)
        positive = reward_table.clamp(min=0)
        negative = (-reward_table).clamp(min=0)
        p_secure = float((probs * positive).sum(-1)[task["secure"]].mean())
        p_vulnerable = float((probs * negative).sum(-1)[task["vulnerable"]].mean())
        expected = float((probs * reward_table).sum())
    reached = [i + 1 for i, p in enumerate(curve) if p >= 0.5]
    return {
        "updates_to_half": float(reached[0]) if reached else float("inf"),
        "p_secure_early": curve[max(0, len(curve) // 4 - 1)],
        "p_secure": p_secure,
        "p_vulnerable": p_vulnerable,
        "expected_reward": expected,
        "kl_per_update": statistics.fmean(kls),
        "kl_per_update_max": max(kls),
        "signal_kept": statistics.fmean(kept) if kept else float("nan"),
        "muted_frac": statistics.fmean(muted) if muted else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--positions", type=int, default=32)
    parser.add_argument("--vocab", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--minibatches", type=int, default=4)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)

    started = time.perf_counter()
    results: dict[str, list[dict[str, float]]] = {name: [] for name in ARMS}
    for seed in range(args.seeds):
        task = make_task(args.positions, args.vocab, torch.Generator().manual_seed(1000 + seed))
        for name, arm in ARMS.items():
            results[name].append(run_arm(arm, task, args, seed))
    keys = list(next(iter(results.values()))[0])
    summary = {
        name: {
            key: {
                "mean": statistics.fmean(r[key] for r in runs),
                "sd": statistics.stdev(r[key] for r in runs) if len(runs) > 1 else 0.0,
            }
            for key in keys
        }
        for name, runs in results.items()
    }
    start = {
        "p_secure": 1.0 / args.vocab,
        "p_vulnerable": 0.3,
    }
    print(
        f"{args.seeds} seeds x {args.iterations} updates, {args.positions} positions, "
        f"V={args.vocab}, batch {args.batch}, {args.epochs} epochs x {args.minibatches} "
        f"mini-batches, Adam lr {args.lr}; start: P(secure)≈{start['p_secure']:.3f}, "
        f"P(vulnerable)≈{start['p_vulnerable']:.2f}"
    )
    header = f"{'arm':<11}" + "".join(f"{k:>20}" for k in keys)
    print(header)
    for name, stats in summary.items():
        row = "".join(f"{stats[k]['mean']:>12.4f} ± {stats[k]['sd']:<5.3f}" for k in keys)
        print(f"{name:<11}{row}")
    ratios = {
        key: summary["soft_tau10"][key]["mean"] / summary["hard"][key]["mean"]
        for key in ("updates_to_half", "p_secure_early", "p_secure", "kl_per_update")
        if summary["hard"][key]["mean"]
    }
    print("soft(τ=10) / hard: " + ", ".join(f"{k} ×{v:.2f}" for k, v in ratios.items()))
    print(f"({time.perf_counter() - started:.0f} s)")
    args.out.write_text(
        json.dumps(
            {
                "args": {k: str(v) for k, v in vars(args).items()},
                "summary": summary,
                "soft_over_hard": ratios,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
