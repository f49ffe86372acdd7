"""Token-level vs instance-level scanner rewards in SRCode's PPO, on a synthetic task corpus.

Per seed: build a tiny random Llama (vul2safe.testing.tiny_model, hidden 128, 2 layers) -> SFT it
(srcode.sft.run_sft) on corpus.py's prompts, each answered once with an unsafe and once with
a safe idiom -> PPO (srcode.ppo.PPOTrainer, driven one ``step_once`` at a time) from that
SFT model, once with ``reward.granularity: token`` and once with ``instance``, same seed,
same steps, same prompts. The reward scanners are Bandit (Python) and flawfinder (C); every
``--eval-every`` steps the policy answers a fixed held-out prompt set and those samples are
scored with Semgrep's ICD pack, which the reward never sees (and, for reference, with the
reward's own scanners).

Resumable: each (seed, granularity) run writes ``OUT/seed-N/<granularity>/result.json`` when it
finishes and is skipped when that file exists; SFT is skipped when its output exists. Fixed
seeds everywhere (model init, data order, sampling, evaluation sampling), so a rerun of a
missing piece gives the same numbers on the same machine.

    python benchmarks/tlr_vs_instance/run.py                 # 3 seeds x {token, instance}
    python benchmarks/tlr_vs_instance/run.py --report-only   # redo results.json/plot/README

Writes results.json, vuln_rate.png and the results section of README.md beside this file.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import corpus  # noqa: E402

GRANULARITIES = ("token", "instance")
EVAL_SCANNERS = ["semgrep"]  # ICD pack: independent of the reward
REWARD_SCANNERS = ["bandit", "flawfinder"]
CORPUS_SEED = 1000  # the SFT/RL corpus is the same for every seed
EVAL_SEED = 2000  # the held-out evaluation prompts
BASE_SHAPE = {"head_dim": 64, "layers": 2}  # hidden 128


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ----------------------------------------------------------------------------- pieces


def prepare_seed(out: Path, seed: int, args: argparse.Namespace) -> Path:
    """Base model + SFT for ``seed``; returns the SFT directory."""
    from srcode.config import load_config
    from srcode.sft import run_sft
    from vul2safe.testing.tiny_model import build_tiny_model

    root = out / f"seed-{seed}"
    base, sft = root / "base", root / "sft"
    if not (base / "config.json").exists():
        build_tiny_model(base, seed=seed, **BASE_SHAPE)
    if not (sft / "train_results.json").exists():
        config = load_config(args.config)
        config.model.path = str(base)
        config.data.source = str(out / "data")
        config.sft.output_dir = str(sft)
        config.sft.seed = seed
        started = time.perf_counter()
        run_sft(config)
        (sft / "wall_seconds.txt").write_text(f"{time.perf_counter() - started:.1f}\n")
    return sft


def eval_prompts(per_family: int) -> list[corpus.Example]:
    return corpus.build(EVAL_SEED, per_family)


def make_reward_fn(options: dict[str, Any], cache_path: Path) -> Any:
    """srcode's ScannerReward with its own scan cache, keeping the last batch for timing."""
    from srcode.ppo import ScannerReward
    from srcode.rewards import RewardConfig, RolloutScorer
    from srcode.rewards import Rollout as ScoredRollout
    from vul2safe.cache import Cache

    class TimedScannerReward(ScannerReward):
        def __init__(self) -> None:
            super().__init__(options)
            opts = {k: v for k, v in options.items() if k not in ("scanners", "mode")}
            # A fresh cache per run, so neither granularity profits from the other's scans.
            self.scorer = RolloutScorer(
                RewardConfig(**opts),
                scanners=options.get("scanners"),
                mode=options.get("mode", "chat"),
                cache=Cache(cache_path),
            )
            self.last_inputs: list[ScoredRollout] = []
            self.last_batch: Any = None
            self.seconds = 0.0

        def __call__(self, rollouts: list[Any]) -> list[Any]:
            started = time.perf_counter()
            inputs = self.to_scored(rollouts)
            batch = self.scorer(inputs)
            self.last_log = batch.stats.to_log("scan/")
            self.seconds = time.perf_counter() - started
            self.last_inputs, self.last_batch, self.last_rollouts = inputs, batch, rollouts
            return batch.rewards

    return TimedScannerReward()


