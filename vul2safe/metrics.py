"""The numbers we report: pass@k, func-sec@k, and confidence intervals for rates.

Why these estimators:

* ``pass@k`` uses the unbiased estimator of Chen et al. (2021): with ``n`` samples of which
  ``c`` are correct, ``pass@k = 1 - C(n-c, k) / C(n, k)``, the probability that a random
  size-``k`` subset holds at least one correct sample. Drawing only ``k`` samples and checking
  "any correct" is much noisier. The binomials overflow floats for realistic ``n``, so the
  ratio is computed as the product ``prod_{i=n-c+1}^{n} (1 - k/i)``.
* Task-level means get a **percentile bootstrap over tasks**: tasks, not samples, are the
  independent units, and the bootstrap needs no normality assumption for a bounded,
  often skewed per-task score.
* Rates (e.g. "share of outputs flagged vulnerable") default to the same bootstrap so every
  interval in a results table is built the same way. The Wilson score interval is offered as
  the closed form; prefer it for small ``n`` or rates near 0 or 1, where the bootstrap
  collapses to a zero-width interval (all flags equal -> every resample is identical).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Literal, TypedDict

import numpy as np

__all__ = [
    "RateCI",
    "TaskPass",
    "bootstrap_ci",
    "func_sec_at_k",
    "pass_at_k",
    "pass_at_k_table",
    "per_task_pass",
    "rate_with_ci",
    "wilson_interval",
]

#: per-task summary: ``{"n": ..., "c": ..., "pass@1": ...}``
TaskPass = TypedDict("TaskPass", {"n": int, "c": int, "pass@1": float})

#: a statistic for ``bootstrap_ci``: reduces a numpy array along ``axis`` (np.mean, np.median)
Statistic = Callable[..., Any]

# keep one resample batch around this many values, so memory stays flat for big inputs
_BATCH_ELEMENTS = 4_000_000


def _as_count(name: str, value: int) -> int:
    try:
        number = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if number < 0:
        raise ValueError(f"{name} must be non-negative, got {number}")
    return number


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one task with ``n`` samples, ``c`` of them correct.

    Raises ``ValueError`` for negative values, ``c > n``, ``k < 1`` and ``k > n`` (a k larger
    than the number of samples cannot be estimated without bias).
    """
    n = _as_count("n", n)
    c = _as_count("c", c)
    k = _as_count("k", k)
    if c > n:
        raise ValueError(f"c (correct samples) must be <= n (samples), got c={c} > n={n}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got k={k}")
    if k > n:
        raise ValueError(f"k must be <= n (samples), got k={k} > n={n}")
    if n - c < k:  # every size-k subset contains a correct sample
        return 1.0
    # C(n-c, k) / C(n, k) == prod_{i=n-c+1}^{n} (1 - k / i): no huge integers, no overflow
    all_wrong = math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))
    return 1.0 - all_wrong


def _counts(results: Mapping[str, Sequence[bool]]) -> dict[str, tuple[int, int]]:
    """``task -> (n, c)``; empty input or a task without samples is an error, not a silent
    gap in the table."""
    if not results:
        raise ValueError("results is empty: no tasks to average over")
    counts: dict[str, tuple[int, int]] = {}
    for task, flags in results.items():
        if len(flags) == 0:
            raise ValueError(f"task {task!r} has no samples")
        counts[task] = (len(flags), sum(1 for flag in flags if flag))
    return counts


def pass_at_k_table(
    results: Mapping[str, Sequence[bool]], ks: Sequence[int] | None = None
) -> dict[str, float]:
    """Mean pass@k over tasks, keyed ``"pass@1"``, ``"pass@2"``, ... in increasing k.

    ``results`` maps a task id to the pass/fail flag of each sample. By default every k from
    1 to the smallest n is reported. A k is reported only if every task has ``n >= k``
    (requested larger ks are left out rather than averaged over a subset of tasks, which would
    silently change the task set between columns).
    """
    counts = _counts(results)
    min_n = min(n for n, _ in counts.values())
    if ks is None:
        wanted = list(range(1, min_n + 1))
    else:
        for k in ks:
            if _as_count("k", k) < 1:
                raise ValueError(f"k must be >= 1, got k={k}")
        wanted = sorted({int(k) for k in ks if k <= min_n})
    return {
        f"pass@{k}": math.fsum(pass_at_k(n, c, k) for n, c in counts.values()) / len(counts)
        for k in wanted
    }


