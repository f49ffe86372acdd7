"""Functional-evaluation throughput: our sandboxed parallel path vs the official loop.

All 542 reference solutions of HumanEval Pro (164) and MBPP Pro (378) are scored twice:

(a) ours: ``vul2safe.functional.score_samples`` — extraction, program assembly, and every
    program in its own bubblewrap sandbox with rlimits, ``--jobs`` workers (default 2);
(b) naive: what the official CodeEval-Pro harness does — write each program to a file, then
    one plain ``subprocess.run([sys.executable, file], timeout=10)`` after the other, no
    isolation at all.

Optionally (c) ``--serial-sandbox``: our path with one worker, to separate the effect of
parallelism from the per-program cost of the sandbox.

Both paths must pass 164/164 and 378/378, or the script fails. Run from the repo root:

    python benchmarks/functional_harness/run.py --data-dir ../shared/data/codeeval-pro
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from vul2safe.benchmark import Task  # noqa: E402
from vul2safe.functional import score_samples  # noqa: E402
from vul2safe.plugins.benchmark.codeeval_pro import CodeEvalProBenchmark  # noqa: E402
from vul2safe.plugins.benchmark.humaneval_pro import HumanEvalPro  # noqa: E402
from vul2safe.plugins.benchmark.mbpp_pro import MbppPro  # noqa: E402
from vul2safe.sandbox import SandboxLimits, sandbox_available  # noqa: E402

EXPECTED = {"humaneval-pro": 164, "mbpp-pro": 378}


def ours(
    suites: list[tuple[CodeEvalProBenchmark, list[Task]]], jobs: int, timeout: float
) -> tuple[float, dict[str, int]]:
    """Wall time and passes per benchmark through the real scoring path."""
    passed: dict[str, int] = {}
    start = time.perf_counter()
    for bench, tasks in suites:
        samples = [{"task_id": t.task_id, "completion": t.reference} for t in tasks]
        result = score_samples(
            bench, tasks, samples, jobs=jobs, limits=SandboxLimits(timeout_s=timeout)
        )
        passed[bench.name] = result.outcomes["passed"]
    return time.perf_counter() - start, passed


def naive(
    suites: list[tuple[CodeEvalProBenchmark, list[Task]]], timeout: float
) -> tuple[float, dict[str, int]]:
    """Wall time and passes of the official harness's loop (files written, then run)."""
    passed: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="naive-harness-") as tmp:
        start = time.perf_counter()
        for bench, tasks in suites:
            files = []
            for i, task in enumerate(tasks):
                path = Path(tmp) / bench.name / f"case_{i}" / "gen_0.py"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(bench.program(task, task.reference or ""), encoding="utf-8")
                files.append(path)
            ok = 0
            for path in files:
                try:
                    proc = subprocess.run(
                        [sys.executable, str(path)],
                        capture_output=True,
                        text=True,
                        timeout=timeout,
                        check=False,
                    )
                    ok += proc.returncode == 0
                except subprocess.TimeoutExpired:
                    pass
            passed[bench.name] = ok
        return time.perf_counter() - start, passed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared/data/codeeval-pro")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--serial-sandbox", action="store_true", help="also time (c)")
    parser.add_argument("--json", type=Path, help="write the numbers here too")
    args = parser.parse_args()

    ok, reason = sandbox_available()
    if not ok:
        print(f"no working bubblewrap: {reason}", file=sys.stderr)
        return 2
    suites = [(b, b.load(args.data_dir)) for b in (HumanEvalPro(), MbppPro())]
    n = sum(len(tasks) for _, tasks in suites)
    assert {b.name: len(t) for b, t in suites} == EXPECTED

    # naive first: it also warms the page cache for the interpreter both paths start
    t_naive, p_naive = naive(suites, args.timeout)
    t_ours, p_ours = ours(suites, args.jobs, args.timeout)
    rows = [
        (f"(a) vul2safe sandbox, jobs={args.jobs}", t_ours, p_ours),
        ("(b) official-style sequential subprocess.run", t_naive, p_naive),
    ]
    if args.serial_sandbox:
        t_serial, p_serial = ours(suites, 1, args.timeout)
        rows.append(("(c) vul2safe sandbox, jobs=1", t_serial, p_serial))

    print(
        f"{n} programs (humaneval-pro 164 + mbpp-pro 378); python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, {reason}"
    )
    for label, seconds, passed in rows:
        print(f"{label:48s} {seconds:7.2f} s  {n / seconds:6.1f} programs/s  passed {passed}")
    ratio = t_naive / t_ours
    print(f"speed-up (b)/(a): {ratio:.2f}x")

    for label, _, passed in rows:
        assert passed == EXPECTED, f"{label}: {passed} != {EXPECTED}"
    if args.json:
        args.json.write_text(json.dumps({
            "programs": n, "cpus": os.cpu_count(), "python": platform.python_version(),
            "sandbox": reason, "jobs": args.jobs,
            "seconds": {label: round(s, 3) for label, s, _ in rows},
            "passed": {label: p for label, _, p in rows},
            "speedup_naive_over_ours": round(ratio, 3),
        }, indent=2) + "\n")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
