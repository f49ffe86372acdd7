"""The PrimeVul+ pipeline: pairs → reflect → localize → prompts → assemble → publish.

Each stage is one module with a ``run_stage(pairs, ctx) -> StageResult`` function; the
pipeline (:mod:`vul2safe.build.pipeline`) reads the previous stage's file, runs the stage,
and writes its kept and dropped pairs (:mod:`vul2safe.build.records`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from vul2safe.build.records import RepairPair


@dataclass
class StageResult:
    """What a stage kept and what it dropped (each dropped pair has ``drop_reason`` set)."""

    kept: list[RepairPair] = field(default_factory=list)
    dropped: list[RepairPair] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class BuildContext:
    """Shared by all stages of one build: where to write, the config, the teacher, progress,
    and the cache the teacher stages use (``None``: the default :class:`~vul2safe.cache.Cache`)."""

    output: Path
    config: Any  # vul2safe.build.config.BuildConfig
    teacher: Any = None  # a vul2safe.generation.base.Session, opened lazily by the pipeline
    progress: Callable[[str, int, int], None] | None = None  # (stage, done, total)
    cache: Any = None  # a vul2safe.cache.Cache for teacher replies and scans; None: the default
