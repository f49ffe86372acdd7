"""Score model samples functionally: extract → assemble → run in the sandbox → pass@k.

Why it is shaped this way:

* **The protocol decides extraction and execution** (:mod:`vul2safe.protocols`). The
  default, ``official``, cuts each output the way CodeEval-Pro does, runs it the way HF
  ``code_eval`` does and reports pass@k of the raw cut and of the sanitized copy, each
  labelled (and their official "higher of the two" in its own field). ``strict`` runs one
  fixed extraction per sample (:func:`vul2safe.extract.extract_code`): ``completion``
  continues the benchmark's completion prefix, ``solution`` is a whole answer.
* **Invalid outputs stay in the denominator** (strict). ``no_code``, ``unparsable``, ``truncated``
  and ``refusal`` samples are not run (they cannot pass), count as failures in pass@k, and
  are reported in their own columns.
* **Tasks, not samples, are the units** of the bootstrap CI (see :mod:`vul2safe.metrics`).
  pass@k is averaged over the tasks that have samples; tasks without samples are counted
  (``n_tasks_missing``) and listed, never silently scored as 0 or dropped.
"""

from __future__ import annotations

import datetime as _dt
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from vul2safe.benchmark import Benchmark, Task, dataset_hash
from vul2safe.errors import InputError, UsageError
from vul2safe.extract import OutputClass, extract_code
from vul2safe.fileio import write_json_atomic
from vul2safe.protocols import Protocol, get_protocol, official_cut, sanitize

if TYPE_CHECKING:
    from vul2safe.sandbox import SandboxLimits

__all__ = [
    "INVALID_CLASSES",
    "OUTCOMES",
    "FunctionalResult",
    "SampleInput",
    "SampleOutcome",
    "TaskOutcome",
    "read_samples",
    "samples_from_records",
    "score_samples",
]

CODE_FIELDS = ("completion", "solution")
#: extraction classes that are never run; each gets its own column
INVALID_CLASSES: tuple[str, ...] = tuple(c.value for c in OutputClass if c is not OutputClass.ok)
#: every per-sample outcome, in table order: execution statuses, then invalid outputs
OUTCOMES: tuple[str, ...] = (
    "passed", "failed", "error", "timeout", "memory", "killed", *INVALID_CLASSES
)  # fmt: skip
_DETAIL_CHARS = 500
_STANDALONE_RULES = ("fenced", "unclosed-fence")


@dataclass(frozen=True)
class SampleInput:
    """One model answer to score. ``field`` is ``completion`` or ``solution``."""

    task_id: str
    text: str
    field: Literal["completion", "solution"] = "completion"
    finish_reason: str | None = None
    line: int | None = None  # where it came from, for error messages


def _where(source: str, line: int | None) -> str:
    return f"{source}:{line}" if line is not None else source


def samples_from_records(
    records: Iterable[tuple[int | None, Any]], source: str = "samples"
) -> list[SampleInput]:
    """Validate ``(line, record)`` pairs into samples; the error names the line and field.

    A record has ``task_id`` and ``completion`` or ``solution`` (a string, or a list of
    strings: several samples, as the official harness writes them); ``finish_reason`` is
    optional (``"length"`` lets extraction tell truncated from unparsable).
    """
    samples: list[SampleInput] = []
    for line, record in records:
        where = _where(source, line)
        if not isinstance(record, Mapping):
            raise InputError(f"{where}: expected a JSON object, got {type(record).__name__}")
        if "task_id" not in record:
            raise InputError(f"{where}: missing field 'task_id'")
        task_id = record["task_id"]
        if not isinstance(task_id, str | int) or isinstance(task_id, bool):
            raise InputError(f"{where}: 'task_id' must be a string or an integer")
        present = [f for f in CODE_FIELDS if f in record]
        if not present:
            raise InputError(f"{where}: missing field 'completion' (or 'solution')")
        if len(present) > 1:
            raise InputError(f"{where}: has both 'completion' and 'solution'; keep one")
        name = present[0]
        value = record[name]
        texts = value if isinstance(value, list) else [value]
        if not all(isinstance(t, str) for t in texts):
            raise InputError(f"{where}: '{name}' must be a string or a list of strings")
        finish = record.get("finish_reason")
        if finish is not None and not isinstance(finish, str):
            raise InputError(f"{where}: 'finish_reason' must be a string")
        for text in texts:
            samples.append(SampleInput(str(task_id), text, name, finish, line))  # type: ignore[arg-type]
    return samples


