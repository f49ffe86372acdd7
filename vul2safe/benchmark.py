"""The benchmark contract: what a benchmark plugin registers and what its tasks look like.

A benchmark turns a dataset into :class:`Task` objects. Functional benchmarks also know how
to glue a model's code and the task's tests into one runnable program (:meth:`program`);
security benchmarks only hand out prompts. Everything a result depends on is recorded: the
benchmark's ``name`` and ``version`` (of our prompt/program assembly) and
:func:`dataset_hash`, the content hash of the tasks that were actually loaded.

Data location, one documented precedence (explicit beats implicit, local beats network):

1. ``data_dir`` passed to :meth:`Benchmark.load` (``--data-dir``): a folder holding the
   benchmark's file, or the file itself;
2. the ``VUL2SAFE_DATA_DIR`` environment variable (same meaning);
3. the Hugging Face Hub (``datasets`` imported lazily; fails with a message naming 1 and 2).

Files may be a JSON array of records or JSONL (one record per line).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar

from vul2safe.errors import InputError, UsageError, Vul2SafeError
from vul2safe.languages import normalize_language

__all__ = [
    "DATA_DIR_ENV",
    "Benchmark",
    "BenchmarkKind",
    "DatasetUnavailable",
    "Task",
    "dataset_hash",
    "jsonl_rows",
    "read_records",
    "restrict_languages",
]

DATA_DIR_ENV = "VUL2SAFE_DATA_DIR"


class DatasetUnavailable(Vul2SafeError):
    """A benchmark's data could not be found locally nor fetched from the Hub."""


class BenchmarkKind(str, Enum):
    """What a benchmark measures; decides which scorers apply to its samples."""

    security = "security"
    functional = "functional"
    both = "both"

    def __str__(self) -> str:
        return self.value


