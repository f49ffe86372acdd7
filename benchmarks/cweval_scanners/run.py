"""Scanners against CWEval's exploit tests, and the reference check: one command.

    python benchmarks/cweval_scanners/run.py                    # CWEval's references
    python benchmarks/cweval_scanners/run.py --samples S.jsonl  # any run's samples

Writes, under --out (default: this folder's ``results/``): ``references.jsonl`` (the
samples, when checking references), ``results.json`` (what ``vul2safe eval --samples ...
--benchmark cweval`` wrote: func@k, func-sec@k, per-sample verdicts, scanner agreement),
``reference_check.json`` and ``agreement.md`` (the table in docs/cweval.md). The scoring is
the CLI itself, run as a subprocess, so the figures are exactly what a user gets.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared/data/cweval")
    parser.add_argument("--samples", type=Path, help="score these samples instead of the refs")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--languages", help="comma-separated subset (references only)")
    parser.add_argument("--scanner", action="append", help="scanner(s); default: all available")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds per test (upstream: 3; key generation needs more on a busy machine)",
    )
    args = parser.parse_args()

    from vul2safe import plugins
    from vul2safe.plugins.benchmark.cweval.references import check_references, reference_samples
    from vul2safe.plugins.benchmark.cweval.report import agreement_markdown

    args.out.mkdir(parents=True, exist_ok=True)
    samples = args.samples
    if samples is None:
        languages = args.languages.split(",") if args.languages else None
        tasks = plugins.benchmarks.get("cweval").load(args.data_dir, languages=languages)
        samples = args.out / "references.jsonl"
        samples.write_text("".join(json.dumps(line) + "\n" for line in reference_samples(tasks)))
    result_path = args.out / "results.json"
    command = [
        sys.executable,
        "-m",
        "vul2safe",
        "eval",
        "--samples",
        str(samples),
        "--benchmark",
        "cweval",
        "--data-dir",
        str(args.data_dir),
        "-o",
        str(result_path),
        "--jobs",
        str(args.jobs),
        "--timeout",
        str(args.timeout),
    ]
    for name in args.scanner or []:
        command += ["--scanner", name]
    started = time.perf_counter()
    subprocess.run(command, check=True)
    elapsed = time.perf_counter() - started
    result = json.loads(result_path.read_text())
    table = agreement_markdown(result["scanner_agreement"], per_cwe=True)
    (args.out / "agreement.md").write_text(table)
    print(table)
    if args.samples is None:
        check = check_references(result["samples"])
        check["wall_s"] = round(elapsed, 1)
        (args.out / "reference_check.json").write_text(json.dumps(check, indent=2) + "\n")
        for language, kinds in check["per_language"].items():
            cells = ", ".join(f"{k} {v['ok']}/{v['n']}" for k, v in kinds.items())
            print(f"{language}: {cells}")
        for failure in check["failures"]:
            print(f"  fails: {failure['task_id']} ({failure['reference']}): {failure['detail']}")
    print(f"wall time {elapsed:.0f} s ({args.jobs} jobs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