def read_samples(path: Path | str) -> list[SampleInput]:
    """Samples from a JSONL file; a malformed line raises :class:`InputError` naming it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read samples file {path}: {exc}") from None
    records: list[tuple[int | None, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append((number, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise InputError(
                f"{path}:{number}: invalid JSON ({exc.msg} at column {exc.colno})"
            ) from None
    samples = samples_from_records(records, str(path))
    if not samples:
        raise InputError(f"{path}: no samples (expected JSONL lines of {{task_id, completion}})")
    return samples


@dataclass
class SampleOutcome:
    """What happened to one sample: its extraction, and its run when it had valid code."""

    task_id: str
    index: int  # position among this task's samples
    line: int | None
    field: str
    extraction: str  # OutputClass value
    rule: str
    standalone: bool  # program = code + tests (no completion prefix)
    outcome: str  # one of OUTCOMES
    passed: bool
    detail: str = ""
    duration_s: float | None = None
    sanitized_outcome: str | None = None  # official protocol: the santize.py copy's run
    sanitized_passed: bool | None = None


@dataclass
class TaskOutcome:
    """Per-task counts: ``n`` samples, ``c`` passing, and each outcome's count."""

    task_id: str
    n: int
    c: int
    pass_at_1: float
    outcomes: dict[str, int]


@dataclass
class FunctionalResult:
    """Everything a functional run produced; :meth:`to_dict` is the result-file layout."""

    benchmark: dict[str, Any]
    pass_at_k: dict[str, float]
    pass_at_1_ci: dict[str, Any]
    n_tasks: int  # tasks evaluated (after --limit)
    n_tasks_scored: int  # ... that have samples: the denominator of pass@k
    n_tasks_missing: int
    missing_task_ids: list[str]
    n_samples: int
    n_samples_outside_limit: int
    outcomes: dict[str, int]
    invalid_outputs: dict[str, int]
    execution: dict[str, Any]
    tasks: list[TaskOutcome]
    samples: list[SampleOutcome]
    vul2safe_version: str
    created_at: str
    notes: list[str] = field(default_factory=list)
    protocol: dict[str, Any] = field(default_factory=dict)
    #: what ``pass_at_k`` is: the raw extraction of each sample
    pass_at_k_label: str = "raw extraction"
    #: official protocol: pass@k of the sanitized copies (``santize.py``)
    pass_at_k_sanitized: dict[str, float] | None = None
    #: official protocol: per k the higher of raw and sanitized, CodeEval-Pro's headline
    pass_at_k_higher_of_raw_and_sanitized: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["tasks"] = [asdict(t) for t in self.tasks]
        data["samples"] = [asdict(s) for s in self.samples]
        return data

    def write(self, path: Path | str) -> None:
        """Write the JSON atomically (temp file + rename: never a half-written result)."""
        write_json_atomic(Path(path), self.to_dict())


def _resolve_ids(
    benchmark: Benchmark, tasks: Sequence[Task], samples: Sequence[SampleInput]
) -> list[str]:
    """Each sample's canonical task id; an unknown id is an error showing valid ones."""
    known = {t.task_id for t in tasks}
    resolved = []
    for sample in samples:
        task_id = benchmark.resolve_task_id(sample.task_id)
        if task_id not in known:
            where = f" (line {sample.line})" if sample.line is not None else ""
            examples = ", ".join(repr(t.task_id) for t in (tasks[0], tasks[-1]))
            raise InputError(
                f"unknown task id {sample.task_id!r}{where} for benchmark {benchmark.name} "
                f"({len(tasks)} tasks, ids like {examples}); is this the right --benchmark?"
            )
        resolved.append(task_id)
    return resolved


