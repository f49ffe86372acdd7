"""``vul2safe eval``: score samples on a functional benchmark (HumanEval Pro, MBPP Pro).

Today it scores an existing samples file (``--samples``); generating the samples with MODEL
is the next step of the same command, hence the optional MODEL argument.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from vul2safe.functional import FunctionalResult


def eval_command(
    model: Annotated[
        str | None,
        typer.Argument(
            help="Model to generate with: a Hub id, a local path, or the served name with "
            "--backend openai. Omit it and pass --samples to score existing generations."
        ),
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
        float | None,
        typer.Option(
            "--timeout",
            min=0.1,
            help="Wall-clock seconds per program (default: the protocol's; official 3.0).",
        ),
    ] = None,
    protocol: Annotated[
        str,
        typer.Option(
            "--protocol",
            help="Scoring protocol: official (default; CodeEval-Pro's cut rules and HF "
            "code_eval's execution, raw and sanitized pass@k) or strict (docs/functional.md).",
        ),
    ] = "official",
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
            help="MODEL: the run directory. --samples: the result JSON (default: "
            "SAMPLES_STEM.BENCHMARK.result.json beside the samples).",
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Evaluate only the first N tasks.")
    ] = None,
    benchmarks: Annotated[
        str | None,
        typer.Option("--benchmarks", help="Comma-separated benchmarks to generate for (MODEL)."),
    ] = None,
    backend: Annotated[
        str, typer.Option("--backend", help="transformers (default), vllm or openai.")
    ] = "transformers",
    n: Annotated[int, typer.Option("-n", min=1, help="Samples per task.")] = 1,
    temperature: Annotated[float, typer.Option("--temperature", min=0.0)] = 0.0,
    top_p: Annotated[float, typer.Option("--top-p", min=0.0, max=1.0)] = 1.0,
    max_tokens: Annotated[
        int | None,
        typer.Option(
            "--max-tokens",
            min=1,
            help="Tokens to generate per sample (default: each benchmark's official value: "
            "4096 for humaneval-pro/mbpp-pro, 2048 for CyberSecEval, else 512). transformers "
            "and vllm cap it per request at the model's context minus the prompt; with openai "
            "the server caps it.",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    revision: Annotated[str | None, typer.Option("--revision", help="Model revision.")] = None,
    base_url: Annotated[
        str | None, typer.Option("--base-url", help="OpenAI-compatible server URL (openai).")
    ] = None,
    api_key_env: Annotated[
        str, typer.Option("--api-key-env", help="Variable holding the API key (openai).")
    ] = "OPENAI_API_KEY",
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, help="Requests in flight (openai).")
    ] = 16,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Prompts per generate call (transformers).")
    ] = 8,
    no_chat_template: Annotated[
        bool, typer.Option("--no-chat-template", help="Completion mode even with a template.")
    ] = False,
    device: Annotated[str, typer.Option("--device", help="transformers device.")] = "auto",
    dtype: Annotated[str, typer.Option("--dtype", help="Model dtype.")] = "auto",
    backend_arg: Annotated[
        list[str] | None,
        typer.Option(
            "--backend-arg",
            help="KEY=VALUE passed to the backend (e.g. vLLM "
            "tensor_parallel_size=2, gpu_memory_utilization=0.8); see docs/backends.md.",
        ),
    ] = None,
    languages: Annotated[
        str | None, typer.Option("--languages", help="Comma-separated language subset.")
    ] = None,
    scanner: Annotated[
        list[str] | None, typer.Option("--scanner", "-s", help="Scanner(s) for security scoring.")
    ] = None,
    min_severity: Annotated[
        str, typer.Option("--min-severity", help="Vulnerability threshold: medium (default).")
    ] = "medium",
) -> None:
    """Generate with MODEL and score security + function, or score an existing --samples file."""
    if model is not None:
        from vul2safe.cli.eval_run import run_model_eval
        from vul2safe.errors import UsageError
        from vul2safe.protocols import get_protocol

        get_protocol(protocol)  # an unknown name fails before any model is loaded

        if samples is not None:
            raise UsageError("pass either MODEL (generate, then score) or --samples FILE, not both")

        run_model_eval(
            model=model,
            benchmarks=benchmarks,
            output=output,
            backend=backend,
            n=n,
            temperature=temperature,
            top_p=top_p,
            max_tokens=max_tokens,
            seed=seed,
            revision=revision,
            base_url=base_url,
            api_key_env=api_key_env,
            concurrency=concurrency,
            batch_size=batch_size,
            no_chat_template=no_chat_template,
            device=device,
            dtype=dtype,
            backend_arg=backend_arg or [],
            languages=languages,
            scanner=scanner,
            min_severity=min_severity,
            limit=limit,
            data_dir=data_dir,
            jobs=jobs,
            timeout=timeout,
            unsafe=unsafe_no_sandbox,
            protocol=protocol,
        )
        return
    from vul2safe import plugins
    from vul2safe.cli.progress import progress_bars
    from vul2safe.errors import UsageError
    from vul2safe.functional import read_samples, score_samples
    from vul2safe.protocols import get_protocol
    from vul2safe.sandbox import SandboxLimits

    proto = get_protocol(protocol)  # an unknown name fails before anything is read
    if samples is None:
        raise UsageError("nothing to evaluate; pass MODEL (to generate) or --samples FILE")
    if benchmark is None:
        names = ", ".join(sorted(plugins.benchmarks.names())) or "(none)"
        raise UsageError(f"pass --benchmark NAME (available: {names})")
    bench = plugins.benchmarks.get(benchmark)
    own_tests = getattr(bench, "evaluate_samples_file", None)
    if callable(own_tests):  # a benchmark with its own tests and result file (cweval)
        target = own_tests(
            samples, data_dir=data_dir, jobs=jobs, timeout_s=timeout,
            allow_unsafe=unsafe_no_sandbox, scanners=scanner, output=output,
        )  # fmt: skip
        typer.echo(f"wrote {target}", err=True)
        return
    if not callable(getattr(bench, "program", None)) or str(bench.kind) == "security":
        raise UsageError(f"{benchmark} is not a functional benchmark; it cannot be run")
    inputs = read_samples(samples)  # before loading data: a bad file fails fast
    source = bench.source(data_dir)
    tasks = bench.load(data_dir)
    limits = SandboxLimits(timeout_s=timeout if timeout is not None else proto.timeout_s)
    n_programs = len(inputs)
    with progress_bars() as bars:
        advance = bars.counter("running programs", n_programs) if bars and n_programs else None
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
            protocol=proto,
        )
    result.benchmark["samples_file"] = str(samples.resolve())
    target = output or samples.with_name(f"{samples.stem}.{bench.name}.result.json")
    result.write(target)
    _print_summary(result)
    typer.echo(f"wrote {target}", err=True)


def _print_summary(result: FunctionalResult) -> None:
    """A short table: pass@k with the CI, task coverage, and every outcome column."""
    from rich.console import Console
    from rich.table import Table

    bench = result.benchmark
    table = Table(title=f"{bench['name']} (v{bench['version']}) — {result.n_samples} samples")
    table.add_column("metric")
    table.add_column("value", justify="right")
    ci = result.pass_at_1_ci
    raw = " (raw)" if result.pass_at_k_sanitized is not None else ""
    for key, value in result.pass_at_k.items():
        text = f"{100 * value:.1f}%"
        if key == "pass@1":
            text += f"  [{100 * ci['low']:.1f}, {100 * ci['high']:.1f}] {ci['confidence']:.0%} CI"
        table.add_row(key + raw, text)
    for label, extra in (("sanitized", result.pass_at_k_sanitized),
                         ("higher of the two", result.pass_at_k_higher_of_raw_and_sanitized)):
        for key, value in (extra or {}).items():
            table.add_row(f"{key} ({label})", f"{100 * value:.1f}%")
    table.add_row("protocol", str(result.protocol.get("name", "")))
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
