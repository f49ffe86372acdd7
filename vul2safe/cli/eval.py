"""``vul2safe eval``: score samples on a functional benchmark (HumanEval Pro, MBPP Pro).

Today it scores an existing samples file (``--samples``); generating the samples with MODEL
is the next step of the same command, hence the optional MODEL argument.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from vul2safe.functional import FunctionalResult


def eval_command(
    model: Annotated[
        str | None,
        typer.Argument(help="Model to generate with (not available yet: use --samples)."),
    ] = None,
    samples: Annotated[
        Path | None,
        typer.Option(
            "--samples",
            help="JSONL of {task_id, completion} (or {task_id, solution}); several per task.",
            dir_okay=False,
        ),
    ] = None,
    benchmark: Annotated[
        str | None,
        typer.Option("--benchmark", "-b", help="Benchmark name, e.g. humaneval-pro, mbpp-pro."),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Folder holding the benchmark file (or the file). Default: $VUL2SAFE_DATA_DIR, "
            "else the Hugging Face Hub.",
        ),
    ] = None,
    jobs: Annotated[
        int, typer.Option("--jobs", "-j", min=1, help="Programs run in parallel.")
    ] = max(1, os.cpu_count() or 1),
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="Wall-clock seconds per program.")
    ] = 10.0,
    unsafe_no_sandbox: Annotated[
        bool,
        typer.Option(
            "--unsafe-no-sandbox",
            help="Run untrusted code with rlimits only when bubblewrap is unavailable.",
        ),
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            dir_okay=False,
            help="Result JSON. Default: SAMPLES_STEM.BENCHMARK.result.json beside the samples.",
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Evaluate only the first N tasks.")
    ] = None,
) -> None:
    """Score samples functionally (pass@k in a sandbox) and write a result JSON."""
    from vul2safe import plugins
    from vul2safe.errors import UsageError
    from vul2safe.functional import read_samples, score_samples
    from vul2safe.sandbox import SandboxLimits

    if samples is None:
        if model is not None:
            raise UsageError("generation is not available yet; pass --samples FILE")
        raise UsageError("nothing to evaluate; pass --samples FILE")
    if benchmark is None:
        names = ", ".join(sorted(plugins.benchmarks.names())) or "(none)"
        raise UsageError(f"pass --benchmark NAME (available: {names})")
    bench = plugins.benchmarks.get(benchmark)
    if not callable(getattr(bench, "program", None)) or str(bench.kind) == "security":
        raise UsageError(f"{benchmark} is not a functional benchmark; it cannot be run")
    inputs = read_samples(samples)  # before loading data: a bad file fails fast
    source = bench.source(data_dir)
    tasks = bench.load(data_dir)
    limits = SandboxLimits(timeout_s=timeout)
    n_programs = len(inputs)
    with _progress(n_programs) as advance:
        result = score_samples(
            bench,
            tasks,
            inputs,
            limit=limit,
            jobs=jobs,
            limits=limits,
            allow_unsafe=unsafe_no_sandbox,
            progress=advance,
            dataset_source=source,
        )
    result.benchmark["samples_file"] = str(samples.resolve())
    if model is not None:
        result.benchmark["model"] = model
    target = output or samples.with_name(f"{samples.stem}.{bench.name}.result.json")
    result.write(target)
    _print_summary(result)
    typer.echo(f"wrote {target}", err=True)


@contextmanager
def _progress(total: int) -> Iterator[Callable[[int], None] | None]:
    """A transient progress bar on stderr while programs run; only when stderr is a TTY."""
    if not sys.stderr.isatty() or total == 0:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    progress = Progress(
        "running programs",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = progress.add_task("run", total=total)
    with progress:
        yield lambda n: progress.advance(task, n)


def _print_summary(result: FunctionalResult) -> None:
    """A short table: pass@k with the CI, task coverage, and every outcome column."""
    from rich.console import Console
    from rich.table import Table

    bench = result.benchmark
    table = Table(title=f"{bench['name']} (v{bench['version']}) — {result.n_samples} samples")
    table.add_column("metric")
    table.add_column("value", justify="right")
    ci = result.pass_at_1_ci
    for key, value in result.pass_at_k.items():
        text = f"{100 * value:.1f}%"
        if key == "pass@1":
            text += f"  [{100 * ci['low']:.1f}, {100 * ci['high']:.1f}] {ci['confidence']:.0%} CI"
        table.add_row(key, text)
    table.add_row("tasks scored / evaluated", f"{result.n_tasks_scored} / {result.n_tasks}")
    if result.n_tasks_missing:
        table.add_row("tasks without samples", str(result.n_tasks_missing), style="yellow")
    for name, count in result.outcomes.items():
        if count or name in ("passed", "failed"):
            table.add_row(f"  {name}", str(count))
    table.add_row("sandbox", str(result.execution["sandbox"]))
    Console().print(table)
    for note in result.notes:
        typer.echo(f"note: {note}", err=True)
