"""``vul2safe build``: build PrimeVul+ from repair-pair sources with a teacher model.

The command parses flags into config overrides (flags > ``--config`` file > defaults), calls
:func:`vul2safe.build.pipeline.run_build`, and prints the report table. A build in which a
stage drops every pair prints the table, then one error line naming that stage, and exits 1
(``report.json`` is written either way).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from vul2safe.build.pipeline import BuildReport


def build_command(
    source: Annotated[
        list[str] | None,
        typer.Option(
            "--source",
            "-s",
            help="NAME:LOCATION of repair pairs, e.g. sven:/data/sven/train (repeatable).",
        ),
    ] = None,
    teacher: Annotated[
        str | None,
        typer.Option("--teacher", help="Teacher model: openai:MODEL, hf:PATH or vllm:PATH."),
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option("--base-url", help="OpenAI-compatible server of an openai: teacher."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", file_okay=False, help="Build folder (created)."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Read at most N pairs per source.")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of every stage.")] = None,
    stages: Annotated[
        str | None,
        typer.Option(
            "--stages",
            help="Comma-separated subset: pairs,reflect,localize,prompts,assemble,publish.",
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option("--resume/--no-resume", help="Skip stages already done (same settings)."),
    ] = True,
    config_file: Annotated[
        Path | None,
        typer.Option("--config", dir_okay=False, help="YAML/JSON settings; flags override."),
    ] = None,
    push_to_hub: Annotated[
        str | None,
        typer.Option("--push-to-hub", help="Publish to this Hub dataset (OWNER/NAME)."),
    ] = None,
    private: Annotated[
        bool | None,
        typer.Option("--private", help="Make the pushed Hub dataset private."),
    ] = None,
    print_config: Annotated[
        bool,
        typer.Option("--print-config", help="Print the effective config as YAML and exit."),
    ] = False,
) -> None:
    """Build PrimeVul+: pairs → reflect → localize → prompts → assemble → publish."""
    from vul2safe.build.config import dump_config, load_config
    from vul2safe.errors import UsageError

    overrides: dict[str, Any] = {}
    if source:
        overrides["sources"] = list(source)
    if limit is not None:
        overrides["limit"] = limit
    if seed is not None:
        overrides["seed"] = seed
    teacher_flags = {"spec": teacher, "base_url": base_url}
    if any(v is not None for v in teacher_flags.values()):
        overrides["teacher"] = {k: v for k, v in teacher_flags.items() if v is not None}
    publish_flags = {"push_to_hub": push_to_hub, "private": private}
    if any(v is not None for v in publish_flags.values()):
        overrides["publish"] = {k: v for k, v in publish_flags.items() if v is not None}
    config = load_config(config_file, overrides)
    if print_config:
        typer.echo(dump_config(config), nl=False)
        return
    if output is None:
        raise UsageError("pass --output DIR: the folder the build writes to")
    selected = [s.strip() for s in stages.split(",") if s.strip()] if stages else None

    from vul2safe.build.pipeline import NothingSurvived, run_build
    from vul2safe.cli.progress import progress_bars

    try:
        with progress_bars() as bars:
            advance = bars.update if bars else None
            report = run_build(config, output, stages=selected, resume=resume, progress=advance)
    except NothingSurvived as stop:
        _print_report(stop.report)  # the table shows where the pairs went; then one line
        raise
    _print_report(report)


def _print_report(report: BuildReport) -> None:
    """Pairs in/out per stage and the drop reasons, then where the results are."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"vul2safe build — {report.output}")
    for name, justify in (
        ("stage", "left"),
        ("status", "left"),
        ("in", "right"),
        ("kept", "right"),
        ("dropped", "right"),
        ("teacher calls", "right"),
        ("drop reasons", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in report.stages:
        reasons = ", ".join(f"{reason} {count}" for reason, count in row.drop_reasons.items())
        ran = row.status != "not run"
        table.add_row(
            row.stage,
            row.status,
            str(row.pairs_in) if ran else "",
            str(row.kept) if ran else "",
            str(row.dropped) if ran else "",
            "" if row.teacher_requests is None else str(row.teacher_requests),
            reasons,
        )
    console = Console(width=max(120, Console().width))
    console.print(table)
    output = Path(report.output)
    if (output / "dataset").is_dir():
        console.print(f"dataset: {output / 'dataset'}  card: {output / 'README.md'}")
    console.print(f"report: {output / 'report.json'}")
