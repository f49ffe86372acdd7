"""``vul2safe tools install|status``: the isolated environment for Semgrep and codeshield."""

from __future__ import annotations

import json
from typing import Annotated

import typer

app = typer.Typer(
    name="tools",
    no_args_is_help=True,
    rich_markup_mode="rich",
    help="The isolated tool environment (Semgrep, codeshield): install it, show where it is.",
)


@app.command("install")
def install_command(
    python: Annotated[
        str | None,
        typer.Option(help="Interpreter that creates the virtualenv (default: this one)."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Less pip output.")] = False,
) -> None:
    """Create the virtualenv under $VUL2SAFE_TOOLS_DIR and install the pinned tools."""
    from vul2safe import tools

    typer.echo(f"installing {' '.join(tools.PINS)} into {tools.venv_dir()} …", err=True)
    info = tools.install(python, quiet=quiet)
    typer.echo(json.dumps(info, indent=2))


@app.command("status")
def status_command() -> None:
    """Where the tool environment is and what it holds (exit 1 when it is not usable)."""
    from vul2safe import tools

    info = tools.status()
    typer.echo(json.dumps(info, indent=2))
    if not info["ok"]:
        typer.echo(tools.missing_message("semgrep/codeshield"), err=True)
        raise typer.Exit(1)
