"""Every pluggy hook vul2safe calls, typed, in one place.

Hooks follow the ``register_*(register)`` shape: a plugin calls ``register(obj)`` once per
thing it provides, so one module may contribute several scanners (compare simonw/llm's
``register_models``). In-tree plugins use exactly these hooks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import typer

PROJECT = "vul2safe"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Register = Callable[[Any], None]


@hookspec
def register_scanners(register: Register) -> None:
    """Register static-analysis scanners (objects following :class:`vul2safe.scanning.Scanner`)."""


@hookspec
def register_benchmarks(register: Register) -> None:
    """Register evaluation benchmarks (security, functional or both)."""


@hookspec
def register_backends(register: Register) -> None:
    """Register generation backends (transformers, vLLM, OpenAI-compatible, ...)."""


@hookspec
def register_sources(register: Register) -> None:
    """Register repair-pair sources for ``vul2safe build`` (PrimeVul, SVEN, SafeCoder, ...)."""


@hookspec
def register_commands(app: typer.Typer) -> None:
    """Add CLI commands or sub-apps to the ``vul2safe`` Typer app."""
