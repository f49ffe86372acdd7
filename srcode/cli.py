"""The ``srcode`` command line. Training commands arrive with the SFT/PPO work; ``doctor``
tells whether this environment can train at all (the ``train`` extra)."""

from __future__ import annotations

import importlib.metadata
import sys

import typer

app = typer.Typer(
    name="srcode",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    help="SRCode: secure-code training with token-level rewards.",
)

TRAIN_PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets")


@app.command("doctor")
def doctor() -> None:
    """Show which training dependencies are installed; exit 1 when one is missing."""
    missing = []
    for package in TRAIN_PACKAGES:
        try:
            typer.echo(f"{package:<13} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            typer.echo(f"{package:<13} missing")
            missing.append(package)
    if missing:
        typer.echo(
            "install the training extra: "
            "pip install torch==2.13.0 && pip install 'vul2safe[train]'",
            err=True,
        )
        raise typer.Exit(1)


@app.callback()
def _root() -> None:
    """SRCode: SFT then PPO with token-level rewards."""


def main() -> None:
    try:
        app(prog_name="srcode")
    except KeyboardInterrupt:
        print("srcode: interrupted", file=sys.stderr)
        sys.exit(130)
