"""SRCode's PPO: the math against hand-computed numbers, then real tiny runs through the CLI.

The end-to-end runs use ``srcode/configs/tiny_cpu.yaml`` (the tiny random Llama, SafeCoder
Python prompts, the real Bandit scanner for the token-level reward) and assert what TRL's
trainer tests assert: parameters changed, metrics were logged; plus checkpoint/resume.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from srcode.cli import app
from srcode.config import load_config
from srcode.ppo import (
    AdaptiveKLController,
    FixedKLController,
    PPOTrainer,
    Rollout,
    RolloutBatch,
    compute_gae,
    group_advantages,
    kl_estimate,
    masked_mean,
    masked_whiten,
    policy_loss,
    reward_to_go,
    run_ppo,
    value_loss,
)
from srcode.rollout import TransformersRollouts

TINY_CPU = Path(__file__).resolve().parents[2] / "srcode" / "configs" / "tiny_cpu.yaml"

# ------------------------------------------------------------------------------ GAE


def test_gae_matches_hand_computation_with_padding() -> None:
    # γ = 1, λ = 0.5; the 4th position is padding (its reward and value must be ignored).
    rewards = torch.tensor([[1.0, 0.0, 2.0, 7.0]])
    values = torch.tensor([[0.5, 0.2, 0.1, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    advantages, returns = compute_gae(rewards, values, mask, gamma=1.0, lam=0.5)
    # δ2 = 2 + 0 − 0.1 = 1.9              A2 = 1.9
    # δ1 = 0 + 0.1 − 0.2 = −0.1           A1 = −0.1 + 0.5·1.9 = 0.85
    # δ0 = 1 + 0.2 − 0.5 = 0.7            A0 = 0.7 + 0.5·0.85 = 1.125
    torch.testing.assert_close(advantages, torch.tensor([[1.125, 0.85, 1.9, 0.0]]))
    torch.testing.assert_close(returns, torch.tensor([[1.625, 1.05, 2.0, 0.0]]))


def test_gae_with_lambda_one_is_discounted_return_minus_value() -> None:
    rewards = torch.tensor([[0.0, 1.0, 0.0, 0.0]])
    values = torch.ones(1, 4)
    mask = torch.ones(1, 4)
    advantages, returns = compute_gae(rewards, values, mask, gamma=0.5, lam=1.0)
    # G = [0.5, 1, 0, 0] (γ = 0.5), A = G − V
    torch.testing.assert_close(advantages, torch.tensor([[-0.5, 0.0, -1.0, -1.0]]))
    torch.testing.assert_close(returns, torch.tensor([[0.5, 1.0, 0.0, 0.0]]))


def test_rows_of_different_lengths_are_independent() -> None:
    rewards = torch.tensor([[1.0, 0.0, 2.0], [3.0, 5.0, 5.0]])
    values = torch.tensor([[0.5, 0.2, 0.1], [1.0, 4.0, 4.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    advantages, _ = compute_gae(rewards, values, mask, gamma=1.0, lam=0.5)
    assert advantages[1].tolist() == [2.0, 0.0, 0.0]  # δ0 = 3 + 0 − 1: terminal after 1 token
    torch.testing.assert_close(advantages[0], torch.tensor([1.125, 0.85, 1.9]))


def test_masked_whiten() -> None:
    values = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    whitened = masked_whiten(values, mask)
    # mean 2, unbiased var 1 → (x − 2) / 1
    torch.testing.assert_close(whitened[0, :3], torch.tensor([-1.0, 0.0, 1.0]), atol=1e-4, rtol=0)
    assert masked_mean(values, mask).item() == pytest.approx(2.0)


# ------------------------------------------------------------------------------ losses

RATIOS = [1.5, 0.5, 1.1, 0.7, 3.0]  # the last token is padding
ADVANTAGES = [1.0, 1.0, -1.0, -1.0, 50.0]
MASK = [1.0, 1.0, 1.0, 1.0, 0.0]


def _loss_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    old = torch.tensor([[-1.0, -2.0, -0.5, -3.0, -1.0]])
    logprobs = (old + torch.log(torch.tensor([RATIOS]))).requires_grad_(True)
    return logprobs, old, torch.tensor([ADVANTAGES]), torch.tensor([MASK])


def test_hard_clip_loss_and_gradients_by_hand() -> None:
    logprobs, old, advantages, mask = _loss_inputs()
    loss, stats = policy_loss(logprobs, old, advantages, mask, cliprange=0.2, clip_mode="hard")
    # per token max(−A·r, −A·clip(r, 0.8, 1.2)):
    #   r=1.5, A=+1: max(−1.5, −1.2) = −1.2   (clipped)
    #   r=0.5, A=+1: max(−0.5, −0.8) = −0.5
    #   r=1.1, A=−1: max( 1.1,  1.1) =  1.1
    #   r=0.7, A=−1: max( 0.7,  0.8) =  0.8   (clipped)
    assert loss.item() == pytest.approx((-1.2 - 0.5 + 1.1 + 0.8) / 4)
    assert stats["policy/clipfrac"].item() == pytest.approx(0.5)
    loss.backward()
    assert logprobs.grad is not None
    # d/dlogπ of −A·r is −A·r on unclipped tokens, 0 on clipped ones; mean over 4 tokens
    expected = torch.tensor([[0.0, -0.5 / 4, 1.1 / 4, 0.0, 0.0]])
    torch.testing.assert_close(logprobs.grad, expected)


def test_soft_clip_loss_and_gradients_by_hand() -> None:
    logprobs, old, advantages, mask = _loss_inputs()
    loss, stats = policy_loss(
        logprobs, old, advantages, mask, cliprange=0.2, clip_mode="soft", tau_pos=10.0
    )
    # per token −A·(4/τ)·σ(τ(r−1)), τ = 10:
    #   σ(5) = 0.9933071, σ(−5) = 0.0066929, σ(1) = 0.7310586, σ(−3) = 0.0474259
    per_token = [-0.4 * 0.9933071, -0.4 * 0.0066929, 0.4 * 0.7310586, 0.4 * 0.0474259]
    assert loss.item() == pytest.approx(sum(per_token) / 4, abs=1e-6)
    # |r − 1| > 0.2 for r = 1.5, 0.5, 0.7
    assert stats["policy/clipfrac"].item() == pytest.approx(0.75)
    loss.backward()
    assert logprobs.grad is not None

    # gradient −A·r·4σ(1−σ)/N: never exactly zero, unlike the hard clip's clipped tokens
    def weight(r: float) -> float:
        s = 1.0 / (1.0 + math.exp(-10.0 * (r - 1.0)))
        return 4.0 * s * (1.0 - s)

    expected = [-a * r * weight(r) / 4 for a, r in zip(ADVANTAGES[:4], RATIOS[:4], strict=True)]
    torch.testing.assert_close(logprobs.grad[0, :4], torch.tensor(expected), atol=1e-6, rtol=1e-5)
    assert logprobs.grad[0, 4].item() == 0.0  # padding
    assert logprobs.grad[0, 0].item() != 0.0  # r = 1.5 still learns (hard clip: 0)


def test_soft_clip_equals_ppo_gradient_at_ratio_one() -> None:
    logprobs = torch.zeros(1, 3, requires_grad=True)
    advantages = torch.tensor([[2.0, -1.0, 0.5]])
    mask = torch.ones(1, 3)
    loss, _ = policy_loss(
        logprobs, torch.zeros(1, 3), advantages, mask, cliprange=0.2, clip_mode="soft"
    )
    loss.backward()
    assert logprobs.grad is not None
    torch.testing.assert_close(logprobs.grad, -advantages / 3)


def test_soft_clip_uses_tau_neg_for_negative_advantages() -> None:
    logprobs = torch.log(torch.tensor([[1.1, 1.1]]))
    advantages = torch.tensor([[1.0, -1.0]])
    loss, _ = policy_loss(
        logprobs,
        torch.zeros(1, 2),
        advantages,
        torch.ones(1, 2),
        cliprange=0.2,
        clip_mode="soft",
        tau_pos=10.0,
        tau_neg=20.0,
    )
    sig = lambda x: 1.0 / (1.0 + math.exp(-x))  # noqa: E731
    expected = (-(4 / 10) * sig(10 * 0.1) + (4 / 20) * sig(20 * 0.1)) / 2
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_hard_clip_keeps_the_restorative_side() -> None:
    """Past the bound on the side the advantage does *not* push, the full gradient remains."""
    old = torch.zeros(1, 2)
    logprobs = torch.log(torch.tensor([[0.5, 1.5]])).requires_grad_(True)
    advantages = torch.tensor([[1.0, -1.0]])  # A > 0 with r < 1−ε; A < 0 with r > 1+ε
    loss, stats = policy_loss(logprobs, old, advantages, torch.ones(1, 2), cliprange=0.2)
    loss.backward()
    assert logprobs.grad is not None
    torch.testing.assert_close(logprobs.grad, torch.tensor([[-0.5 / 2, 1.5 / 2]]))
    assert stats["policy/clipfrac"].item() == 0.0


def test_dual_clip_caps_negative_advantages_by_hand() -> None:
    old = torch.zeros(1, 3)
    logprobs = torch.log(torch.tensor([[5.0, 1.1, 5.0]])).requires_grad_(True)
    advantages = torch.tensor([[-1.0, -1.0, 1.0]])
    loss, _ = policy_loss(logprobs, old, advantages, torch.ones(1, 3), cliprange=0.2, dual_clip=3.0)
    # r=5, A=−1: hard clip gives max(5, 1.2) = 5, dual clip caps it at −c·A = 3 (no gradient)
    # r=1.1, A=−1: 1.1 (below the cap);  r=5, A=+1: max(−5, −1.2) = −1.2 (A > 0 untouched)
    assert loss.item() == pytest.approx((3.0 + 1.1 - 1.2) / 3)
    loss.backward()
    assert logprobs.grad is not None
    torch.testing.assert_close(logprobs.grad, torch.tensor([[0.0, 1.1 / 3, 0.0]]))


def test_log_ratio_clamp_keeps_the_loss_finite() -> None:
    old = torch.tensor([[-200.0, -1.0]])
    logprobs = torch.tensor([[-1.0, -1.0]], requires_grad=True)  # log-ratio 199: exp overflows
    advantages = torch.tensor([[-1.0, 1.0]])
    loss, stats = policy_loss(
        logprobs, old, advantages, torch.ones(1, 2), cliprange=0.2, max_log_ratio=20.0
    )
    assert math.isfinite(loss.item())
    assert stats["policy/ratio_max"].item() == pytest.approx(math.exp(20.0), rel=1e-5)
    loss.backward()
    assert logprobs.grad is not None and torch.isfinite(logprobs.grad).all()
    assert logprobs.grad[0, 0].item() == 0.0  # clamped: that token gets no gradient


def test_kl_estimators_by_hand() -> None:
    logprobs = torch.tensor([[-1.0, -2.0, -0.5]])
    ref = torch.tensor([[-1.5, -1.0, -0.5]])
    d = [0.5, -1.0, 0.0]
    torch.testing.assert_close(kl_estimate(logprobs, ref, "k1"), torch.tensor([d]))
    k3 = [math.exp(-x) - 1 + x for x in d]  # [0.1065, 0.7183, 0]: never negative
    torch.testing.assert_close(kl_estimate(logprobs, ref, "k3"), torch.tensor([k3]))
    with pytest.raises(ValueError, match="k1"):
        kl_estimate(logprobs, ref, "k2")


def test_reward_to_go_and_group_advantages_by_hand() -> None:
    # two prompts × two responses; row 1 has one padding position
    rewards = torch.tensor([[0.0, 1.0, 2.0], [1.0, 0.0, 9.0], [0.0, 0.0, 4.0], [0.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1, 1], [1, 1, 0], [1, 1, 1], [1, 1, 1]])
    to_go = reward_to_go(rewards, mask, gamma=1.0)
    torch.testing.assert_close(to_go, torch.tensor([[3.0, 3, 2], [1, 0, 0], [4, 4, 4], [0, 0, 0]]))
    # RLOO: baseline = the other response's total. Group 1: totals 3, 1; group 2: 4, 0
    rloo = group_advantages(rewards, mask, 2, "rloo")
    expected = torch.tensor([[2.0, 2, 1], [-2, -3, 0], [4, 4, 4], [-4, -4, -4]])
    torch.testing.assert_close(rloo, expected)
    # GRPO: (G_t − mean) / (unbiased std + 1e-4). Group 1: mean 2, std √2; group 2: 2, 2√2
    grpo = group_advantages(rewards, mask, 2, "grpo")
    s1, s2 = math.sqrt(2) + 1e-4, 2 * math.sqrt(2) + 1e-4
    expected = torch.tensor(
        [
            [1 / s1, 1 / s1, 0.0],
            [-1 / s1, -2 / s1, 0.0],
            [2 / s2, 2 / s2, 2 / s2],
            [-2 / s2, -2 / s2, -2 / s2],
        ]
    )
    torch.testing.assert_close(grpo, expected)


def test_group_advantages_of_instance_rewards_are_grpo_and_rloo() -> None:
    """All reward on the last token: every token gets its response's GRPO/RLOO advantage."""
    scores = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0])  # 2 prompts × 3 responses
    rewards = torch.zeros(6, 4)
    rewards[:, -1] = scores
    mask = torch.ones(6, 4)
    grpo = group_advantages(rewards, mask, 3, "grpo")
    groups = scores.view(2, 3)
    standard = (groups - groups.mean(1, keepdim=True)) / (groups.std(1, keepdim=True) + 1e-4)
    torch.testing.assert_close(grpo, standard.reshape(6, 1).expand(6, 4))
    assert grpo[3:].abs().max().item() == 0.0  # a group that scored alike teaches nothing
    rloo = group_advantages(rewards, mask, 3, "rloo")
    torch.testing.assert_close(rloo[0], torch.full((4,), 1.0))  # 1 − mean(0, 0)
    torch.testing.assert_close(rloo[1], torch.full((4,), -0.5))  # 0 − mean(1, 0)
    with pytest.raises(ValueError, match="groups of 4"):
        group_advantages(rewards, mask, 4, "grpo")


