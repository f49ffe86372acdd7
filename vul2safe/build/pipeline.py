"""Run the PrimeVul+ stages in order, through files, resumably.

Each stage reads the previous stage's kept file (``OUTPUT/stages/<prev>.jsonl``; the
``pairs`` stage reads the sources) and writes its own kept, dropped and done files
(:mod:`vul2safe.build.records`). The done file is JSON: counts, the stage's statistics and
a *fingerprint* of every setting the stage's output depends on (sources, limit, the
teacher's identity, the settings of this and all earlier stages — not the server URL nor
the concurrency). With ``resume`` a stage is skipped when it is done with the same
fingerprint; when a stage does run, the done markers of every later stage are removed,
since their input changed.

The teacher is opened only when a stage that needs it (``reflect``, ``prompts``) actually
runs, and closed at the end. A stage interrupted half way re-runs from its checkpoint and
the teacher cache (:mod:`vul2safe.cache`), so already-answered questions cost nothing.

The :class:`BuildReport` (also ``OUTPUT/report.json``) lists pairs in and out per stage and
the drop reasons with counts; reasons are folded into categories (:func:`fold_reason`) so the
table stays readable; every pair's full reason stays in the dropped files.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vul2safe.build import BuildContext, StageResult
from vul2safe.build.config import BuildConfig
from vul2safe.build.records import (
    STAGES,
    RepairPair,
    done_path,
    dropped_path,
    fold_reason,
    kept_path,
    read_done,
    read_pairs,
    stage_counts,
    stage_dir,
    write_done,
    write_pairs,
)
from vul2safe.errors import UsageError, Vul2SafeError
from vul2safe.fileio import write_json_atomic

#: stages that talk to the teacher model (it is opened only for them)
TEACHER_STAGES: frozenset[str] = frozenset({"reflect", "prompts"})
REPORT_FILE = "report.json"
#: teacher settings that change where/how fast it is asked, not what it answers
_TRANSPORT = ("base_url", "api_key_env", "concurrency", "timeout_s", "max_retries", "device")

Progress = Callable[[str, int, int], None]


class NothingSurvived(Vul2SafeError):
    """A stage left no pair for the next one; ``report`` (also ``report.json``) says where.

    Raised after the report is written: going on would only fail later with a less useful
    message (an empty dataset card), and a run whose every pair was dropped is a failure.
    """

    exit_code = 1

    def __init__(self, message: str, report: BuildReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class StageReport:
    """One row of the report."""

    stage: str
    status: str  # ran | resumed (done, skipped) | done earlier (not selected) | not run
    pairs_in: int = 0
    kept: int = 0
    dropped: int = 0
    drop_reasons: dict[str, int] = field(default_factory=dict)
    seconds: float | None = None
    teacher_requests: int | None = None


@dataclass
class BuildReport:
    """What a build did, stage by stage."""

    output: str
    stages: list[StageReport]
    teacher: dict[str, Any] | None = None
    seconds: float = 0.0
    finished_at: str = ""
    #: why the build stopped early, e.g. ``{"stage": "reflect", "summary": "..."}``
    stopped: dict[str, str] | None = None

    def stage(self, name: str) -> StageReport:
        return next(s for s in self.stages if s.stage == name)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def write(self, path: Path) -> None:
        write_json_atomic(path, self.to_dict())


# ----------------------------------------------------------------------------- stage files


def fingerprint(config: BuildConfig, stage: str) -> str:
    """Hash of every setting ``stage``'s output depends on (see the module docstring)."""
    data = config.to_dict()
    upto = STAGES[: STAGES.index(stage) + 1]
    relevant: dict[str, Any] = {
        "sources": data["sources"],
        "limit": data["limit"],
        "stages": {s: data.get(s) for s in upto},
    }
    if any(s in TEACHER_STAGES for s in upto):
        relevant["teacher"] = {k: v for k, v in data["teacher"].items() if k not in _TRANSPORT}
    blob = json.dumps(relevant, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- the teacher


def open_teacher(config: BuildConfig) -> Any:
    """Open the teacher's generation session through the backend registry."""
    from vul2safe import plugins
    from vul2safe.generation.base import BackendOptions

    backend_name, model = config.teacher.backend_and_model()
    teacher = config.teacher
    if backend_name == "openai" and not teacher.base_url:
        raise UsageError(
            f"--teacher {teacher.spec} needs --base-url URL of an OpenAI-compatible server "
            "(e.g. http://localhost:8000/v1; https://api.openai.com/v1 for OpenAI itself)"
        )
    options = BackendOptions(
        model=model,
        revision=teacher.revision,
        base_url=teacher.base_url,
        api_key_env=teacher.api_key_env,
        concurrency=teacher.concurrency,
        timeout_s=teacher.timeout_s,
        max_retries=teacher.max_retries,
        device=teacher.device,
        dtype=teacher.dtype,
        extra=dict(teacher.options),
    )
    return plugins.backends.get(backend_name).open(options)


# ----------------------------------------------------------------------------- running


def needs_teacher(config: BuildConfig, stage: str) -> bool:
    """Reflect always; prompts unless its settings say template prompts only."""
    if stage not in TEACHER_STAGES:
        return False
    return getattr(config.stage(stage), "teacher", True) is not False


def _module(stage: str) -> Any:
    return importlib.import_module(f"vul2safe.build.{stage}")


def _run_stage(stage: str, pairs: list[RepairPair], ctx: BuildContext) -> StageResult:
    run = _module(stage).run_stage
    kwargs: dict[str, Any] = {}
    if "checkpoint" in inspect.signature(run).parameters:
        kwargs["checkpoint"] = stage_dir(ctx.output) / f"{stage}.checkpoint.jsonl"
    return run(pairs, ctx, **kwargs)  # type: ignore[no-any-return]


def _select(stages: Sequence[str] | None) -> list[str]:
    if not stages:
        return list(STAGES)
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise UsageError(
            f"unknown stage(s) {', '.join(unknown)}; the stages are {', '.join(STAGES)}"
        )
    return [s for s in STAGES if s in stages]


def preflight(config: BuildConfig, selected: Sequence[str]) -> None:
    """Cheap checks of what later stages need, so a typo fails before any teacher call:
    source names and paths, decontamination data, Hub readiness for a push."""
    if "pairs" in selected:
        from vul2safe.build.source import get_source, parse_source_spec

        if not config.sources:
            raise UsageError("no source given; pass e.g. --source sven:/data/sven/train")
        for spec in config.sources:
            name, location = parse_source_spec(spec)
            get_source(name).resolve(location)
    assemble = config.assemble
    if "assemble" in selected and hasattr(assemble, "require_decontamination"):
        from vul2safe.build.dedup import check_benchmarks

        check_benchmarks(assemble)
    repo = getattr(config.publish, "push_to_hub", None)
    if "publish" in selected and repo:
        from vul2safe.build.publish import check_hub_ready

        check_hub_ready(repo)


def _input(stage: str, config: BuildConfig, output: Path, selected: list[str]) -> list[RepairPair]:
    if stage == STAGES[0]:
        from vul2safe.build.source import load_sources

        return load_sources(config.sources, config.limit)
    previous = STAGES[STAGES.index(stage) - 1]
    record = read_done(output, previous)
    if record is None:
        raise UsageError(
            f"stage {stage} needs the output of stage {previous}, which has not finished in "
            f"{output}; run --stages {previous},{stage} (or leave out --stages)"
        )
    if record.get("fingerprint") != fingerprint(config, previous) and previous not in selected:
        raise UsageError(
            f"stage {previous} in {output} was run with other settings; re-run it "
            f"(--stages {previous},{stage}) or use the settings it was run with"
        )
    return read_pairs(kept_path(output, previous))


def run_build(
    config: BuildConfig,
    output: Path,
    *,
    stages: Sequence[str] | None = None,
    resume: bool = True,
    progress: Progress | None = None,
) -> BuildReport:
    """Run the selected stages (all by default) and write ``OUTPUT/report.json``."""
    started = time.perf_counter()
    selected = _select(stages)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    preflight(config, selected)
    ctx = BuildContext(output=output, config=config, progress=progress)
    reports: dict[str, StageReport] = {}
    teacher_info: dict[str, Any] | None = None
    stopped: dict[str, str] | None = None
    try:
        for stage in STAGES:
            record = read_done(output, stage)
            stamp = fingerprint(config, stage)
            if stage not in selected or (
                resume and record is not None and record.get("fingerprint") == stamp
            ):
                status = "resumed" if stage in selected else "done earlier"
                if record is None:
                    status = "not run"
                counts = stage_counts(output, stage) if record is not None else {}
                reports[stage] = StageReport(
                    stage=stage, status=status, **{k: v for k, v in counts.items() if k != "stage"}
                )
                if record and record.get("teacher"):
                    teacher_info = teacher_info or record["teacher"]
                stopped = _emptied(reports[stage], selected, output)
                if stopped:
                    break
                continue
            pairs = _input(stage, config, output, selected)
            if needs_teacher(config, stage) and ctx.teacher is None:
                ctx.teacher = open_teacher(config)
            for later in STAGES[STAGES.index(stage) :]:
                done_path(output, later).unlink(missing_ok=True)
            if progress:
                progress(stage, 0, len(pairs))
            t0 = time.perf_counter()
            result = _run_stage(stage, pairs, ctx)
            seconds = round(time.perf_counter() - t0, 3)
            write_pairs(kept_path(output, stage), result.kept)
            write_pairs(dropped_path(output, stage), result.dropped)
            teacher = None
            if needs_teacher(config, stage) and ctx.teacher is not None:
                teacher = _describe(ctx.teacher)
                teacher_info = teacher
            requests = result.stats.get("teacher_requests")
            write_done(
                output,
                stage,
                {
                    "stage": stage,
                    "fingerprint": stamp,
                    "kept": len(result.kept),
                    "dropped": len(result.dropped),
                    "seconds": seconds,
                    "teacher": teacher,
                    "stats": result.stats,
                    "finished_at": _now(),
                },
            )
            _remove_checkpoint(output, stage)
            counts = stage_counts(output, stage)
            reports[stage] = StageReport(
                stage=stage,
                status="ran",
                pairs_in=len(pairs),
                kept=counts["kept"],
                dropped=counts["dropped"],
                drop_reasons=counts["drop_reasons"],
                seconds=seconds,
                teacher_requests=requests if isinstance(requests, int) else None,
            )
            if progress:
                progress(stage, len(pairs), len(pairs))
            stopped = _emptied(reports[stage], selected, output)
            if stopped:
                break
    finally:
        if ctx.teacher is not None:
            ctx.teacher.close()
    report = BuildReport(
        output=str(output),
        stages=[reports.get(s) or StageReport(stage=s, status="not run") for s in STAGES],
        teacher=teacher_info,
        seconds=round(time.perf_counter() - started, 3),
        finished_at=_now(),
        stopped=stopped,
    )
    report.write(output / REPORT_FILE)
    if stopped:
        raise NothingSurvived(stopped["summary"], report)
    return report


def _emptied(row: StageReport, selected: Sequence[str], output: Path) -> dict[str, str] | None:
    """Why the build stops after ``row``'s stage, or ``None``: it left no pair, and it ran
    (or resumed) now or a later stage is to run on its output."""
    later = STAGES[STAGES.index(row.stage) + 1 :]
    if (
        row.status == "not run"
        or row.kept
        or not (row.status in ("ran", "resumed") or any(s in selected for s in later))
    ):
        return None
    if row.pairs_in == 0:
        why = "it was given no pairs" + (
            " (do the sources hold any? check --source and --limit)" if row.stage == "pairs" else ""
        )
    else:
        top = ", ".join(f"{reason} x{n}" for reason, n in list(row.drop_reasons.items())[:3])
        why = f"all {row.pairs_in} pairs were dropped ({top})"
        stats = (read_done(output, row.stage) or {}).get("stats") or {}
        # the teacher stages say what was wrong with the replies: the cause behind the drops
        replies = stats.get("invalid_votes") or stats.get("teacher_failures") or {}
        if isinstance(replies, dict) and replies:
            ranked = sorted(replies.items(), key=lambda item: -item[1])[:2]
            why += "; unusable teacher replies: " + ", ".join(f"{r} x{n}" for r, n in ranked)
    summary = (
        f"no pair survived the {row.stage} stage: {why}; see {output / REPORT_FILE} and every "
        f"pair's reason in {dropped_path(output, row.stage)}"
    )
    return {"stage": row.stage, "summary": summary}


def _remove_checkpoint(output: Path, stage: str) -> None:
    """The stage's files are written: its checkpoint (and the settings beside it) can go."""
    checkpoint = stage_dir(output) / f"{stage}.checkpoint.jsonl"
    for path in (checkpoint, checkpoint.with_name(checkpoint.name + ".settings")):
        path.unlink(missing_ok=True)


def _describe(session: Any) -> dict[str, Any]:
    """The teacher's identity for the report and card (no chat template text: too long)."""
    try:
        described = dict(session.describe())
    except Exception:  # a backend without describe(): the report still gets written
        return {}
    template = described.pop("chat_template", None)
    if template:
        digest = hashlib.sha256(str(template).encode()).hexdigest()
        described["chat_template_sha256"] = digest[:16]
    return described


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


__all__ = [
    "REPORT_FILE",
    "TEACHER_STAGES",
    "BuildReport",
    "NothingSurvived",
    "StageReport",
    "fingerprint",
    "fold_reason",
    "needs_teacher",
    "open_teacher",
    "preflight",
    "read_done",
    "run_build",
    "stage_counts",
]
