"""``vul2safe eval MODEL``: parse options into an :class:`EvalConfig`, run, print a summary."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer


def _parse_backend_args(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; values parsed as JSON when they look like numbers/bools."""
    import json

    from vul2safe.errors import UsageError

    parsed: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--backend-arg expects KEY=VALUE, got {item!r}")
        try:
            parsed[key] = json.loads(value)
        except json.JSONDecodeError:
            parsed[key] = value
    return parsed


def run_model_eval(
    *,
    model: str,
    benchmarks: str | None,
    output: Path | None,
    backend: str,
    n: int,
    temperature: float,
    top_p: float,
    max_tokens: int | None,
    seed: int,
    revision: str | None,
    base_url: str | None,
    api_key_env: str,
    concurrency: int,
    batch_size: int,
    no_chat_template: bool,
    device: str,
    dtype: str,
    backend_arg: list[str],
    languages: str | None,
    scanner: list[str] | None,
    min_severity: str,
    limit: int | None,
    data_dir: Path | None,
    jobs: int,
    timeout: float | None,
    unsafe: bool,
    protocol: str = "official",
) -> None:
    from vul2safe.cli.progress import progress_bars
    from vul2safe.errors import UsageError
    from vul2safe.evaluate import EvalConfig, EvalProgress, run_eval
    from vul2safe.generation.base import BackendOptions, SamplingParams
    from vul2safe.schema import Severity

    if output is None:
        raise UsageError("pass --output DIR for the run directory")
    if output.exists() and not output.is_dir():
        raise UsageError(f"--output {output} is a file; MODEL runs need a directory")
    config = EvalConfig(
        model=model,
        benchmarks=[b.strip() for b in (benchmarks or "").split(",") if b.strip()],
        output=output,
        backend=backend,
        n=n,
        sampling=SamplingParams(
            temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed
        ),
        backend_options=BackendOptions(
            model=model,
            revision=revision,
            base_url=base_url,
            api_key_env=api_key_env,
            use_chat_template=not no_chat_template,
            device=device,
            dtype=dtype,
            batch_size=batch_size,
            concurrency=concurrency,
            extra=_parse_backend_args(backend_arg),
        ),
        limit=limit,
        languages=[x.strip() for x in languages.split(",")] if languages else None,
        data_dir=data_dir,
        scanners=scanner,
        threshold=Severity.parse(min_severity),
        jobs=jobs,
        timeout_s=timeout,
        allow_unsafe=unsafe,
        protocol=protocol,
    )
    with progress_bars(transient=False) as bars:
        results = run_eval(config, EvalProgress(start=bars.counter) if bars else None)
    print_summary(results)
    typer.echo(f"wrote {output / 'results.json'}", err=True)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def print_summary(results: dict[str, Any]) -> None:
    """One row per benchmark: vulnerability rates with CI, pass@1, func-sec@1, invalid %.

    CyberSecEval's own headline (ICD's insecure-code rate) and CWEval's func-sec@1 from exploit
    tests get columns of their own, labelled, beside the scanner-based numbers (never in their
    place), and a caption says where each comes from; read as the leaderboard reads them.
    """
    from rich.console import Console
    from rich.table import Table

    from vul2safe.leaderboard.runs import read_scores
    from vul2safe.leaderboard.table import NOTES, with_ci

    model = results["model"]
    table = Table(
        title=f"{model['id']} ({model['backend']}, {model['mode']}) — n={results['sampling']['n']}"
    )
    scores = {name: read_scores(entry, name) for name, entry in results["benchmarks"].items()}
    icd = any(s.icd_insecure is not None for s in scores.values())
    exploit = any(s.func_sec_exploit is not None for s in scores.values())
    columns = ["benchmark", "samples", "vuln≥med % [95% CI]", "vuln≥high %"]
    columns += ["ICD insecure-code % [95% CI]"] if icd else []
    columns += ["pass@1 %", "func-sec@1 (static) %"]
    columns += ["func-sec@1 (exploit tests) % [95% CI]"] if exploit else []
    columns += ["invalid %"]
    table.add_column(columns[0], no_wrap=True)  # a benchmark's name is never cut
    for column in columns[1:]:
        table.add_column(column, justify="right")
    for name, entry in results["benchmarks"].items():
        security = entry.get("security") or {}
        rates = security.get("vulnerability_rate", {})
        medium, high = rates.get("medium"), rates.get("high")
        vuln = "—"
        if medium:
            vuln = f"{_pct(medium['rate'])} [{_pct(medium['low'])}, {_pct(medium['high'])}]"
        functional = entry.get("functional") or {}
        score = scores[name]
        cells = [name, str(entry.get("n_samples", 0)), vuln, _pct(high["rate"]) if high else "—"]
        cells += [with_ci(score.icd_insecure)] if icd else []
        cells += [_pct(functional.get("pass_at_k", {}).get("pass@1")), _pct(score.func_sec_at_1)]
        cells += [with_ci(score.func_sec_exploit)] if exploit else []
        cells += [_pct(entry.get("invalid", {}).get("rate"))]
        table.add_row(*cells)
    notes = [("func-sec@1 (static)", NOTES["funcsec"])] if exploit else []
    notes += [("ICD insecure-code", NOTES["icd"])] if icd else []
    notes += [("func-sec@1 (exploit tests)", NOTES["funcsec_exploit"])] if exploit else []
    if notes:
        table.caption = "\n".join(f"{label}: {note}" for label, note in notes)
        table.caption_justify = "left"
    Console(width=None if sys.stdout.isatty() else 160).print(table)