def _outcome_of(
    benchmark: Benchmark, task: Task, sample: SampleInput, index: int, proto: Protocol
) -> tuple[SampleOutcome, list[str]]:
    """Extract one sample per the protocol; its outcome (so far) and the programs to run:
    none (invalid, strict), the raw program, or raw + sanitized (official)."""
    if proto.name == "official":
        raw = official_cut(sample.text, sample.field)
        standalone = sample.field == "solution"
        rule = "official-solution" if standalone else "official-completion"
        outcome = SampleOutcome(task.task_id, index, sample.line, sample.field,
                                OutputClass.ok.value, rule, standalone, "ok", False)  # fmt: skip
        programs = [benchmark.program(task, raw, standalone=standalone)]
        cleaned = sanitize(raw)
        if cleaned != raw:
            programs.append(benchmark.program(task, cleaned, standalone=standalone))
        return outcome, programs
    prefix = benchmark.completion_prefix(task)
    mode: Literal["chat", "completion"] = "completion" if sample.field == "completion" else "chat"
    ext = extract_code(
        sample.text,
        language=task.language,
        prompt=prefix if mode == "completion" else None,
        mode=mode,
        finish_reason=sample.finish_reason,
    )
    standalone = mode == "chat" or ext.rule.startswith(_STANDALONE_RULES)
    outcome = SampleOutcome(task.task_id, index, sample.line, sample.field, ext.status.value,
                            ext.rule, standalone, ext.status.value, False,
                            ext.detail[:_DETAIL_CHARS])  # fmt: skip
    if ext.status is not OutputClass.ok:
        return outcome, []
    return outcome, [benchmark.program(task, ext.code, standalone=standalone)]