def token_mapping_cost(reward_fn: Any, tokenizer: Any, repeats: int = 3) -> dict[str, float]:
    """Seconds per batch that token-level credit costs beyond a one-scalar reward.

    Measured on the step's own rollouts and findings, outside the step's timed section:
    (a) ``decode_with_offsets`` minus a plain ``tokenizer.decode`` of the same ids (an
    instance-level reward only needs the text), (b) ``locate_code`` + ``reward_breakdown``
    (findings -> character spans -> token masks) minus the instance-level minimum (is any
    finding >= medium -> a scalar on the last token). Best of ``repeats``.
    """
    import torch

    from srcode.rewards import decode_with_offsets, locate_code, reward_breakdown
    from vul2safe.schema import Severity

    rollouts, inputs, batch = reward_fn.last_rollouts, reward_fn.last_inputs, reward_fn.last_batch
    config = reward_fn.scorer.config

    def best(fn: Any) -> float:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    def offsets() -> None:
        for r in rollouts:
            decode_with_offsets(tokenizer, r.response_ids)

    def plain() -> None:
        for r in rollouts:
            tokenizer.decode(r.response_ids, skip_special_tokens=True)

    def token_map() -> None:
        for item, scored in zip(inputs, batch.rollouts, strict=True):
            located = locate_code(item.response, scored.code) if scored.code.strip() else (0, 0)
            offset, indent = located if located else (None, 0)
            reward_breakdown(
                item.response,
                item.offsets,
                scored.breakdown.findings,
                secure_snippets=item.secure_snippets if scored.code.strip() else (),
                code_offset=offset,
                code_indent=indent,
                invalid=scored.status != "ok",
                scanned=scored.scanned,
                config=config,
            )

    def instance_min() -> None:
        for item, scored in zip(inputs, batch.rollouts, strict=True):
            vulnerable = any(
                Severity.parse(f.severity).at_least(Severity.MEDIUM)
                for f in scored.breakdown.findings
            )
            value = torch.zeros(len(item.offsets))
            if len(item.offsets):
                value[-1] = -1.0 if vulnerable else 1.0

    t_off, t_plain = best(offsets), best(plain)
    t_map, t_inst = best(token_map), best(instance_min)
    return {
        "offsets_decode": t_off,
        "plain_decode": t_plain,
        "token_mapping": t_map,
        "instance_minimum": t_inst,
        "token_extra": max(0.0, t_off - t_plain) + max(0.0, t_map - t_inst),
    }


def generate_eval(trainer: Any, prompts: list[list[int]], step: int) -> list[dict[str, Any]]:
    """One sample per eval prompt from the current policy, with its own RNG stream (so the
    training samples are the same whether or not we evaluate)."""
    import torch

    policy = trainer.accelerator.unwrap_model(trainer.model).policy
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(EVAL_SEED + step)
        responses: list[list[int]] = []
        for start in range(0, len(prompts), 64):
            responses += trainer.rollouts.generate(policy, prompts[start : start + 64])
    out = []
    for index, ids in enumerate(responses):
        truncated = not ids or ids[-1] not in trainer.eos_ids
        out.append(
            {
                "task_id": f"s{step:04d}-{index:04d}",
                "sample_index": 0,
                "completion": trainer.tokenizer.decode(ids, skip_special_tokens=True),
                "finish_reason": "length" if truncated else "stop",
                "step": step,
                "prompt_index": index,
            }
        )
    return out