def per_task_pass(results: Mapping[str, Sequence[bool]]) -> dict[str, TaskPass]:
    """``task -> {"n", "c", "pass@1"}``: the per-task view behind the table, for drilling in."""
    return {task: {"n": n, "c": c, "pass@1": c / n} for task, (n, c) in _counts(results).items()}


def func_sec_at_k(results: Mapping[str, Sequence[tuple[bool, bool]]], k: int) -> float:
    """Mean func-sec@k: a sample counts only if it passes the tests AND is secure.

    ``results`` maps a task id to ``(passes_tests, is_secure)`` per sample; the same unbiased
    estimator as ``pass_at_k`` is applied to the count of samples that are both. Unlike
    ``pass_at_k_table`` a single k is asked for, so a task with fewer than k samples raises.
    """
    both = {task: [bool(ok and safe) for ok, safe in samples] for task, samples in results.items()}
    counts = _counts(both)
    return math.fsum(pass_at_k(n, c, k) for n, c in counts.values()) / len(counts)


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence}")


def bootstrap_ci(
    values: Sequence[float],
    *,
    statistic: Statistic = np.mean,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int | None = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` over ``values`` (one value per task).

    ``statistic`` must reduce an array along an ``axis=`` keyword (``np.mean``,
    ``np.median``, ...): resamples are drawn as a ``(batch, len(values))`` index matrix and
    reduced in one call, so 2000 resamples of 1000 values take milliseconds. The same
    ``seed`` gives the same interval; ``seed=None`` draws fresh randomness.
    """
    data = np.asarray(values, dtype=float)
    if data.ndim != 1 or data.size == 0:
        raise ValueError("values must be a non-empty 1-D sequence of numbers")
    if not np.all(np.isfinite(data)):
        raise ValueError("values must be finite (no NaN or inf)")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    _check_confidence(confidence)
    rng = np.random.default_rng(seed)
    size = data.size
    batch = max(1, _BATCH_ELEMENTS // size)
    stats = np.empty(n_resamples, dtype=float)
    for start in range(0, n_resamples, batch):
        stop = min(start + batch, n_resamples)
        index = rng.integers(0, size, size=(stop - start, size))
        stats[start:stop] = np.asarray(statistic(data[index], axis=1), dtype=float)
    alpha = 1.0 - confidence
    low, high = np.quantile(stats, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for ``k`` successes in ``n`` trials.

    Closed form, stays inside [0, 1] and keeps a non-zero width at k = 0 or k = n, which is
    why it is the better choice for small samples and extreme rates.
    """
    k = _as_count("k", k)
    n = _as_count("n", n)
    if n == 0:
        raise ValueError("n must be >= 1: no trials, no interval")
    if k > n:
        raise ValueError(f"k (successes) must be <= n (trials), got k={k} > n={n}")
    _check_confidence(confidence)
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    p = k / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2.0 * n)) / denom
    half = z / denom * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class RateCI:
    """A rate with its confidence interval and the number of flags it was computed from."""

    rate: float
    low: float
    high: float
    n: int


def rate_with_ci(
    flags: Sequence[bool],
    *,
    method: Literal["bootstrap", "wilson"] = "bootstrap",
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int | None = 0,
) -> RateCI:
    """Share of true ``flags`` (e.g. "vulnerable") with a confidence interval.

    The flags should be independent units (one per task, or per sample when samples are
    independent draws); correlated flags make any interval too narrow. Bootstrap by default,
    for consistency with the other intervals we report; ``method="wilson"`` for the closed
    form (see the module docstring for when that is preferable).
    """
    n = len(flags)
    if n == 0:
        raise ValueError("flags is empty: no rate to estimate")
    as_float = [1.0 if flag else 0.0 for flag in flags]
    k = int(sum(as_float))
    if method == "bootstrap":
        low, high = bootstrap_ci(
            as_float, n_resamples=n_resamples, confidence=confidence, seed=seed
        )
    elif method == "wilson":
        low, high = wilson_interval(k, n, confidence)
    else:
        raise ValueError(f"method must be 'bootstrap' or 'wilson', got {method!r}")
    return RateCI(rate=k / n, low=low, high=high, n=n)