def test_clipped_value_loss_by_hand() -> None:
    values = torch.tensor([[1.0, 0.0, 5.0]])
    old = torch.tensor([[0.5, 0.5, 0.0]])
    returns = torch.tensor([[2.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    loss, stats = value_loss(values, old, returns, mask, cliprange_value=0.2)
    # token 0: clipped V = 0.7 → max((1−2)², (0.7−2)²) = 1.69
    # token 1: clipped V = 0.3 → max((0−0)², (0.3−0)²) = 0.09
    assert loss.item() == pytest.approx(0.5 * (1.69 + 0.09) / 2)
    assert stats["value/clipfrac"].item() == pytest.approx(1.0)


def test_adaptive_kl_controller_by_hand() -> None:
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=10_000)
    ctl.update(current_kl=9.0, n_steps=100)  # error 0.5 clipped to 0.2
    assert ctl.value == pytest.approx(0.1 * (1 + 0.2 * 100 / 10_000))
    ctl.update(current_kl=4.5, n_steps=1_000)  # error −0.25 clipped to −0.2
    assert ctl.value == pytest.approx(0.1 * 1.002 * 0.98)
    ctl.update(current_kl=6.6, n_steps=500)  # error 0.1, within the clip
    assert ctl.value == pytest.approx(0.1 * 1.002 * 0.98 * 1.005)
    restored = AdaptiveKLController(0.5, target=6.0, horizon=10_000)
    restored.load_state_dict(ctl.state_dict())
    assert restored.value == ctl.value

    fixed = FixedKLController(0.05)
    fixed.update(current_kl=100.0, n_steps=64)
    assert fixed.value == 0.05


def test_rollout_batch_layout() -> None:
    batch = RolloutBatch.pack([[5, 6, 7], [8]], [[1, 2], [3, 4, 9]], pad_id=0, device="cpu")
    assert batch.prompt_width == 3
    assert batch.input_ids.tolist() == [[5, 6, 7, 1, 2, 0], [0, 0, 8, 3, 4, 9]]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1, 1, 0], [0, 0, 1, 1, 1, 1]]
    assert batch.mask.tolist() == [[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]]
    assert batch.rows(torch.tensor([1])).responses.tolist() == [[3, 4, 9]]