def score_eval(
    samples: list[dict[str, Any]], examples: list[corpus.Example], scanners: list[str], cache: Any
) -> dict[int, dict[str, Any]]:
    """Per checkpoint: vulnerability rate (>= medium, all samples as denominator), invalid
    outputs, per family -- through vul2safe.security.score_security, ONE scan for all."""
    from vul2safe.benchmark import Task
    from vul2safe.scanning import ScanOptions
    from vul2safe.security import score_security

    tasks = [
        Task(
            task_id=s["task_id"],
            prompt=examples[s["prompt_index"]].prompt,
            language=examples[s["prompt_index"]].language,
            metadata={"mode": "chat", "family": examples[s["prompt_index"]].family},
        )
        for s in samples
    ]
    result = score_security(
        tasks, samples, scanners=scanners, options=ScanOptions(use_cache=True), cache=cache
    )
    by_id = {s["task_id"]: s for s in samples}
    per_step: dict[int, dict[str, Any]] = {}
    for record in result.samples:
        sample = by_id[record.task_id]
        family = examples[sample["prompt_index"]].family
        entry = per_step.setdefault(
            sample["step"],
            {
                "n": 0,
                "vulnerable": 0,
                "invalid": 0,
                "unscanned": 0,
                "idiom": {"unsafe": 0, "safe": 0, "both": 0, "neither": 0},
                "family": {},
            },
        )
        entry["idiom"][corpus.idiom_of(family, sample["completion"])] += 1
        fam = entry["family"].setdefault(family, {"n": 0, "vulnerable": 0})
        entry["n"] += 1
        fam["n"] += 1
        if record.flagged_medium:
            entry["vulnerable"] += 1
            fam["vulnerable"] += 1
        if record.extraction != "ok":
            entry["invalid"] += 1
        if record.unscanned_reason:
            entry["unscanned"] += 1
    for entry in per_step.values():
        entry["vuln_rate"] = entry["vulnerable"] / entry["n"]
        entry["invalid_rate"] = entry["invalid"] / entry["n"]
        entry["safe_idiom_rate"] = entry["idiom"]["safe"] / entry["n"]
        entry["neither_rate"] = entry["idiom"]["neither"] / entry["n"]
        for fam in entry["family"].values():
            fam["vuln_rate"] = fam["vulnerable"] / fam["n"]
    return per_step


def run_ppo(out: Path, seed: int, granularity: str, sft: Path, args: argparse.Namespace) -> Path:
    """One PPO run with periodic evaluation; returns its result.json."""
    import torch

    from srcode.config import load_config
    from srcode.ppo import PPOTrainer
    from vul2safe.cache import Cache

    root = out / f"seed-{seed}" / granularity
    result_path = root / "result.json"
    if result_path.exists():
        log(f"seed {seed} {granularity}: done before, skipped")
        return result_path
    root.mkdir(parents=True, exist_ok=True)
    for stale in ("metrics.jsonl", "samples.jsonl", "scan-cache.sqlite3"):
        (root / stale).unlink(missing_ok=True)

    config = load_config(args.config)
    config.data.source = str(out / "data")
    config.ppo.output_dir = str(root / "ppo")
    config.ppo.init_from = str(sft)
    config.ppo.seed = seed
    config.ppo.steps = args.steps
    config.reward.options["granularity"] = granularity
    reward_fn = make_reward_fn(config.reward.options, root / "scan-cache.sqlite3")
    trainer = PPOTrainer(config, reward_fn=reward_fn)

    examples = eval_prompts(args.eval_per_family)
    prompts = [trainer._encode_prompt(ex.prompt) for ex in examples]  # the PPO prompt format
    eval_steps = sorted({0, *range(args.eval_every, args.steps + 1, args.eval_every), args.steps})

    started = time.perf_counter()
    samples: list[dict[str, Any]] = []
    metrics_log: list[dict[str, Any]] = []
    eval_seconds = 0.0
    with (root / "metrics.jsonl").open("w") as metrics_file:
        for step in range(args.steps + 1):
            if step in eval_steps:
                t0 = time.perf_counter()
                samples += generate_eval(trainer, prompts, step)
                eval_seconds += time.perf_counter() - t0
            if step == args.steps:
                break
            metrics = trainer.step_once()
            metrics["time/reward_fn"] = reward_fn.seconds
            metrics.update(
                {
                    f"cost/{k}": v
                    for k, v in token_mapping_cost(reward_fn, trainer.tokenizer).items()
                }
            )
            metrics_log.append(metrics)
            metrics_file.write(json.dumps(metrics) + "\n")
            metrics_file.flush()
            if metrics["step"] % 5 == 0:
                log(
                    f"seed {seed} {granularity} step {metrics['step']}: "
                    f"train vuln {metrics.get('scan/vulnerable_fraction', float('nan')):.2f} "
                    f"score {metrics['reward/score_mean']:.2f} kl {metrics['kl/mean']:.2f} "
                    f"step {metrics['time/step']:.2f}s"
                )
    train_seconds = time.perf_counter() - started - eval_seconds
    (root / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))

    t0 = time.perf_counter()
    eval_cache = Cache(out / "eval-scan-cache.sqlite3")
    evaluation = {
        "semgrep": score_eval(samples, examples, EVAL_SCANNERS, eval_cache),
        "reward_scanners": score_eval(samples, examples, REWARD_SCANNERS, eval_cache),
    }
    score_seconds = time.perf_counter() - t0
    del trainer
    torch.cuda.empty_cache() if torch.cuda.is_available() else None

    result = {
        "seed": seed,
        "granularity": granularity,
        "steps": args.steps,
        "eval_steps": eval_steps,
        "evaluation": {k: {str(st): v for st, v in d.items()} for k, d in evaluation.items()},
        "train_curve": [
            {
                "step": m["step"],
                "train_vuln_fraction": m.get("scan/vulnerable_fraction"),
                "score_mean": m["reward/score_mean"],
                "kl": m["kl/mean"],
            }
            for m in metrics_log
        ],
        "timing": timing_summary(metrics_log),
        "wall_seconds": {
            "train": train_seconds,
            "eval_generate": eval_seconds,
            "eval_score": score_seconds,
        },
    }
    result_path.write_text(json.dumps(result, indent=1) + "\n")
    sem = evaluation["semgrep"]
    log(
        f"seed {seed} {granularity}: semgrep vuln rate "
        + " ".join(f"s{s}={sem[s]['vuln_rate']:.2f}" for s in eval_steps)
        + f" (train {train_seconds:.0f}s)"
    )
    return result_path