def score_samples(
    benchmark: Benchmark,
    tasks: Sequence[Task],
    samples: Sequence[SampleInput] | Sequence[Mapping[str, Any]],
    *,
    limit: int | None = None,
    jobs: int | None = None,
    limits: SandboxLimits | None = None,
    allow_unsafe: bool = False,
    progress: Callable[[int], None] | None = None,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
    dataset_source: str | None = None,
    protocol: str | Protocol | None = None,
) -> FunctionalResult:
    """Score ``samples`` against ``tasks`` (the whole benchmark, as loaded).

    ``protocol`` is a name of :data:`vul2safe.protocols.PROTOCOLS` (default ``official``).
    ``limit`` evaluates only the first ``limit`` tasks; samples of later tasks are counted
    (``n_samples_outside_limit``) but not run. ``limits`` is a
    :class:`vul2safe.sandbox.SandboxLimits` (default: the protocol's timeout).
    ``progress(n)`` reports ``n`` more samples done, so its total is ``len(samples)``.
    """
    from vul2safe import __version__, metrics
    from vul2safe.sandbox import SandboxLimits, run_programs, sandbox_available

    proto = get_protocol(protocol)
    if limit is not None and limit < 1:
        raise UsageError(f"--limit must be >= 1, got {limit}")
    if not tasks:
        raise InputError(f"benchmark {benchmark.name} has no tasks to score")
    inputs: list[SampleInput] = []
    for s in samples:  # plain dicts are validated like file lines (lists expand)
        inputs += [s] if isinstance(s, SampleInput) else samples_from_records([(None, s)])
    if not inputs:
        raise InputError("no samples to score")
    ids = _resolve_ids(benchmark, tasks, inputs)
    scored_tasks = list(tasks[:limit] if limit is not None else tasks)
    by_id = {t.task_id: t for t in scored_tasks}

    # 1. extraction and assembly, in sample order
    outcomes: list[SampleOutcome] = []
    programs: list[str] = []
    runs: list[list[int]] = []  # per outcome: indices of its programs (raw first)
    per_task_index: Counter[str] = Counter()
    outside = 0
    for sample, task_id in zip(inputs, ids, strict=True):
        task = by_id.get(task_id)
        if task is None:
            outside += 1
            continue
        outcome, own = _outcome_of(benchmark, task, sample, per_task_index[task_id], proto)
        per_task_index[task_id] += 1
        runs.append(list(range(len(programs), len(programs) + len(own))))
        programs += own
        outcomes.append(outcome)

    n_run = sum(1 for r in runs if r)
    if progress is not None and len(inputs) > n_run:
        progress(len(inputs) - n_run)  # invalid or beyond --limit: done already
    done_of = {r[-1] for r in runs if r}  # a sample is done when its last program is

    def advance_by_program() -> Callable[[int], None] | None:
        if progress is None:
            return None
        finished = iter(range(len(programs)))
        lock = threading.Lock()

        def step(_: int) -> None:  # a sample's count of programs done: report samples
            with lock:
                if next(finished, -1) in done_of:
                    progress(1)

        return step

    # 2. run every program in the sandbox (also decides/validates the sandbox mode)
    lim = limits if limits is not None else SandboxLimits(timeout_s=proto.timeout_s)
    sandboxed, sandbox_reason = sandbox_available()
    results = run_programs(programs, jobs=jobs, limits=lim, allow_unsafe=allow_unsafe,
                           progress=advance_by_program(), mode=proto.run_mode)  # fmt: skip
    for outcome, indices in zip(outcomes, runs, strict=True):
        if not indices:
            continue
        raw = results[indices[0]]
        outcome.outcome = raw.status.value
        outcome.passed = raw.status.value == "passed"
        outcome.detail = raw.detail[:_DETAIL_CHARS]
        outcome.duration_s = raw.duration_s
        if proto.sanitized:
            cleaned = results[indices[-1]]
            outcome.sanitized_outcome = cleaned.status.value
            outcome.sanitized_passed = cleaned.status.value == "passed"

    # 3. numbers: per task, pass@k over tasks with samples, bootstrap CI of pass@1
    flags: dict[str, list[bool]] = {t.task_id: [] for t in scored_tasks}
    counts: dict[str, Counter[str]] = {t.task_id: Counter() for t in scored_tasks}
    for outcome in outcomes:
        flags[outcome.task_id].append(outcome.passed)
        counts[outcome.task_id][outcome.outcome] += 1
    with_samples = {task_id: f for task_id, f in flags.items() if f}
    missing = [task_id for task_id, f in flags.items() if not f]
    if not with_samples:
        raise InputError(
            f"none of the {len(scored_tasks)} evaluated tasks of {benchmark.name} has a sample"
            + (f" ({outside} samples are beyond --limit {limit})" if outside else "")
        )
    table = metrics.pass_at_k_table(with_samples)
    table_sanitized = best = None
    if proto.sanitized:
        cleaned_flags: dict[str, list[bool]] = {task_id: [] for task_id in with_samples}
        for outcome in outcomes:
            cleaned_flags[outcome.task_id].append(bool(outcome.sanitized_passed))
        table_sanitized = metrics.pass_at_k_table(cleaned_flags)
        best = {k: max(v, table_sanitized[k]) for k, v in table.items()}
    per_task = metrics.per_task_pass(with_samples)
    low, high = metrics.bootstrap_ci(
        [p["pass@1"] for p in per_task.values()],
        n_resamples=n_resamples,
        confidence=confidence,
        seed=seed,
    )
    totals: Counter[str] = Counter(o.outcome for o in outcomes)
    ns = [len(f) for f in with_samples.values()]
    notes = []
    if missing:
        notes.append(
            f"{len(missing)} of {len(scored_tasks)} tasks have no samples: pass@k is the mean "
            f"over the {len(with_samples)} tasks that have samples"
        )
    if min(ns) != max(ns):
        notes.append(
            f"tasks have between {min(ns)} and {max(ns)} samples: pass@k is reported for "
            f"k <= {min(ns)} only"
        )
    if not sandboxed:
        notes.append(f"programs ran WITHOUT a sandbox (rlimits only): {sandbox_reason}")

    bench = benchmark.describe()
    bench.update(
        dataset_hash=dataset_hash(tasks),
        dataset_tasks=len(tasks),
        dataset_source=dataset_source,
        limit=limit,
    )
    return FunctionalResult(
        benchmark=bench,
        pass_at_k=table,
        pass_at_1_ci={
            "low": low,
            "high": high,
            "confidence": confidence,
            "method": "percentile bootstrap over tasks",
            "n_resamples": n_resamples,
            "seed": seed,
        },
        n_tasks=len(scored_tasks),
        n_tasks_scored=len(with_samples),
        n_tasks_missing=len(missing),
        missing_task_ids=missing,
        n_samples=len(outcomes),
        n_samples_outside_limit=outside,
        outcomes={name: totals.get(name, 0) for name in OUTCOMES},
        invalid_outputs={name: totals.get(name, 0) for name in INVALID_CLASSES},
        execution={
            "sandbox": "bubblewrap" if sandboxed else "none (rlimits only, --unsafe-no-sandbox)",
            "sandbox_detail": sandbox_reason,
            "jobs": jobs,
            "limits": asdict(lim),
            "run_mode": proto.run_mode,
            "programs_run": len(programs),
        },
        tasks=[
            TaskOutcome(
                task_id=task_id,
                n=per_task[task_id]["n"],
                c=per_task[task_id]["c"],
                pass_at_1=per_task[task_id]["pass@1"],
                outcomes=dict(counts[task_id]),
            )
            for task_id in with_samples
        ],
        samples=outcomes,
        vul2safe_version=__version__,
        created_at=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        notes=notes,
        protocol=proto.describe(),
        pass_at_k_sanitized=table_sanitized,
        pass_at_k_higher_of_raw_and_sanitized=best,
    )