# ------------------------------------------------------------------------------ real runs


@pytest.fixture(scope="module")
def isolated_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Module-scoped runs happen before the per-test autouse fixture: isolate them too."""
    home = tmp_path_factory.mktemp("srcode-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VUL2SAFE_HOME", str(home))
        mp.setenv("HF_HOME", str(home / "hf"))
        for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
            mp.setenv(name, "1")
        yield


def run_cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    if result.exit_code != 0:
        raise AssertionError(f"srcode {' '.join(args)} failed:\n{result.output}") from (
            result.exception
        )
    return result.output


def read_metrics(path: Path) -> list[dict[str, float]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory: pytest.TempPathFactory, isolated_env: None) -> Path:
    """`srcode ppo tiny_cpu.yaml`: 3 steps, checkpoints at 2 and 3."""
    out = tmp_path_factory.mktemp("ppo")
    run_cli("ppo", str(TINY_CPU), "--output", str(out))
    return out


def test_ppo_cli_changes_parameters(ppo_run: Path) -> None:
    before = load_file(ppo_run / "tiny-model" / "model.safetensors")
    after = load_file(ppo_run / "model.safetensors")
    assert before.keys() == after.keys()
    changed = [name for name in before if not torch.equal(before[name], after[name])]
    assert len(changed) == len(before), f"unchanged: {set(before) - set(changed)}"
    head = load_file(ppo_run / "value_head.safetensors")
    assert head["weight"].shape == (1, 64)


def test_ppo_cli_logs_metrics(ppo_run: Path) -> None:
    metrics = read_metrics(ppo_run / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [1, 2, 3]
    for m in metrics:
        for key in ("loss/policy", "loss/value", "loss/total", "kl/mean", "kl/coef"):
            assert math.isfinite(m[key]), key
        for key in ("reward/score_mean", "reward/total_mean", "scan/invalid", "policy/clipfrac"):
            assert key in m
        assert m["response/length_mean"] > 0
    # the adaptive controller moved β by the hand formula after each step
    for prev, cur in itertools.pairwise(metrics):
        error = min(max(prev["kl/mean"] / 6.0 - 1.0, -0.2), 0.2)
        assert cur["kl/coef"] == pytest.approx(prev["kl/coef"] * (1 + error * 4 / 10_000))
    events = list((ppo_run / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    assert (ppo_run / "README.md").read_text().count("SRCode PPO model") == 1


def test_ppo_checkpoints(ppo_run: Path) -> None:
    steps = sorted(p.name for p in (ppo_run / "checkpoints").iterdir())
    assert steps == ["step-000002", "step-000003"]
    state = json.loads((ppo_run / "checkpoints" / "step-000002" / "trainer_state.json").read_text())
    assert state["step"] == 2


def test_resume_continues_at_the_right_step(ppo_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "ppo"
    run_cli("ppo", str(TINY_CPU), "-o", str(out), "--set", "ppo.steps=2")
    assert [m["step"] for m in read_metrics(out / "metrics.jsonl")] == [1, 2]
    output = run_cli("ppo", str(TINY_CPU), "-o", str(out), "--resume", "latest")
    assert "at step 2" in output and "step 3:" in output and "step 1:" not in output
    resumed = read_metrics(out / "metrics.jsonl")
    assert [m["step"] for m in resumed] == [1, 2, 3]
    # same prompts, samples, optimizer and RNG state: identical to the uninterrupted run
    straight = read_metrics(ppo_run / "metrics.jsonl")
    for key in ("loss/policy", "loss/value", "kl/mean", "kl/coef", "reward/score_mean"):
        assert resumed[2][key] == pytest.approx(straight[2][key], rel=1e-5, abs=1e-7), key
    a, b = load_file(out / "model.safetensors"), load_file(ppo_run / "model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_ppo_lora_soft_clip_fixed_kl(tmp_path: Path, isolated_env: None) -> None:
    out = tmp_path / "lora"
    overrides = [
        "model.lora=true",
        "model.lora_r=4",
        "ppo.clip_mode=soft",
        "ppo.kl_control=fixed",
        "ppo.steps=2",
        "ppo.save_every=0",
    ]
    args = [arg for o in overrides for arg in ("--set", o)]
    run_cli("ppo", str(TINY_CPU), "-o", str(out), *args)
    metrics = read_metrics(out / "metrics.jsonl")
    assert [m["kl/coef"] for m in metrics] == [0.05, 0.05]
    # the reference is the adapter-free base: KL is 0 before the first update, not after
    assert metrics[0]["kl/mean"] == pytest.approx(0.0, abs=1e-5)
    assert metrics[1]["kl/mean"] != pytest.approx(0.0, abs=1e-7)
    assert (out / "adapter" / "adapter_config.json").exists()
    before = load_file(out / "tiny-model" / "model.safetensors")
    merged = load_file(out / "model.safetensors")
    assert any(not torch.equal(before[k], merged[k]) for k in before)
    assert os.listdir(out / "checkpoints") == ["step-000002"]


def test_ppo_first_step_kl_is_exactly_zero(ppo_run: Path) -> None:
    """Eval mode and one autocast for policy and reference: equal weights, equal log-probs."""
    assert read_metrics(ppo_run / "metrics.jsonl")[0]["kl/mean"] == 0.0


def even_token_reward(rollouts: list[Rollout]) -> list[torch.Tensor]:
    """+1 on every even token id: varies within a group, so group baselines have signal."""
    return [torch.tensor([float(t % 2 == 0) for t in r.response_ids]) for r in rollouts]


def test_critic_free_grpo_with_k3_kl_in_the_loss(tmp_path: Path, isolated_env: None) -> None:
    overrides = [
        f"ppo.output_dir={tmp_path / 'grpo'}",
        "ppo.advantage=grpo",
        "ppo.samples_per_prompt=2",
        "ppo.kl_estimator=k3",
        "ppo.kl_penalty=loss",
        "ppo.kl_control=fixed",
        "ppo.steps=2",
        "ppo.save_every=0",
        "ppo.tensorboard=false",
    ]
    out = run_ppo(load_config(TINY_CPU, overrides), reward_fn=even_token_reward)
    metrics = read_metrics(out / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [1, 2]
    for m in metrics:
        assert "loss/value" not in m and "returns/mean" not in m  # no critic
        assert math.isfinite(m["loss/kl"]) and m["loss/kl"] >= 0.0  # k3 is never negative
        assert math.isfinite(m["loss/policy"]) and m["advantages/abs_mean"] > 0.0
    assert metrics[0]["kl/mean"] == 0.0 and metrics[1]["kl/mean"] > 0.0
    before = load_file(out / "tiny-model" / "model.safetensors")
    after = load_file(out / "model.safetensors")
    assert all(not torch.equal(before[k], after[k]) for k in before)


def test_prompts_repeat_in_groups(tmp_path: Path, isolated_env: None) -> None:
    """samples_per_prompt consecutive rollouts share a prompt; each step moves on."""
    overrides = [
        f"ppo.output_dir={tmp_path / 'rloo'}",
        "ppo.advantage=rloo",
        "ppo.samples_per_prompt=2",
        "ppo.steps=1",
    ]
    seen: list[list[int]] = []

    def reward(rollouts: list[Rollout]) -> list[torch.Tensor]:
        seen.append([r.metadata["row_index"] for r in rollouts])
        assert [r.metadata["group"] for r in rollouts] == [0, 0, 1, 1]
        return even_token_reward(rollouts)

    trainer = PPOTrainer(load_config(TINY_CPU, overrides), reward_fn=reward)
    trainer.step_once()
    trainer.step_once()
    first, second = seen
    assert first[0] == first[1] and first[2] == first[3] and first[0] != first[2]
    assert not set(first) & set(second)  # 2 new prompts per step, not the same ones again


def test_lora_bf16_reference_shares_the_policy_autocast(tmp_path: Path, isolated_env: None) -> None:
    """bf16 autocast on the policy but not on the reference used to give KL ≠ 0 at step 1."""
    out = tmp_path / "bf16"
    overrides = [
        "model.lora=true",
        "model.lora_r=4",
        "ppo.mixed_precision=bf16",
        "ppo.steps=1",
        "ppo.ppo_epochs=1",
        "ppo.save_every=0",
        "ppo.tensorboard=false",
    ]
    run_cli("ppo", str(TINY_CPU), "-o", str(out), *[a for o in overrides for a in ("--set", o)])
    assert read_metrics(out / "metrics.jsonl")[0]["kl/mean"] == 0.0


class ScoreRecordingRollouts(TransformersRollouts):
    """transformers rollouts that also report the sampled tokens' log-probs, as vLLM does."""

    def generate(self, policy: torch.nn.Module, prompts: list[list[int]]) -> list[list[int]]:
        responses, scores = self.sample(policy, prompts, with_scores=True)
        assert scores is not None
        steps = torch.log_softmax(torch.stack(scores, dim=1).float(), dim=-1)
        self.last_logprobs = [
            [float(steps[i, t, token]) for t, token in enumerate(row)]
            for i, row in enumerate(responses)
        ]
        return responses