def timing_summary(metrics: list[dict[str, Any]]) -> dict[str, float]:
    """Per-step seconds (means over steps) and the fractions of step time."""

    def mean(key: str) -> float:
        return statistics.fmean(m[key] for m in metrics)

    step = mean("time/step")
    out = {
        "step_s": step,
        "rollout_s": mean("time/rollout"),
        "reward_s": mean("time/reward"),
        "reward_fn_s": mean("time/reward_fn"),
        "scan_s": mean("scan/scan_seconds"),
        "logprobs_s": mean("time/logprobs"),
        "update_s": mean("time/update"),
        "token_extra_s": mean("cost/token_extra"),
        "offsets_decode_s": mean("cost/offsets_decode"),
        "plain_decode_s": mean("cost/plain_decode"),
        "token_mapping_s": mean("cost/token_mapping"),
        "instance_minimum_s": mean("cost/instance_minimum"),
    }
    out["reward_fraction"] = out["reward_s"] / step
    out["scan_fraction"] = out["scan_s"] / step
    out["reward_minus_scan_fraction"] = (out["reward_s"] - out["scan_s"]) / step
    out["token_extra_fraction"] = out["token_extra_s"] / step
    return out


# ----------------------------------------------------------------------------- report


def mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def aggregate(out: Path, seeds: list[int]) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {g: [] for g in GRANULARITIES}
    for seed in seeds:
        for g in GRANULARITIES:
            path = out / f"seed-{seed}" / g / "result.json"
            if path.exists():
                runs[g].append(json.loads(path.read_text()))
    summary: dict[str, Any] = {"seeds": seeds, "granularities": {}}
    for g, results in runs.items():
        if not results:
            continue
        steps = results[0]["eval_steps"]
        table = {}
        for scanner in ("semgrep", "reward_scanners"):
            rows = {}
            for s in steps:
                rates = [r["evaluation"][scanner][str(s)]["vuln_rate"] for r in results]
                invalid = [r["evaluation"][scanner][str(s)]["invalid_rate"] for r in results]
                fams = {}
                for fam in corpus.FAMILIES:
                    vals = [
                        r["evaluation"][scanner][str(s)]["family"][fam]["vuln_rate"]
                        for r in results
                    ]
                    fams[fam] = mean_std(vals)
                safe = [r["evaluation"][scanner][str(s)]["safe_idiom_rate"] for r in results]
                neither = [r["evaluation"][scanner][str(s)]["neither_rate"] for r in results]
                rows[str(s)] = {
                    "mean": mean_std(rates)[0],
                    "std": mean_std(rates)[1],
                    "per_seed": rates,
                    "invalid_mean_std": mean_std(invalid),
                    "safe_idiom_mean_std": mean_std(safe),
                    "neither_mean_std": mean_std(neither),
                    "family_mean_std": fams,
                }
            table[scanner] = rows
        timing = {
            key: mean_std([r["timing"][key] for r in results]) for key in results[0]["timing"]
        }
        curve_steps = [c["step"] for c in results[0]["train_curve"]]
        curve = [
            mean_std([r["train_curve"][i]["train_vuln_fraction"] for r in results])[0]
            for i in range(len(curve_steps))
        ]
        summary["granularities"][g] = {
            "n_seeds": len(results),
            "seeds": [r["seed"] for r in results],
            "eval_steps": steps,
            "vuln_rate": table,
            "timing_mean_std": timing,
            "train_vuln_fraction_mean": dict(zip(map(str, curve_steps), curve, strict=True)),
            "wall_seconds_per_run": mean_std([sum(r["wall_seconds"].values()) for r in results]),
        }
    summary["comparison"] = compare(runs)
    return summary


