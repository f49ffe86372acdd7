"""Scan throughput: batched engine vs one tool process per sample vs cache vs the tools' CLIs.

Samples are real functions: the before/after versions of SVEN and SafeCoder fix pairs
(``../shared/data``). Scanners: Bandit (in-process) + Semgrep (the ``osemgrep`` engine, ICD
rule pack). The anchor is the tools' own CLIs (``semgrep scan`` of the tool environment,
``bandit``) run concurrently over the same files. Also timed: a 16-sample batch (what one PPO
step pays) and ``vul2safe scan --no-cache`` with the default scanners over the 1,916
CyberSecEval instruct snippets vs the Semgrep CLI alone over the same files. Prints samples/s
for each path and the ratios the acceptance criteria name:

    python benchmarks/scan_throughput/run.py [--samples 600] [--naive-subset 24]

The naive path (a fresh tool process per sample, as most harnesses do) costs ~3 s per sample
for Semgrep alone, so it is timed on a random subset and reported as a rate.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from vul2safe import tools
from vul2safe.cache import Cache
from vul2safe.languages import detect_language, extension_for
from vul2safe.plugins.scanner.semgrep import engine_args, pack_file
from vul2safe.scanning import ScanOptions, scan_samples
from vul2safe.schema import Sample, SampleResult

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SCANNERS = ["bandit", "semgrep"]


def load_samples(limit: int, seed: int = 0) -> list[Sample]:
    """Before and after versions of real fixes, in languages our two scanners cover."""
    records = []
    sources = [*sorted((DATA / "sven" / "train").glob("*.jsonl"))]
    sources.append(DATA / "safecoder" / "sec-new-desc-train.jsonl")
    for path in sources:
        for line in path.read_text().splitlines():
            records.append(json.loads(line))
    samples = []
    for index, record in enumerate(records):
        language = detect_language(record["file_name"])
        if language is None:
            continue
        for side in ("before", "after"):
            code = record[f"func_src_{side}"]
            samples.append(Sample(f"{index}-{side}", code, language, f"{index}-{side}"))
    random.Random(seed).shuffle(samples)
    return samples[:limit]


def engine(samples: list[Sample], cache: Cache | None, use_cache: bool) -> float:
    shells = [SampleResult(Sample(s.id, s.code, s.language, s.path)) for s in samples]
    started = time.perf_counter()
    run = scan_samples(shells, SCANNERS, ScanOptions(use_cache=use_cache), cache=cache)
    elapsed = time.perf_counter() - started
    errors = sum(1 for r in run.results if r.errors)
    print(f"    ({sum(bool(r.findings) for r in run.results)} flagged, {errors} with errors)")
    return elapsed


def write_tree(samples: list[Sample], root: Path) -> list[Path]:
    paths = []
    for index, sample in enumerate(samples):
        path = root / f"s{index:05d}{extension_for(sample.language)}"
        path.write_text(sample.code)
        paths.append(path)
    return paths


def semgrep_cmd(config: Path, targets: list[str]) -> list[str]:
    """The Semgrep *CLI* of the tool environment (what users ran before the engine call)."""
    return [
        str(tools.venv_dir() / "bin" / "semgrep"),
        "scan",
        "--json",
        "--quiet",
        "--metrics=off",
        "--disable-version-check",
        f"--config={config}",
        *targets,
    ]


def engine_floor_cmd(config: Path, tree: Path) -> list[str]:
    """The floor: the plugin's engine call alone, one process, over the folder."""
    return [*engine_args([str(config)]), "--jobs=1", str(tree)]


def bandit_cmd(targets: list[str]) -> list[str]:
    """Bandit's CLI of this environment (found without activating it)."""
    beside = Path(sys.executable).with_name("bandit")
    return [str(beside) if beside.exists() else "bandit", "-f", "json", "-q", "--exit-zero",
            *targets]  # fmt: skip


def run_quiet(cmd: list[str]) -> None:
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


def batch_latency(
    samples: list[Sample], root: Path, config: Path, repeats: int
) -> tuple[float, float]:
    """Median seconds to scan 16 fresh samples: our engine vs the CLIs run concurrently."""
    ours, clis = [], []
    for round_ in range(repeats):
        batch = samples[round_ * 16 : (round_ + 1) * 16]
        started = time.perf_counter()
        engine(batch, None, use_cache=False)
        ours.append(time.perf_counter() - started)
        folder = root / f"batch{round_}"
        folder.mkdir()
        write_tree(batch, folder)
        started = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:
            commands = [semgrep_cmd(config, [str(folder)]), bandit_cmd(["-r", str(folder)])]
            list(pool.map(run_quiet, commands))
        clis.append(time.perf_counter() - started)
    return statistics.median(ours), statistics.median(clis)


