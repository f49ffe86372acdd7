"""``vul2safe scan``: run the registered scanners over files, directories or JSONL samples."""

from __future__ import annotations

import json
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer


class OutputFormat(str, Enum):
    table = "table"
    json = "json"
    jsonl = "jsonl"
    sarif = "sarif"


def scan_command(
    paths: Annotated[
        list[str], typer.Argument(help="Files, directories, or .jsonl of {id, code, language}.")
    ],
    scanner: Annotated[
        list[str] | None,
        typer.Option(
            "--scanner", "-s", help="Scanner to run (repeatable). Default: all available."
        ),
    ] = None,
    lang: Annotated[
        str | None, typer.Option("--lang", help="Force the language of every input.")
    ] = None,
    min_severity: Annotated[
        str, typer.Option("--min-severity", help="Report findings at or above: low|medium|high.")
    ] = "low",
    output_format: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="Output format.")
    ] = OutputFormat.table,
    jobs: Annotated[
        int, typer.Option("--jobs", "-j", min=1, help="Parallel scanner processes.")
    ] = max(1, os.cpu_count() or 1),
    fail_on: Annotated[
        str,
        typer.Option("--fail-on", help="Exit 1 on a finding at or above: low|medium|high|never."),
    ] = "low",
    semgrep_config: Annotated[
        list[str] | None,
        typer.Option("--semgrep-config", help="Extra Semgrep rule file or directory (repeatable)."),
    ] = None,
    rule_pack: Annotated[
        list[str] | None,
        typer.Option("--rule-pack", help="Semgrep rule pack(s): icd (default), icd-semgrep, none."),
    ] = None,
    sarif_input: Annotated[
        list[Path] | None,
        typer.Option("--sarif", help="SARIF file(s) for the `sarif` scanner to import."),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", min=1, help="Seconds per tool batch before isolating.")
    ] = 600.0,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Ignore and skip the cache.")
    ] = False,
    show_clean: Annotated[
        bool, typer.Option("--show-clean", help="List clean files in the table too.")
    ] = False,
) -> None:
    """Scan code for weaknesses; exit 0 clean, 1 findings at/above --fail-on, 2 errors."""
    from vul2safe import report
    from vul2safe.cli.progress import progress_bars
    from vul2safe.inputs import collect_inputs
    from vul2safe.scanning import ScanOptions, filter_findings, require_scanners, scan_samples
    from vul2safe.schema import Severity

    minimum = Severity.parse(min_severity)
    threshold = None if fail_on.lower() == "never" else Severity.parse(fail_on)
    if scanner:
        require_scanners(scanner)
    packs = [p for p in (rule_pack or ["icd"]) if p != "none"]
    options = ScanOptions(
        semgrep_configs=list(semgrep_config or []),
        semgrep_packs=packs,
        sarif_inputs=list(sarif_input or []),
        jobs=jobs,
        batch_timeout_s=timeout,
        file_timeout_s=min(timeout, 120.0),
        use_cache=not no_cache,
    )
    inputs = collect_inputs(paths, lang)
    total = sum(1 for s in inputs.samples if s.error is None)
    with progress_bars() as bars:
        advance = (lambda name, n: bars.advance(name, n, total)) if bars and total else None
        run = scan_samples(inputs.samples, scanner, options, progress=advance)
    filter_findings(run.results, minimum)
    summary = report.summarize(run.results, inputs.skipped)
    if output_format is OutputFormat.table:
        report.print_table(run, summary, show_clean=show_clean)
    elif output_format is OutputFormat.json:
        typer.echo(json.dumps(report.to_json(run, summary), indent=2))
    elif output_format is OutputFormat.jsonl:
        report.write_jsonl(run, sys.stdout)
    else:
        from vul2safe.sarif import to_sarif

        typer.echo(json.dumps(to_sarif(run.results, run.scanners), indent=2))
    if output_format is not OutputFormat.table:
        typer.echo(summary.line(), err=True)
    raise typer.Exit(report.exit_code(run.results, threshold))
