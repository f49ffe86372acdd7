"""Numbers for the README: learning-rate choice, per-arm rates, paired differences with CIs.

Seeds are the units: each seed gives one value per arm (the rate over the evaluation
prompts after the last PPO step), arms of a seed share the SFT model and the RL prompts, so
differences are paired by seed. The interval is a two-sided 95 % Student-t interval of the
mean paired difference over seeds (t quantiles tabulated below: no scipy dependency).
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

#: two-sided 95 % Student-t quantiles t_{0.975, df}
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
        9: 2.262, 10: 2.228, 15: 2.131, 20: 2.086, 30: 2.042}  # fmt: skip
METRICS = ("vulnerable", "func_sec", "functional", "invalid", "semgrep", "dyn_insecure", "name_ok")
BASELINES = ("instance_095", "instance_1", "critic_free")


def t975(df: int) -> float:
    return T975.get(df) or T975[min((k for k in T975 if k >= df), default=30)]


def mean_ci(values: list[float]) -> tuple[float, float, float]:
    """Mean and its 95 % t-interval (NaN interval for fewer than two values)."""
    if not values:
        return math.nan, math.nan, math.nan
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = t975(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def pick_lrs(tune: dict[str, dict[str, Any]], arms: list[str], lrs: list[float]) -> dict:
    """Per arm, the rate with the highest validation func-sec (ties: lower vulnerable rate,
    then the smaller rate)."""
    chosen = {}
    for arm in arms:
        scored = [(lr, tune.get(f"{arm}-lr{lr:g}")) for lr in lrs]
        scored = [(lr, r) for lr, r in scored if r]
        if not scored:
            raise SystemExit(f"no tuning run for arm {arm}")
        best = max(scored, key=lambda item: (item[1]["func_sec"], -item[1]["vulnerable"], -item[0]))
        chosen[arm] = best[0]
    return chosen


def summarise(final: dict[str, Any], chosen: dict[str, float]) -> dict[str, Any]:
    seeds = sorted(final, key=lambda s: int(s.split("-")[1]))
    per_arm: dict[str, dict[str, list[float]]] = {}
    for arm, lr in chosen.items():
        key = f"{arm}-lr{lr:g}"
        for metric in METRICS:
            per_arm.setdefault(arm, {})[metric] = [
                final[s][key][metric] for s in seeds if key in final[s]
            ]
    sft = {m: [final[s]["sft"][m] for s in seeds if "sft" in final[s]] for m in METRICS}
    paired: dict[str, dict[str, Any]] = {}
    for base in BASELINES:
        if base not in chosen or "token" not in chosen:
            continue
        tk, bk = f"token-lr{chosen['token']:g}", f"{base}-lr{chosen[base]:g}"
        for metric in METRICS:
            diffs = [
                final[s][tk][metric] - final[s][bk][metric]
                for s in seeds
                if tk in final[s] and bk in final[s]
            ]
            mean, low, high = mean_ci(diffs)
            paired.setdefault(base, {})[metric] = {
                "per_seed": diffs,
                "mean": mean,
                "ci95": [low, high],
                "token_lower": sum(d < 0 for d in diffs),
            }
    return {"seeds": seeds, "sft": sft, "arms": per_arm, "paired_token_minus": paired}


def _pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.1f}"


def _ci(values: list[float]) -> str:
    mean, low, high = mean_ci(values)
    return f"{_pct(mean)} [{_pct(low)}, {_pct(high)}]"


def markdown(
    summary: dict[str, Any], tune: dict, chosen: dict, args: Any, wall: float | None
) -> str:
    lines = [
        f"Evaluation: {args.eval_per_family * 6} held-out prompts (no prompt, function name or "
        f"template shared with SFT/RL data), one sample each, after {args.steps} PPO steps; "
        f"seeds {', '.join(s.split('-')[1] for s in summary['seeds'])}; "
        "mean over seeds [95 % t-interval], in %; every rate has all samples as denominator.",
        "",
        "| arm | lr | vulnerable (oracle) | func-sec | functional | invalid | Semgrep | "
        "dynamic insecure | name reproduced |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        "| SFT model (step 0) | – | " + " | ".join(_ci(summary["sft"][m]) for m in METRICS) + " |",
    ]
    for arm, values in summary["arms"].items():
        lines.append(
            f"| {arm} | {chosen[arm]:g} | " + " | ".join(_ci(values[m]) for m in METRICS) + " |"
        )
    lines += [
        "",
        "Paired differences, token − baseline (percentage points, mean [95 % t-interval] over "
        "seeds; 'token lower' counts seeds):",
        "",
        "| baseline | Δ vulnerable | token lower | Δ func-sec | Δ functional | Δ invalid |",
        "|---|---:|:---:|---:|---:|---:|",
    ]
    for base, diffs in summary["paired_token_minus"].items():
        n = len(diffs["vulnerable"]["per_seed"])

        def cell(metric: str, diffs: dict[str, Any] = diffs) -> str:
            d = diffs[metric]
            return f"{_pct(d['mean'])} [{_pct(d['ci95'][0])}, {_pct(d['ci95'][1])}]"

        lines.append(
            f"| {base} | {cell('vulnerable')} | {diffs['vulnerable']['token_lower']}/{n} | "
            f"{cell('func_sec')} | {cell('functional')} | {cell('invalid')} |"
        )
    seed_key = next(iter(tune)) if tune else ""
    lines += [
        "",
        f"Learning-rate grid ({seed_key}, validation prompts; func-sec % / vulnerable %):",
        "",
        "| arm | " + " | ".join(f"lr {lr:g}" for lr in args.lrs) + " | chosen |",
        "|---|" + "---:|" * len(args.lrs) + "---:|",
    ]
    for arm in chosen:
        cells = []
        for lr in args.lrs:
            r = tune.get(seed_key, {}).get(f"{arm}-lr{lr:g}")
            cells.append(f"{_pct(r['func_sec'])} / {_pct(r['vulnerable'])}" if r else "–")
        lines.append(f"| {arm} | " + " | ".join(cells) + f" | {chosen[arm]:g} |")
    if wall is not None:
        lines += ["", f"Wall time of the full run: {wall / 60:.1f} min."]
    return "\n".join(lines) + "\n"


def write(
    here: Path, args: Any, tune: dict, chosen: dict, final: dict, wall_seconds: float | None
) -> None:
    """results.json, table.md and the README's results section (between its markers)."""
    from vul2safe.fileio import write_json_atomic, write_text_atomic

    summary = summarise(final, chosen)
    write_json_atomic(
        here / "results.json",
        {
            "summary": summary,
            "tune": tune,
            "chosen_lr": chosen,
            "final": final,
            "args": {k: v for k, v in vars(args).items() if k != "report_only"},
        },
    )
    table = markdown(summary, tune, chosen, args, wall_seconds)
    write_text_atomic(here / "table.md", table)
    readme = here / "README.md"
    start, end = "<!-- results:start -->", "<!-- results:end -->"
    text = readme.read_text()
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + start + "\n" + table + end + rest.split(end, 1)[1]
        write_text_atomic(readme, text)
    print(table)