def cyberseceval_scan(root: Path, config: Path) -> tuple[float, float, int]:
    """``vul2safe scan --no-cache`` (default scanners) vs the Semgrep CLI alone, 1,916 files."""
    records = json.loads((DATA / "cyberseceval" / "instruct.json").read_text())
    tree = root / "cyberseceval"
    tree.mkdir()
    for index, record in enumerate(records):
        name = f"s{index:04d}{extension_for(record['language'])}"
        (tree / name).write_text(record["origin_code"])
    started = time.perf_counter()
    run_quiet([sys.executable, "-m", "vul2safe", "scan", str(tree), "--no-cache", "-f", "json"])
    ours = time.perf_counter() - started
    started = time.perf_counter()
    run_quiet(semgrep_cmd(config, [str(tree)]))
    return ours, time.perf_counter() - started, len(records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=600)
    parser.add_argument("--naive-subset", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of (a), (d), (g)")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="scan-bench-"))
    os.environ["VUL2SAFE_HOME"] = str(workdir / "home")
    try:
        samples = load_samples(args.samples)
        n = len(samples)
        languages = sorted({s.language for s in samples})
        print(
            f"{n} real samples ({', '.join(languages)}), scanners: {', '.join(SCANNERS)}, "
            f"{os.cpu_count()} cores"
        )
        config = pack_file("icd")  # built once, outside every timing

        tree = workdir / "tree"
        tree.mkdir()
        paths = write_tree(samples, tree)
        py = [str(p) for p in paths if p.suffix == ".py"]

        print("(d) the tools' own CLIs once over the directory, sequentially")
        started = time.perf_counter()
        run_quiet(semgrep_cmd(config, [str(tree)]))
        run_quiet(bandit_cmd(["-r", str(tree)]))
        cli_sequential = time.perf_counter() - started

        # (a), (d) concurrent and (g) in interleaved rounds, median of each: on 2 shared
        # cores one burst of load elsewhere must not decide the ratio
        cache = Cache(workdir / "cache.sqlite3")
        rounds: dict[str, list[float]] = {"a": [], "d": [], "g": []}
        for round_ in range(args.rounds):
            print(f"round {round_ + 1}: (d) CLIs concurrently, (a) engine (cold), (g) floor")
            started = time.perf_counter()
            with ThreadPoolExecutor(2) as pool:
                commands = [semgrep_cmd(config, [str(tree)]), bandit_cmd(["-r", str(tree)])]
                list(pool.map(run_quiet, commands))
            rounds["d"].append(time.perf_counter() - started)
            # the first round fills the cache that (c) reads; the others do not use one
            rounds["a"].append(engine(samples, cache if round_ == 0 else None, round_ == 0))
            started = time.perf_counter()
            run_quiet(engine_floor_cmd(config, tree))
            rounds["g"].append(time.perf_counter() - started)
        batched, cli_parallel, floor = (statistics.median(rounds[k]) for k in ("a", "d", "g"))
        for key, times in rounds.items():
            print(f"    ({key}) rounds: {', '.join(f'{t:.2f}' for t in times)} s")

        print("(c) batched engine, warm cache")
        cached = engine(samples, cache, use_cache=True)

        print(f"(b) one tool process per sample, on a random subset of {args.naive_subset}")
        subset = random.Random(1).sample(range(n), args.naive_subset)
        started = time.perf_counter()
        for index in subset:
            run_quiet(semgrep_cmd(config, [str(paths[index])]))
            if str(paths[index]) in py:
                run_quiet(bandit_cmd([str(paths[index])]))
        naive_rate = args.naive_subset / (time.perf_counter() - started)

        print("(e) a 16-sample batch, no cache: engine vs the CLIs concurrently (median of 5)")
        batch_ours, batch_clis = batch_latency(samples, workdir, config, repeats=5)
        print("(f) CyberSecEval instruct: vul2safe scan --no-cache vs the Semgrep CLI alone")
        cse_ours, cse_semgrep, cse_n = cyberseceval_scan(workdir, config)

        rate = n / batched
        print()
        print(f"{'path':<44}{'wall s':>10}{'samples/s':>12}")
        print(f"{'(a) batched engine (cold cache)':<44}{batched:>10.2f}{rate:>12.1f}")
        print(
            f"{'(b) one process per sample (subset rate)':<44}"
            f"{n / naive_rate:>10.1f}{naive_rate:>12.2f}"
        )
        print(f"{'(c) cached re-scan':<44}{cached:>10.3f}{n / cached:>12.0f}")
        print(
            f"{'(d) tools CLIs over the dir, sequential':<44}{cli_sequential:>10.2f}"
            f"{n / cli_sequential:>12.1f}"
        )
        print(
            f"{'(d) tools CLIs over the dir, concurrent':<44}{cli_parallel:>10.2f}"
            f"{n / cli_parallel:>12.1f}"
        )
        label = "(g) floor: osemgrep alone, one process"
        print(f"{label:<44}{floor:>10.2f}{n / floor:>12.1f}")
        print(f"{'(e) 16-sample batch, engine':<44}{batch_ours:>10.2f}{16 / batch_ours:>12.1f}")
        label = "(e) 16-sample batch, CLIs concurrent"
        print(f"{label:<44}{batch_clis:>10.2f}{16 / batch_clis:>12.1f}")
        label = "(f) vul2safe scan, default scanners"
        print(f"{label:<44}{cse_ours:>10.2f}{cse_n / cse_ours:>12.1f}")
        print(f"{'(f) Semgrep CLI alone':<44}{cse_semgrep:>10.2f}{cse_n / cse_semgrep:>12.1f}")
        print()
        print(f"batched / per-sample throughput:      {rate / naive_rate:8.1f}x  (goal >= 50x)")
        print(f"CLIs-concurrent wall / batched wall:  {cli_parallel / batched:8.2f}x  (goal >= 3x)")
        print(f"CLIs-concurrent wall / engine floor:  {cli_parallel / floor:8.2f}x  (the most one "
              "pass of these rules can gain on one core)")  # fmt: skip
        print(f"engine floor / batched wall:          {floor / batched:8.2f}x")
        print(f"batched wall / CLIs-sequential wall:  {batched / cli_sequential:8.2f}x")
        print(f"cached re-scan speed-up:              {batched / cached:8.1f}x  (goal >= 50x)")
        print(f"16-sample batch, CLIs / engine:       {batch_clis / batch_ours:8.2f}x")
        print(
            f"1,916 snippets, Semgrep CLI / scan:   {cse_semgrep / cse_ours:8.2f}x  (goal > 1x)"
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
