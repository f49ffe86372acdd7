"""Token-level vs instance-level rewards vs critic-free, in SRCode's PPO, scored by an oracle.

Per seed: build a tiny random Llama (vul2safe.testing.tiny_model) -> SFT it (srcode.sft) on
corpus.py's training tasks -> four PPO arms from that SFT model, same seed, same steps, same
RL prompts, each at its own learning rate (picked on a small grid, below):

* ``token``          -- reward.granularity token, GAE with lambda 0.95 (SRCode);
* ``instance_095``   -- the same total reward on the last token, GAE lambda 0.95;
* ``instance_1``     -- the same, GAE lambda 1 (Monte-Carlo returns: no bootstrapped credit);
* ``critic_free``    -- token-level reward, group-relative advantages (``ppo.advantage:
  grpo``, 4 samples per prompt), no value head.

Learning rate: each arm runs every rate of ``--lrs`` on a tuning seed that is not one of the
reported seeds; the rate with the best func-sec rate on VALIDATION prompts (held-out
templates and names, disjoint from both training and evaluation prompts) is used for that
arm's reported runs. The policy then answers the EVALUATION prompts (held out the same way)
after SFT and after the last PPO step; oracle.py scores them with what the reward never sees
(Semgrep ICD rules, dynamic tests in the sandbox, a functional check). report.py turns the
per-seed results into paired differences with 95 % t-intervals and the README section.

Resumable: each run leaves ``OUT/<phase>/seed-N/<arm>-lr<lr>/samples.json``.

    python benchmarks/tlr_vs_instance/run.py                 # the full experiment
    python benchmarks/tlr_vs_instance/run.py --report-only   # redo results.json/README
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import corpus  # noqa: E402
import oracle  # noqa: E402
import report  # noqa: E402

CORPUS_SEED = 1000  # SFT rows from build(1000), RL rows from build(1001): the same every seed
EVAL_SEED = 2000  # evaluation prompts (eval split)
VAL_SEED = 3000  # validation prompts for the learning-rate grid (eval split, other seed)
BASE_SHAPE = {"head_dim": 64, "layers": 2}  # hidden 128
ARMS: dict[str, list[str]] = {
    "token": ["reward.granularity=token", "ppo.advantage=gae", "ppo.lam=0.95"],
    "instance_095": ["reward.granularity=instance", "ppo.advantage=gae", "ppo.lam=0.95"],
    "instance_1": ["reward.granularity=instance", "ppo.advantage=gae", "ppo.lam=1.0"],
    "critic_free": [
        "reward.granularity=token",
        "ppo.advantage=grpo",
        "ppo.samples_per_prompt=4",
    ],
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def prompt_sets(args: argparse.Namespace) -> dict[str, list[corpus.Example]]:
    """Training, evaluation and validation tasks; refuses any overlap with training."""
    train = corpus.build(CORPUS_SEED, args.sft_per_family) + corpus.build(
        CORPUS_SEED + 1, args.rl_per_family
    )
    evaluation = corpus.build(EVAL_SEED, args.eval_per_family, "eval")
    seen = {e.prompt for e in evaluation}  # validation: the first prompts not in evaluation
    spare = [
        e for e in corpus.build(VAL_SEED, 4 * args.val_per_family, "eval") if e.prompt not in seen
    ]
    validation = [
        e
        for f in corpus.FAMILIES
        for e in [x for x in spare if x.family == f][: args.val_per_family]
    ]
    sets = {"eval": evaluation, "val": validation}
    for name, held in sets.items():
        shared = corpus.overlap(held, train)
        if any(shared.values()):
            raise SystemExit(f"{name} prompts overlap training: {shared}")
    if {e.prompt for e in sets["eval"]} & {e.prompt for e in sets["val"]}:
        raise SystemExit("validation and evaluation prompts overlap")
    return sets


def prepare_seed(out: Path, seed: int, args: argparse.Namespace) -> Path:
    """Base model + SFT for ``seed``; returns the SFT directory."""
    from srcode.config import load_config
    from srcode.sft import run_sft
    from vul2safe.testing.tiny_model import build_tiny_model

    root = out / "models" / f"seed-{seed}"
    base, sft = root / "base", root / "sft"
    if not (base / "config.json").exists():
        build_tiny_model(base, seed=seed, **BASE_SHAPE)
    if not (sft / "train_results.json").exists():
        overrides = [
            f"model.path={base}",
            f"data.source={out / 'data'}",
            f"sft.output_dir={sft}",
            f"sft.seed={seed}",
            f"sft.max_steps={args.sft_steps}",
        ]
        started = time.perf_counter()
        run_sft(load_config(args.config, overrides))
        log(f"seed {seed}: SFT {time.perf_counter() - started:.0f}s")
    return sft


def generate(trainer: Any, examples: list[corpus.Example], tag: str, seed: int) -> list[dict]:
    """One sample per prompt from the current policy, on its own RNG stream (evaluating does
    not change training), in the PPO prompt format."""
    import torch

    prompts = [trainer._encode_prompt(ex.prompt) for ex in examples]
    policy = trainer.accelerator.unwrap_model(trainer.model).policy
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(EVAL_SEED + seed)
        responses: list[list[int]] = []
        for start in range(0, len(prompts), 48):
            responses += trainer.rollouts.generate(policy, prompts[start : start + 48])
    return [
        {
            "task_id": f"{tag}-{index:04d}",
            "prompt_index": index,
            "completion": trainer.tokenizer.decode(ids, skip_special_tokens=True),
            "finish_reason": "stop" if ids and ids[-1] in trainer.eos_ids else "length",
        }
        for index, ids in enumerate(responses)
    ]


def run_arm(
    out: Path, phase: str, seed: int, arm: str, lr: float, sets: dict, args: argparse.Namespace
) -> Path:
    """One PPO run; writes the final policy's samples on ``phase``'s prompts (and, for the
    first run of a seed, the SFT model's)."""

    from srcode.config import load_config
    from srcode.ppo import PPOTrainer
    from vul2safe.cache import Cache

    prompts = sets["val" if phase == "tune" else "eval"]
    root = out / phase / f"seed-{seed}" / f"{arm}-lr{lr:g}"
    done = root / "samples.json"
    if done.exists():
        return done
    root.mkdir(parents=True, exist_ok=True)
    overrides = [
        f"data.source={out / 'data'}",
        f"ppo.output_dir={root / 'ppo'}",
        f"ppo.init_from={prepare_seed(out, seed, args)}",
        f"ppo.seed={seed}",
        f"ppo.steps={args.steps}",
        f"ppo.learning_rate={lr}",
        *ARMS[arm],
    ]
    config = load_config(args.config, overrides)
    from srcode.rewards import ScannerReward

    reward_fn = ScannerReward(config.reward.options, cache=Cache(root / "scan-cache.sqlite3"))
    trainer = PPOTrainer(config, reward_fn=reward_fn)
    sft_path = out / phase / f"seed-{seed}" / "sft-samples.json"
    if not sft_path.exists():
        sft_path.write_text(json.dumps(generate(trainer, prompts, f"{phase}-{seed}-sft", seed)))
    started = time.perf_counter()
    curve = []
    for _ in range(args.steps):
        metrics = trainer.step_once()
        curve.append({k: metrics.get(k) for k in ("step", "reward/score_mean", "kl/mean")})
    seconds = time.perf_counter() - started
    samples = generate(trainer, prompts, f"{phase}-{seed}-{arm}-{lr:g}", seed)
    done.write_text(json.dumps({"samples": samples, "curve": curve, "train_seconds": seconds}))
    log(f"{phase} seed {seed} {arm} lr {lr:g}: {args.steps} steps {seconds:.0f}s")
    del trainer
    return done


def judged(out: Path, phase: str, examples: list[corpus.Example]) -> dict[str, Any]:
    """Every finished run of ``phase`` scored by the oracle (one Semgrep scan for all)."""
    from vul2safe.cache import Cache

    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for path in sorted((out / phase).glob("seed-*/sft-samples.json")):
        runs[(path.parent.name, "sft")] = json.loads(path.read_text())
    for path in sorted((out / phase).glob("seed-*/*/samples.json")):
        runs[(path.parent.parent.name, path.parent.name)] = json.loads(path.read_text())["samples"]
    oracle.judge(
        [s for samples in runs.values() for s in samples],
        examples,
        Cache(out / "oracle-cache.sqlite3"),
    )
    table: dict[str, Any] = {}
    for (seed_dir, name), samples in runs.items():
        table.setdefault(seed_dir, {})[name] = oracle.rates(samples)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(HERE / "tlr_tiny.yaml"))
    parser.add_argument("--out", default=str(HERE / "runs"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--tune-seed", type=int, default=100)
    parser.add_argument("--lrs", type=float, nargs="+", default=[3e-5, 1e-4, 3e-4])
    parser.add_argument("--arms", nargs="+", default=list(ARMS))
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--sft-steps", type=int, default=150)
    parser.add_argument("--sft-per-family", type=int, default=60)
    parser.add_argument("--rl-per-family", type=int, default=40)
    parser.add_argument("--eval-per-family", type=int, default=12)
    parser.add_argument("--val-per-family", type=int, default=6)
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)  # two cores shared by the whole team
    out = Path(args.out)
    sets = prompt_sets(args)
    started = time.perf_counter()
    if not args.report_only:
        if not (out / "data" / "rl").exists():
            corpus.write_dataset(out / "data", CORPUS_SEED, args.sft_per_family, args.rl_per_family)
        for arm in args.arms:
            for lr in args.lrs:
                (out / "tune" / f"seed-{args.tune_seed}").mkdir(parents=True, exist_ok=True)
                run_arm(out, "tune", args.tune_seed, arm, lr, sets, args)
    tune = judged(out, "tune", sets["val"])
    chosen = report.pick_lrs(tune[f"seed-{args.tune_seed}"], args.arms, args.lrs)
    log("learning rates: " + ", ".join(f"{a} {lr:g}" for a, lr in chosen.items()))
    if not args.report_only:
        for seed in args.seeds:
            for arm in args.arms:
                run_arm(out, "final", seed, arm, chosen[arm], sets, args)
    final = judged(out, "final", sets["eval"])
    wall = time.perf_counter() - started
    report.write(HERE, args, tune, chosen, final, wall_seconds=None if args.report_only else wall)


if __name__ == "__main__":
    main()