def test_engine_logprob_mismatch_is_logged(tmp_path: Path, isolated_env: None) -> None:
    """An engine with ``last_logprobs`` gets its gap to the trainer's log-probs logged."""
    config = load_config(TINY_CPU, [f"ppo.output_dir={tmp_path / 'gap'}", "ppo.steps=1"])
    trainer = PPOTrainer(config, reward_fn=even_token_reward)
    trainer.rollouts = ScoreRecordingRollouts(config.ppo, trainer.pad_id, trainer.eos_ids)
    metrics = trainer.step_once()
    # the same distribution, computed incrementally (KV cache) vs in one forward pass
    assert 0.0 <= metrics["rollout/logprob_abs_diff_mean"] < 1e-4
    assert metrics["rollout/logprob_abs_diff_max"] < 1e-3
    plain = PPOTrainer(config, reward_fn=even_token_reward).step_once()
    assert "rollout/logprob_abs_diff_mean" not in plain  # transformers: nothing to compare


def test_dropout_is_off_for_scoring(tmp_path: Path, isolated_env: None) -> None:
    """A checkpoint with attention dropout: the first step's KL is still exactly 0.

    Llama keeps ``attention_dropout`` as a module attribute and the old trainer scored in
    train mode, so the policy's log-probs were those of a random dropout mask.
    """
    from vul2safe.testing.tiny_model import build_tiny_model

    model_dir = build_tiny_model(tmp_path / "dropout-model", seed=0)
    config_file = model_dir / "config.json"
    settings = json.loads(config_file.read_text())
    settings["attention_dropout"] = 0.5
    config_file.write_text(json.dumps(settings))
    overrides = [f"model.path={model_dir}", f"ppo.output_dir={tmp_path / 'out'}", "ppo.steps=1"]
    trainer = PPOTrainer(load_config(TINY_CPU, overrides), reward_fn=even_token_reward)
    metrics = trainer.step_once()
    assert metrics["kl/mean"] == 0.0
    attention = [m for m in trainer.model.modules() if hasattr(m, "attention_dropout")]
    assert attention and all(m.attention_dropout == 0.0 for m in attention)