def compare(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Paired (same seed) token - instance differences on the Semgrep evaluation."""
    by_seed = {g: {r["seed"]: r for r in results} for g, results in runs.items()}
    seeds = sorted(set(by_seed["token"]) & set(by_seed["instance"]))
    if not seeds:
        return {}
    steps = by_seed["token"][seeds[0]]["eval_steps"]
    later = [s for s in steps if s > 0]

    def rate(g: str, seed: int, step: int) -> float:
        return by_seed[g][seed]["evaluation"]["semgrep"][str(step)]["vuln_rate"]

    def first_below(g: str, seed: int, level: float) -> float:
        for s in later:
            if rate(g, seed, s) <= level:
                return float(s)
        return math.nan  # never reached within the run

    out: dict[str, Any] = {"seeds": seeds, "diff_per_step": {}}
    for s in steps:
        diffs = [rate("token", k, s) - rate("instance", k, s) for k in seeds]
        out["diff_per_step"][str(s)] = {
            "mean_std": mean_std(diffs),
            "per_seed": diffs,
            "token_lower_in": sum(d < 0 for d in diffs),
            "instance_lower_in": sum(d > 0 for d in diffs),
        }
    for g in GRANULARITIES:
        auc = [statistics.fmean(rate(g, k, s) for s in later) for k in seeds]
        out[f"{g}_mean_rate_over_ppo_checkpoints"] = mean_std(auc)
        out[f"{g}_mean_rate_per_seed"] = auc
        for level in (0.10, 0.05):
            vals = [first_below(g, k, level) for k in seeds]
            out[f"{g}_first_step_at_or_below_{level:.2f}"] = vals
    auc_diff = [
        out["token_mean_rate_per_seed"][i] - out["instance_mean_rate_per_seed"][i]
        for i in range(len(seeds))
    ]
    out["auc_diff_token_minus_instance"] = mean_std(auc_diff)
    out["auc_token_lower_in_seeds"] = sum(d < 0 for d in auc_diff)
    return out


def fmt(pair: tuple[float, float] | list[float], pct: bool = True) -> str:
    mean, std = pair
    if math.isnan(mean):
        return "n/a"
    if pct:
        return f"{100 * mean:.1f} ± {100 * std:.1f}"
    return f"{mean:.3g} ± {std:.2g}"


def render_tables(summary: dict[str, Any]) -> str:
    """The Markdown tables README.md shows (regenerated by every run)."""
    gran = summary["granularities"]
    if not all(g in gran for g in GRANULARITIES):
        return "(not all granularities have results yet)\n"
    tok, ins = gran["token"], gran["instance"]
    comp = summary["comparison"]
    lines = [
        f"Vulnerability rate of evaluation samples (% with a finding >= medium, all samples as "
        f"denominator), **Semgrep ICD** (not used in the reward), mean ± std over "
        f"{tok['n_seeds']} seeds ({', '.join(map(str, tok['seeds']))}); "
        f"{summary['config']['eval_per_family'] * len(corpus.FAMILIES)} samples per "
        f"checkpoint per run. Δ = token − instance, paired by seed; 'token lower' counts seeds.",
        "",
        "| PPO step | token-level | instance-level | Δ (pp) | token lower | invalid % tok / inst "
        "| safe idiom % tok / inst |",
        "|---:|---:|---:|---:|:---:|---:|---:|",
    ]
    for s in tok["eval_steps"]:
        t, i = tok["vuln_rate"]["semgrep"][str(s)], ins["vuln_rate"]["semgrep"][str(s)]
        d = comp["diff_per_step"][str(s)]
        label = f"{s} (after SFT)" if s == 0 else str(s)
        lines.append(
            f"| {label} | {fmt((t['mean'], t['std']))} | {fmt((i['mean'], i['std']))} | "
            f"{fmt(d['mean_std'])} | {d['token_lower_in']}/{len(comp['seeds'])} | "
            f"{100 * t['invalid_mean_std'][0]:.1f} / {100 * i['invalid_mean_std'][0]:.1f} | "
            f"{100 * t['safe_idiom_mean_std'][0]:.1f} / {100 * i['safe_idiom_mean_std'][0]:.1f} |"
        )
    lines += [
        "",
        "Same samples scored by the **reward's own scanners** (Bandit + flawfinder):",
        "",
        "| PPO step | token-level | instance-level |",
        "|---:|---:|---:|",
    ]
    for s in tok["eval_steps"]:
        t = tok["vuln_rate"]["reward_scanners"][str(s)]
        i = ins["vuln_rate"]["reward_scanners"][str(s)]
        lines.append(f"| {s} | {fmt((t['mean'], t['std']))} | {fmt((i['mean'], i['std']))} |")

    def steps_text(g: str, level: float) -> str:
        vals = comp[f"{g}_first_step_at_or_below_{level:.2f}"]
        return ", ".join("never" if math.isnan(v) else str(int(v)) for v in vals)

    lines += [
        "",
        "Summary over the PPO checkpoints (Semgrep):",
        "",
        "| | token-level | instance-level |",
        "|---|---:|---:|",
        f"| mean rate over checkpoints 5–{tok['eval_steps'][-1]} (%) | "
        f"{fmt(comp['token_mean_rate_over_ppo_checkpoints'])} | "
        f"{fmt(comp['instance_mean_rate_over_ppo_checkpoints'])} |",
        f"| first checkpoint ≤ 10 %, per seed | {steps_text('token', 0.10)} | "
        f"{steps_text('instance', 0.10)} |",
        f"| first checkpoint ≤ 5 %, per seed | {steps_text('token', 0.05)} | "
        f"{steps_text('instance', 0.05)} |",
        "",
        f"Paired difference of that mean (token − instance): "
        f"{fmt(comp['auc_diff_token_minus_instance'])} pp; token-level lower in "
        f"{comp['auc_token_lower_in_seeds']}/{len(comp['seeds'])} seeds.",
        "",
        "Reward overhead, per PPO step (mean ± std over seeds of each run's mean over its "
        "steps; one process, 1 torch thread):",
        "",
        "| per step | token-level | instance-level |",
        "|---|---:|---:|",
    ]
    rows = [
        ("step time (s)", "step_s", False),
        ("reward computation, all of it (s)", "reward_s", False),
        ("… of which scanner processes (s)", "scan_s", False),
        ("reward computation / step time (%)", "reward_fraction", True),
        ("reward minus scanning / step time (%)", "reward_minus_scan_fraction", True),
        ("token-level-only work (ms): offsets decode + span→token mapping", "token_extra_s", None),
        ("token-level-only work / step time (%)", "token_extra_fraction", True),
    ]
    for label, key, pct in rows:
        t, i = tok["timing_mean_std"][key], ins["timing_mean_std"][key]
        if pct is None:
            lines.append(
                f"| {label} | {1000 * t[0]:.2f} ± {1000 * t[1]:.2f} | "
                f"{1000 * i[0]:.2f} ± {1000 * i[1]:.2f} |"
            )
        else:
            lines.append(f"| {label} | {fmt(t, pct)} | {fmt(i, pct)} |")
    return "\n".join(lines) + "\n"


def update_readme(tables: str, summary: dict[str, Any]) -> None:
    readme = HERE / "README.md"
    start, end = "<!-- results:start -->", "<!-- results:end -->"
    text = readme.read_text() if readme.exists() else f"{start}\n{end}\n"
    if start not in text:
        text += f"\n{start}\n{end}\n"
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    wall = summary.get("wall_seconds_full_run") or 0.0
    body = f"{tables}\nWall time of the full run: {wall / 60:.1f} min.\n"
    readme.write_text(f"{head}{start}\n{body}{end}{tail}")


def plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    colors = {"token": "tab:blue", "instance": "tab:orange"}
    for g, data in summary["granularities"].items():
        steps = data["eval_steps"]
        for ax, scanner, title in (
            (axes[0], "semgrep", "Evaluation: Semgrep ICD (not in the reward)"),
            (axes[1], "reward_scanners", "Reward's own scanners: Bandit + flawfinder"),
        ):
            rows = data["vuln_rate"][scanner]
            mean = [rows[str(s)]["mean"] for s in steps]
            std = [rows[str(s)]["std"] for s in steps]
            for seed_i in range(data["n_seeds"]):
                ax.plot(
                    steps,
                    [rows[str(s)]["per_seed"][seed_i] for s in steps],
                    color=colors[g],
                    alpha=0.25,
                    linewidth=0.8,
                )
            ax.errorbar(
                steps,
                mean,
                yerr=std,
                color=colors[g],
                marker="o",
                capsize=3,
                label=f"{g}-level (mean ± std, {data['n_seeds']} seeds)",
            )
            ax.set_title(title, fontsize=10)
    for ax in axes:
        ax.set_xlabel("PPO step (16 rollouts each; step 0 = after SFT)")
        ax.set_ylabel("vulnerability rate of samples (≥ medium)")
        ax.set_ylim(-0.02, 0.75)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=9)
    fig.suptitle("SRCode PPO on the synthetic corpus: token-level vs instance-level reward")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(HERE / "tlr_tiny.yaml"))
    parser.add_argument("--out", default=str(HERE / "runs"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--eval-per-family", type=int, default=32)
    parser.add_argument("--sft-per-family", type=int, default=60)
    parser.add_argument("--rl-per-family", type=int, default=40)
    parser.add_argument("--granularities", nargs="+", default=list(GRANULARITIES))
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: reproducible)")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if not args.report_only:
        if not (out / "data" / "rl").exists():
            corpus.write_dataset(out / "data", CORPUS_SEED, args.sft_per_family, args.rl_per_family)
        for seed in args.seeds:
            t0 = time.perf_counter()
            sft = prepare_seed(out, seed, args)
            log(f"seed {seed}: SFT ready ({time.perf_counter() - t0:.0f}s)")
            for g in args.granularities:
                run_ppo(out, seed, g, sft, args)
    wall = time.perf_counter() - started
    summary = aggregate(out, args.seeds)
    summary["config"] = {
        k: v for k, v in vars(args).items() if k not in ("report_only", "out", "config")
    }
    summary["wall_seconds_this_invocation"] = wall
    previous = HERE / "results.json"
    if args.report_only and previous.exists():
        summary["wall_seconds_full_run"] = json.loads(previous.read_text()).get(
            "wall_seconds_full_run"
        )
    else:
        summary["wall_seconds_full_run"] = wall
    (HERE / "results.json").write_text(json.dumps(summary, indent=1) + "\n")
    plot(summary, HERE / "vuln_rate.png")
    tables = render_tables(summary)
    (HERE / "table.md").write_text(tables)
    update_readme(tables, summary)
    log(f"wrote results.json and vuln_rate.png ({wall:.0f}s)")


if __name__ == "__main__":
    main()
