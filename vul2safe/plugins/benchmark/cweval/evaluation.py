"""CWEval inside ``vul2safe eval MODEL``: the benchmark's block of ``results.json``.

The exploit tests decide both numbers: ``functional`` carries func@k under the usual
``pass_at_k`` keys (so every table reads it like HumanEval Pro's pass@k) and ``func_sec`` is
the *dynamic* func-sec@k (``"source": "exploit tests"``); the scanners' func-sec (tests pass
and no static finding) is kept beside it as ``func_sec_static`` by :mod:`vul2safe.evaluate`,
and the static vulnerability rates stay in ``security`` as for every benchmark.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from vul2safe.benchmark import Task

__all__ = ["dynamic_entry"]


def dynamic_entry(
    entry: dict[str, Any],
    score_dynamic: Callable[..., dict[str, Any]],
    tasks: Sequence[Task],
    samples: Sequence[dict[str, Any]],
    *,
    config: Any,
    cache: Any,
    progress: Callable[[int], None] | None,
) -> dict[tuple[str, int], bool]:
    """Run the samples, fill ``entry`` in place, return ``(task, index) → passed``.

    ``config`` is the run's :class:`vul2safe.evaluate.EvalConfig` (jobs, timeout, sandbox
    mode, scanners)."""
    block = score_dynamic(
        tasks,
        samples,
        jobs=config.jobs,
        timeout_s=config.timeout_s,
        allow_unsafe=config.allow_unsafe,
        scanners=config.scanners,
        cache=cache,
        progress=progress,
    )
    entry.update(block)
    dynamic = block["dynamic"]
    records = block["samples"]
    outcomes: dict[str, int] = dynamic["outcomes"]
    if "func@1" in dynamic:
        entry["functional"] = {
            "pass_at_k": {
                k.replace("func@", "pass@"): v
                for k, v in dynamic.items()
                if k.startswith("func@") and not k.endswith("_ci")
            },
            "pass_at_1_ci": {
                **dynamic["func@1_ci"],
                "confidence": 0.95,
                "method": "percentile bootstrap over tasks",
            },
            "protocol": "cweval",
            "n_tasks_scored": dynamic["n_tasks"],
            "outcomes": outcomes,
        }
        entry["func_sec"] = {
            **{
                k: v
                for k, v in dynamic.items()
                if k.startswith("func-sec@") and not k.endswith("_ci")
            },
            "func-sec@1_ci": dynamic["func-sec@1_ci"],
            "source": "exploit tests",
        }
    # unsupported samples (no toolchain) count as not passing in the static func-sec
    return {(r["task_id"], r["sample_index"]): bool(r["passed"]) for r in records}