class ClosingRollouts(TransformersRollouts):
    """Transformers rollouts with a ``close`` like the vLLM engine's; each call records whether
    the final model had been written yet."""

    def __init__(self, run: Any, pad_id: int, eos_ids: list[int], output: Path) -> None:
        super().__init__(run, pad_id, eos_ids)
        self.output = output
        self.closes: list[bool] = []

    def close(self) -> None:
        self.closes.append((self.output / "model.safetensors").exists())


def _closing_trainer(tmp_path: Path) -> PPOTrainer:
    overrides = [f"ppo.output_dir={tmp_path / 'closing'}", "ppo.steps=1", "ppo.save_every=0",
                 "ppo.tensorboard=false"]  # fmt: skip
    trainer = PPOTrainer(load_config(TINY_CPU, overrides), reward_fn=even_token_reward)
    trainer.rollouts = ClosingRollouts(
        trainer.run, trainer.pad_id, trainer.eos_ids, trainer.output_dir
    )
    return trainer


def test_train_closes_the_rollout_engine_once_before_the_final_save(
    tmp_path: Path, isolated_env: None
) -> None:
    """An in-process caller gets the engine stopped by train() itself, exactly once."""
    trainer = _closing_trainer(tmp_path)
    out = trainer.train()
    assert trainer.rollouts.closes == [False]  # once, and before the final model was saved
    assert (out / "model.safetensors").exists()


def test_train_closes_the_rollout_engine_when_a_step_fails(
    tmp_path: Path, isolated_env: None
) -> None:
    trainer = _closing_trainer(tmp_path)

    def failing_step() -> dict[str, float]:
        raise RuntimeError("reward scanner crashed")

    trainer.step_once = failing_step  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="reward scanner crashed"):
        trainer.train()
    assert trainer.rollouts.closes == [False]