@dataclass
class Task:
    """One problem handed to a model.

    ``prompt`` is what the model is asked (benchmark-specific: see the plugin's docstring);
    ``tests`` is the test code a functional program ends with; ``reference`` is the
    canonical answer in the same form a model's answer takes, so that
    ``benchmark.program(task, task.reference)`` must pass.
    """

    task_id: str
    prompt: str
    language: str
    metadata: dict[str, Any] = field(default_factory=dict)
    tests: str | None = None
    reference: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def dataset_hash(tasks: Sequence[Task]) -> str:
    """SHA-256 of the tasks as canonical JSON: two runs compare only if this matches.

    Canonical means sorted keys, no insignificant whitespace and UTF-8, so the hash depends
    on the content only, not on dict order or on where the data was loaded from.
    """
    payload = json.dumps(
        [task.to_dict() for task in tasks],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return "sha256:" + hashlib.sha256(payload.encode("utf-8")).hexdigest()


def read_records(path: Path) -> list[dict[str, Any]]:
    """Records from a JSON array or a JSONL file (detected by the first non-blank char)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
        bad = next((i for i, row in enumerate(data) if not isinstance(row, dict)), None)
        if bad is not None:
            raise InputError(f"{path}: item {bad} of the JSON array is not an object")
        return list(data)
    return [row for _, row in jsonl_rows(path, text)]


def jsonl_rows(path: Path, text: str) -> list[tuple[int, dict[str, Any]]]:
    """The objects of JSONL ``text`` (read from ``path``) with their line numbers, blank
    lines skipped; a line that is not a JSON object raises :class:`InputError` naming it."""
    rows: list[tuple[int, dict[str, Any]]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{number}: invalid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise InputError(f"{path}:{number}: expected a JSON object")
        rows.append((number, row))
    return rows


def restrict_languages(
    tasks: Sequence[Task], languages: Sequence[str] | None, benchmark: str
) -> list[Task]:
    """The tasks in ``languages`` (``--languages``), dataset order kept.

    Names are normalised (``C++`` → ``cpp``) and may be comma-separated. A language with no
    task is an error naming the ones present: a typo must not silently evaluate nothing.
    """
    if languages is None:
        return list(tasks)
    wanted: list[str] = []
    for item in languages:
        wanted += [normalize_language(part) for part in str(item).split(",") if part.strip()]
    if not wanted:
        raise UsageError("--languages is empty; name at least one language or leave it out")
    present = sorted({task.language for task in tasks})
    for language in dict.fromkeys(wanted):
        if language not in present:
            close = difflib.get_close_matches(language, present, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UsageError(
                f"{benchmark} has no task in language {language!r}.{hint} "
                f"Its languages: {', '.join(present) or '(none)'}"
            )
    keep = set(wanted)
    return [task for task in tasks if task.language in keep]


class Benchmark:
    """Base class of benchmark plugins; subclasses set the attributes and implement
    :meth:`_load_records` and :meth:`_to_task` (and :meth:`program` when functional).
    :meth:`load` (language filter, then limit) is shared; a benchmark whose conversion needs
    every record at once overrides :meth:`_to_tasks` instead of :meth:`load`."""

    name: ClassVar[str] = ""
    kind: ClassVar[BenchmarkKind] = BenchmarkKind.security
    description: ClassVar[str] = ""
    hub_id: ClassVar[str | None] = None
    hub_split: ClassVar[str] = "train"
    citation: ClassVar[str] = ""
    #: version of OUR task format (prompt and program assembly); bump when it changes
    version: ClassVar[str] = "1"
    language: ClassVar[str] = "python"
    #: file names searched for in a data folder, first match wins
    data_files: ClassVar[tuple[str, ...]] = ()
    #: sub-folders of a data folder also searched (a shared ``VUL2SAFE_DATA_DIR``)
    data_subdirs: ClassVar[tuple[str, ...]] = ()

    # ---------------------------------------------------------------- locating the data

    def _candidates(self, folder: Path) -> list[Path]:
        dirs = [folder, *(folder / sub for sub in self.data_subdirs)]
        return [d / name for d in dirs for name in self.data_files]

    def locate(self, data_dir: Path | str | None = None) -> Path | None:
        """The local file :meth:`load` reads, or ``None`` when it would use the Hub.

        Raises :class:`DatasetUnavailable` when a folder or file was named but holds no data,
        rather than silently falling back to the network.
        """
        origin = "--data-dir"
        if data_dir is None:
            env = os.environ.get(DATA_DIR_ENV, "").strip()
            if not env:
                return None
            data_dir, origin = env, DATA_DIR_ENV
        path = Path(data_dir).expanduser()
        if path.is_file():
            return path
        if path.is_dir():
            for candidate in self._candidates(path):
                if candidate.is_file():
                    return candidate
            wanted = " or ".join(self.data_files)
            raise DatasetUnavailable(
                f"{origin} {path} holds no {wanted} for {self.name}; pass --data-dir DIR "
                f"holding {self.data_files[0]} (or the file itself)"
            )
        raise DatasetUnavailable(
            f"{origin} {path} does not exist; pass --data-dir DIR holding "
            f"{self.data_files[0]} (or the file itself)"
        )

    def source(self, data_dir: Path | str | None = None) -> str:
        """Where :meth:`load` reads from, for the result file (a path or ``hub:ID``)."""
        path = self.locate(data_dir)
        return str(path.resolve()) if path is not None else f"hub:{self.hub_id}"

    def _hub_records(self) -> list[dict[str, Any]]:
        hint = (
            f"pass --data-dir DIR holding {self.data_files[0]} or set {DATA_DIR_ENV}"
            if self.data_files
            else f"set {DATA_DIR_ENV}"
        )
        if self.hub_id is None:
            raise DatasetUnavailable(f"{self.name} has no Hub copy; {hint}")
        message = f"could not load {self.hub_id} from the Hub (offline?); {hint}"
        try:
            import datasets  # heavy: only when the Hub is really needed
        except ImportError:
            raise DatasetUnavailable(
                f"{message} (the `datasets` package is not installed)"
            ) from None
        try:
            rows = datasets.load_dataset(self.hub_id, split=self.hub_split)
        except Exception as exc:  # network, auth, offline mode: all mean the same to the user
            raise DatasetUnavailable(f"{message} ({type(exc).__name__})") from exc
        return [dict(row) for row in rows]

    def _load_records(self, data_dir: Path | str | None) -> list[dict[str, Any]]:
        path = self.locate(data_dir)
        return self._hub_records() if path is None else read_records(path)

    # ---------------------------------------------------------------- the contract

    def _to_task(self, record: dict[str, Any], where: str) -> Task:
        """One raw record → a Task; ``where`` names the record in error messages."""
        raise NotImplementedError

    def _to_tasks(self, records: Sequence[dict[str, Any]], needed: int | None) -> list[Task]:
        """All raw records → Tasks, in dataset order.

        ``needed``: only the first ``needed`` tasks will be used (``None``: all), so records
        past it need not be converted. Override to look at the records as a whole (e.g. to
        check that ids are unique): such a conversion ignores ``needed`` and converts all.
        """
        if needed is not None:
            records = records[:needed]  # cheap path: convert only what is used
        return [self._to_task(row, f"{self.name} record {i}") for i, row in enumerate(records)]

    def load(
        self,
        data_dir: Path | str | None = None,
        limit: int | None = None,
        languages: Sequence[str] | None = None,
    ) -> list[Task]:
        """The benchmark's tasks in dataset order: only ``languages`` when given, then the
        first ``limit``."""
        if limit is not None and limit < 1:
            raise UsageError(f"--limit must be >= 1, got {limit}")
        records = self._load_records(data_dir)
        tasks = self._to_tasks(records, limit if languages is None else None)
        tasks = restrict_languages(tasks, languages, self.name)
        return tasks[:limit] if limit is not None else tasks

    def resolve_task_id(self, value: object) -> str:
        """Map a task id as found in a samples file to the benchmark's own spelling."""
        return str(value)

    def completion_prefix(self, task: Task) -> str:
        """The code a completion-mode answer continues (prepended to it in the program)."""
        return ""

    def program(self, task: Task, code: str, *, standalone: bool = False) -> str:
        """One runnable program from a model's ``code`` and the task's tests.

        ``standalone=False``: ``code`` continues :meth:`completion_prefix`;
        ``True``: ``code`` is a whole file (a chat answer in a fenced block).
        """
        raise NotImplementedError(f"{self.name} is not a functional benchmark")

    def describe(self) -> dict[str, Any]:
        """The benchmark card fields recorded in result files."""
        return {
            "name": self.name,
            "kind": str(self.kind),
            "version": self.version,
            "description": self.description,
            "hub_id": self.hub_id,
        }
