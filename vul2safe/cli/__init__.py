"""The ``vul2safe`` command line: a Typer app, one module per command group.

``main`` is the single error boundary: a :class:`~vul2safe.errors.Vul2SafeError` becomes one
line on stderr and a non-zero exit; a traceback only with ``VUL2SAFE_DEBUG=1``.
"""

from __future__ import annotations

import os
import sys

import typer

from vul2safe.errors import Vul2SafeError


def build_app() -> typer.Typer:
    """Assemble the app: in-tree commands, then whatever plugins add."""
    from vul2safe.cli import build_cmd, cache_cmd, leaderboard_cmd, plugins_cmd, scan
    from vul2safe.cli import eval as eval_cmd

    app = typer.Typer(
        name="vul2safe",
        no_args_is_help=True,
        rich_markup_mode="rich",
        pretty_exceptions_enable=False,
        help="Secure code generation research: scan, evaluate, build PrimeVul+.",
    )
    app.command("scan")(scan.scan_command)
    app.command("plugins")(plugins_cmd.plugins_command)
    app.command("eval")(eval_cmd.eval_command)
    app.command("build")(build_cmd.build_command)
    app.command("leaderboard")(leaderboard_cmd.leaderboard_command)
    app.add_typer(cache_cmd.app)
    from vul2safe.cli import tools_cmd

    app.add_typer(tools_cmd.app, name="tools")
    from vul2safe.plugins import call_register_commands

    call_register_commands(app)
    return app


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    debug = os.environ.get("VUL2SAFE_DEBUG") == "1"
    try:
        app = build_app()
        app(args=argv, prog_name="vul2safe")
    except Vul2SafeError as exc:
        if debug:
            raise
        print(f"vul2safe: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("vul2safe: interrupted", file=sys.stderr)
        sys.exit(130)
