"""The ``srcode`` command line: ``sft``, ``ppo``, ``reward``, ``tiny-model`` and ``doctor``.

Each training command reads one YAML config (``srcode/configs/*.yaml``), applies ``--set
SECTION.KEY=VALUE`` overrides (flags > file > defaults), and calls one library function.
torch/TRL are imported inside the commands, so ``srcode --help`` stays fast. A user error
(bad config, missing data, missing extra) is one line on stderr and a non-zero exit; set
``VUL2SAFE_DEBUG=1`` for the traceback.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from vul2safe.errors import Vul2SafeError

app = typer.Typer(
    name="srcode",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    help="SRCode: secure-code training with token-level rewards.",
)

TRAIN_PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets")

ConfigArg = Annotated[
    Path, typer.Argument(help="YAML config, e.g. srcode/configs/tiny_cpu.yaml.", show_default=False)
]
OutputOpt = Annotated[
    Path | None,
    typer.Option(
        "--output",
        "--output-dir",
        "-o",
        help="Output folder (overrides the section's output_dir; --output-dir is an alias).",
    ),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a config value: SECTION.KEY=VALUE (YAML value)."),
]


def _guarded(action: Callable[[], Any]) -> Any:
    """The error boundary: a Vul2SafeError becomes one line and its exit code."""
    try:
        return action()
    except Vul2SafeError as exc:
        if os.environ.get("VUL2SAFE_DEBUG") == "1":
            raise
        typer.echo(f"srcode: error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except ModuleNotFoundError as exc:
        if os.environ.get("VUL2SAFE_DEBUG") == "1" or exc.name not in TRAIN_PACKAGES:
            raise
        typer.echo(
            f"srcode: error: {exc.name} is missing; install the training extra: "
            "pip install 'vul2safe[train]' (srcode doctor lists what is there)",
            err=True,
        )
        raise typer.Exit(2) from None


def _load(config: Path, section: str, output_dir: Path | None, overrides: list[str] | None) -> Any:
    from srcode.config import load_config

    extra = list(overrides or [])
    if output_dir is not None:
        extra.append(f"{section}.output_dir={output_dir}")
    return load_config(config, extra)


def _report_saved(path: Path) -> None:
    """One line per run, not one per process under `accelerate launch`."""
    if os.environ.get("RANK", "0") == "0":
        typer.echo(f"saved {path}")


@app.command("sft")
def sft(config: ConfigArg, output_dir: OutputOpt = None, set_: SetOpt = None) -> None:
    """Supervised fine-tuning (TRL SFTTrainer) on the config's sft data."""

    def action() -> Path:
        from srcode.sft import run_sft

        return run_sft(_load(config, "sft", output_dir, set_))

    _report_saved(_guarded(action))


@app.command("ppo")
def ppo(
    config: ConfigArg,
    output_dir: OutputOpt = None,
    resume: Annotated[
        str | None,
        typer.Option(help="Continue from 'latest' or a checkpoint dir (sets ppo.resume_from)."),
    ] = None,
    set_: SetOpt = None,
) -> None:
    """PPO with token-level rewards; on GPUs: accelerate launch -m srcode.cli ppo CONFIG."""

    def action() -> Path:
        from srcode.ppo import run_ppo

        overrides = [*(set_ or []), *([f"ppo.resume_from={resume}"] if resume else [])]
        return run_ppo(_load(config, "ppo", output_dir, overrides))

    _report_saved(_guarded(action))


@app.command("reward")
def reward(
    samples: Annotated[
        Path, typer.Option("--samples", help="JSONL: {id, prompt, response, language, ...}.")
    ],
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="YAML with a reward: section.")
    ] = None,
    format_: Annotated[
        str, typer.Option("--format", help="jsonl, or html: a per-token heat map.")
    ] = "jsonl",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
    tokenizer: Annotated[
        str | None, typer.Option(help="Local Hugging Face tokenizer (default: regex tokens).")
    ] = None,
) -> None:
    """Score samples with the training reward: total, each term, and per-token rewards."""

    def action() -> str:
        from srcode.reward_cmd import run_reward

        return run_reward(
            samples, config=config, output_format=format_, output=output, tokenizer=tokenizer
        )

    text = _guarded(action)
    if output is None:
        typer.echo(text, nl=False)
    else:
        typer.echo(f"saved {output}", err=True)


@app.command("tiny-model")
def tiny_model(
    path: Annotated[Path, typer.Argument(help="Directory to write the model into.")],
    seed: Annotated[int, typer.Option(help="Weight seed (deterministic).")] = 0,
) -> None:
    """Build vul2safe's tiny random Llama + tokenizer offline (what model.path: tiny:// uses)."""

    def action() -> Path:
        from vul2safe.testing.tiny_model import build_tiny_model

        return build_tiny_model(path, seed=seed)

    typer.echo(str(_guarded(action)))


@app.command("schema")
def schema() -> None:
    """Print the JSON schema of a config file (every key, its type, default and description)."""
    import json

    from srcode.config import json_schema

    typer.echo(json.dumps(json_schema(), indent=2))


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


if __name__ == "__main__":  # `accelerate launch -m srcode.cli ppo CONFIG` runs this
    main()
