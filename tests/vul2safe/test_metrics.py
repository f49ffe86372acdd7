"""Tests for vul2safe.metrics against hand-computed and exact-fraction values."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from vul2safe.metrics import (
    RateCI,
    bootstrap_ci,
    func_sec_at_k,
    pass_at_k,
    pass_at_k_table,
    per_task_pass,
    rate_with_ci,
    wilson_interval,
)


def exact_pass_at_k(n: int, c: int, k: int) -> Fraction:
    return 1 - Fraction(math.comb(n - c, k), math.comb(n, k))


@pytest.mark.parametrize(
    ("k", "expected"),
    [(1, 0.4), (2, 0.7), (3, 0.9), (4, 1.0), (5, 1.0)],
)
def test_pass_at_k_hand_computed_n5_c2(k: int, expected: float) -> None:
    # pass@2 = 1 - C(3,2)/C(5,2) = 1 - 3/10; pass@3 = 1 - C(3,3)/C(5,3) = 1 - 1/10
    assert pass_at_k(5, 2, k) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("k", [1, 2, 5, 10])
def test_pass_at_k_no_correct_is_zero(k: int) -> None:
    assert pass_at_k(10, 0, k) == 0.0


@pytest.mark.parametrize("k", [1, 3, 10])
def test_pass_at_k_all_correct_is_one(k: int) -> None:
    assert pass_at_k(10, 10, k) == 1.0


def test_pass_at_1_is_c_over_n() -> None:
    for n in range(1, 30):
        for c in range(n + 1):
            assert pass_at_k(n, c, 1) == pytest.approx(c / n, abs=1e-12)


def test_pass_at_k_large_n_matches_exact_fraction() -> None:
    value = pass_at_k(200, 13, 100)
    assert math.isfinite(value)
    assert value == pytest.approx(float(exact_pass_at_k(200, 13, 100)), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize(("n", "c", "k"), [(50, 7, 1), (50, 7, 10), (97, 40, 33), (1000, 1, 999)])
def test_pass_at_k_matches_exact_fraction(n: int, c: int, k: int) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(float(exact_pass_at_k(n, c, k)), abs=1e-12)


def test_pass_at_k_monotone_in_k() -> None:
    values = [pass_at_k(20, 3, k) for k in range(1, 21)]
    assert values == sorted(values)


@pytest.mark.parametrize(
    ("n", "c", "k", "message"),
    [
        (5, 2, 6, "k must be <= n"),
        (5, 2, 0, "k must be >= 1"),
        (5, 6, 1, "c .* must be <= n"),
        (-1, 0, 1, "n must be non-negative"),
        (5, -1, 1, "c must be non-negative"),
        (5, 2, -3, "k must be non-negative"),
        (5, 2, 1.5, "k must be an integer"),
    ],
)
def test_pass_at_k_rejects_bad_input(n: int, c: int, k: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pass_at_k(n, c, k)


def test_pass_at_k_accepts_numpy_integers() -> None:
    assert pass_at_k(np.int64(5), np.int64(2), np.int64(2)) == pytest.approx(0.7)


RESULTS = {
    "t1": [True, False, False, True, False],  # n=5, c=2
    "t2": [False] * 5,  # c=0
    "t3": [True] * 5,  # c=n
}


def test_pass_at_k_table_defaults_to_all_k() -> None:
    table = pass_at_k_table(RESULTS)
    assert list(table) == ["pass@1", "pass@2", "pass@3", "pass@4", "pass@5"]
    expected = {1: 0.4, 2: 0.7, 3: 0.9, 4: 1.0, 5: 1.0}
    for k, t1 in expected.items():
        assert table[f"pass@{k}"] == pytest.approx((t1 + 0.0 + 1.0) / 3, abs=1e-12)


def test_pass_at_k_table_only_reports_k_every_task_supports() -> None:
    results = {"a": [True, False, False], "b": [False, True, False, False, False]}
    assert list(pass_at_k_table(results)) == ["pass@1", "pass@2", "pass@3"]
    table = pass_at_k_table(results, ks=[10, 1, 3, 5, 1])
    assert list(table) == ["pass@1", "pass@3"]
    assert table["pass@1"] == pytest.approx((1 / 3 + 1 / 5) / 2)
    # a: n=3,c=1 -> 1; b: n=5,c=1,k=3 -> 1 - C(4,3)/C(5,3) = 1 - 4/10
    assert table["pass@3"] == pytest.approx((1.0 + 0.6) / 2)


def test_pass_at_k_table_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="empty"):
        pass_at_k_table({})
    with pytest.raises(ValueError, match="no samples"):
        pass_at_k_table({"a": [True], "b": []})
    with pytest.raises(ValueError, match="k must be >= 1"):
        pass_at_k_table(RESULTS, ks=[0])


def test_per_task_pass() -> None:
    assert per_task_pass(RESULTS) == {
        "t1": {"n": 5, "c": 2, "pass@1": 0.4},
        "t2": {"n": 5, "c": 0, "pass@1": 0.0},
        "t3": {"n": 5, "c": 5, "pass@1": 1.0},
    }


def test_func_sec_at_k_needs_both() -> None:
    results = {
        # only samples 0 and 3 are correct and secure: n=5, c=2
        "a": [(True, True), (True, False), (False, True), (True, True), (False, False)],
        "b": [(True, False)] * 5,  # functional but never secure -> 0
    }
    assert func_sec_at_k(results, 1) == pytest.approx((0.4 + 0.0) / 2)
    assert func_sec_at_k(results, 2) == pytest.approx((0.7 + 0.0) / 2)
    assert func_sec_at_k({"a": results["a"]}, 3) == pytest.approx(0.9)
    with pytest.raises(ValueError, match="k must be <= n"):
        func_sec_at_k(results, 6)


def test_bootstrap_ci_contains_mean_and_is_deterministic() -> None:
    rng = np.random.default_rng(1)
    values = rng.random(200).tolist()
    low, high = bootstrap_ci(values, seed=42)
    assert low < float(np.mean(values)) < high
    assert bootstrap_ci(values, seed=42) == (low, high)
    assert bootstrap_ci(values, seed=43) != (low, high)


def test_bootstrap_ci_narrows_with_more_data() -> None:
    rng = np.random.default_rng(2)
    small = rng.random(50).tolist()
    large = rng.random(5000).tolist()
    small_low, small_high = bootstrap_ci(small)
    large_low, large_high = bootstrap_ci(large)
    assert large_high - large_low < (small_high - small_low) / 3


def test_bootstrap_ci_other_statistic_and_confidence() -> None:
    values = list(range(101))
    low90, high90 = bootstrap_ci(values, statistic=np.median, confidence=0.90)
    low99, high99 = bootstrap_ci(values, statistic=np.median, confidence=0.99)
    assert low99 <= low90 < 50 < high90 <= high99


def test_bootstrap_ci_constant_and_single_values() -> None:
    assert bootstrap_ci([0.3] * 10) == pytest.approx((0.3, 0.3))
    assert bootstrap_ci([0.7]) == pytest.approx((0.7, 0.7))


def test_bootstrap_ci_batches_give_the_same_result_shape() -> None:
    # more values than one batch holds forces several batches; still deterministic
    values = np.random.default_rng(3).random(3000).tolist()
    first = bootstrap_ci(values, n_resamples=1500, seed=7)
    assert first == bootstrap_ci(values, n_resamples=1500, seed=7)
    assert first[0] < float(np.mean(values)) < first[1]


def test_bootstrap_ci_is_vectorised() -> None:
    """Fast by construction: resamples are reduced in a few batched calls, never one call per
    resample (what made it slow), and the batches give the per-resample answer."""
    values = np.random.default_rng(4).random(1000).tolist()
    shapes: list[tuple[int, ...]] = []

    def counting_mean(a: np.ndarray, axis: int) -> np.ndarray:
        shapes.append(a.shape)
        return np.mean(a, axis=axis)

    assert bootstrap_ci(values, n_resamples=2000, statistic=counting_mean) == bootstrap_ci(
        values, n_resamples=2000
    )
    assert 1 <= len(shapes) <= 4, shapes
    assert sum(shape[0] for shape in shapes) == 2000
    assert all(shape[1] == 1000 for shape in shapes)


@pytest.mark.parametrize(
    ("values", "kwargs", "message"),
    [
        ([], {}, "non-empty"),
        ([1.0, float("nan")], {}, "finite"),
        ([1.0], {"n_resamples": 0}, "n_resamples"),
        ([1.0], {"confidence": 1.0}, "confidence"),
    ],
)
def test_bootstrap_ci_rejects_bad_input(values: list[float], kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        bootstrap_ci(values, **kwargs)


def test_wilson_interval_known_value() -> None:
    # 8 of 10, 95%: the textbook Wilson interval is about (0.4902, 0.9433)
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4)
    assert high == pytest.approx(0.9433, abs=1e-4)


def test_wilson_interval_edges_keep_width() -> None:
    low, high = wilson_interval(0, 20)
    assert low == 0.0 and 0.0 < high < 0.2
    low, high = wilson_interval(20, 20)
    assert 0.8 < low < 1.0 and high == 1.0


@pytest.mark.parametrize(
    ("k", "n", "message"), [(1, 0, "n must be >= 1"), (3, 2, "k .* must be <= n")]
)
def test_wilson_interval_rejects_bad_input(k: int, n: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        wilson_interval(k, n)


def test_rate_with_ci_bootstrap_default() -> None:
    flags = [True] * 30 + [False] * 70
    result = rate_with_ci(flags)
    assert isinstance(result, RateCI)
    assert (result.rate, result.n) == (0.3, 100)
    assert result.low < 0.3 < result.high
    assert (result.low, result.high) == bootstrap_ci([1.0] * 30 + [0.0] * 70)


def test_rate_with_ci_wilson() -> None:
    result = rate_with_ci([True] * 8 + [False] * 2, method="wilson")
    assert result == RateCI(0.8, *wilson_interval(8, 10), 10)


def test_rate_with_ci_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="empty"):
        rate_with_ci([])
    with pytest.raises(ValueError, match="method"):
        rate_with_ci([True], method="exact")  # type: ignore[arg-type]
