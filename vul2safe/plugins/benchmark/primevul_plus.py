"""PrimeVul+ ``eval``: implicit prompts from real vulnerability fixes, scored for security.

``vul2safe build`` turns vulnerability-fixing commits into PrimeVul+ (a ``DatasetDict`` with
configs ``pairs``, ``sft``, ``rl`` and ``eval``). This benchmark reads the ``eval`` config:
the model gets a prompt that describes what a function does *without naming the weakness*,
and its answer is scanned like any other security benchmark's.

The ``eval`` schema (the builder writes exactly these columns; extra columns are ignored)
------------------------------------------------------------------------------------------
=================  ==========  ===========================================================
column             type        meaning
=================  ==========  ===========================================================
``id``             str or int  unique within the split; the task id is ``primevul-plus/{id}``
``prompt``         str         the implicit prompt, sent as the user turn
``language``       str         ``c``, ``cpp``, ``python``, … (normalised on load)
``cwe``            list[str]   CWE ids of the fixed weakness (``["CWE-787"]``); may be empty
``prompt_style``   str, opt.   ``task-description``, ``docstring-completion``, …
``project``        str, opt.   source project (splits keep a project in one split)
``commit``         str, opt.   the fixing commit (id or URL)
``reference``      str, opt.   the secure (fixed) code: :attr:`Task.reference`
=================  ==========  ===========================================================

Every prompt is sent as a chat turn (``metadata["mode"] = "chat"``): even the
"completion"-style prompts are instructions that *contain* code context, not a bare prefix.

Where the data comes from (first that applies; explicit beats implicit, local beats network)
---------------------------------------------------------------------------------------------
``data_dir`` (``--data-dir``), else ``VUL2SAFE_DATA_DIR``, may be:

* a folder written by ``save_to_disk``: a ``Dataset``; a ``DatasetDict`` whose keys are
  configs (``eval`` is taken) or splits (``test`` is taken, or the only split); or a folder
  holding one such folder per config (``eval/`` is taken);
* a folder with ``eval.parquet`` / ``eval.jsonl``, or ``eval/`` holding Parquet or JSONL
  files (the Hub's file layout; split files ``test-*`` are preferred);
* a Parquet, JSONL or JSON-array file;
* ``hub:OWNER/NAME``: that Hub dataset, config ``eval`` (via ``datasets``, imported lazily);

and a ``primevul-plus/`` sub-folder of a shared data folder is searched too. With neither,
the class's ``hub_id`` is used when set (none is published yet, so the error says what to
pass). A split is chosen the same way everywhere: ``test`` if present, else the only one.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from vul2safe import hookimpl
from vul2safe.benchmark import DATA_DIR_ENV, Benchmark, BenchmarkKind, DatasetUnavailable, Task
from vul2safe.errors import InputError, UsageError
from vul2safe.hookspecs import Register
from vul2safe.languages import normalize_language
from vul2safe.schema import normalize_cwes

__all__ = ["CONFIG", "HUB_PREFIX", "PrimeVulPlus"]

CONFIG = "eval"
HUB_PREFIX = "hub:"
PREFERRED_SPLIT = "test"
REQUIRED = ("id", "prompt", "language", "cwe")
OPTIONAL = ("prompt_style", "project", "commit")
_FILE_SUFFIXES = (".parquet", ".jsonl", ".json")

CITATION = """\
@article{vul2safe2026,
  title   = {Learning to Generate Secure Code via Token-Level Rewards},
  journal = {arXiv preprint arXiv:2602.23407},
  year    = {2026}
}"""


class PrimeVulPlus(Benchmark):
    name: ClassVar[str] = "primevul-plus"
    kind: ClassVar[BenchmarkKind] = BenchmarkKind.security
    description: ClassVar[str] = (
        "PrimeVul+ eval: implicit prompts built from verified real vulnerability fixes "
        "(vulnerability rate)"
    )
    citation: ClassVar[str] = CITATION
    version: ClassVar[str] = "1"
    language: ClassVar[str] = "multi"
    hub_id: ClassVar[str | None] = None
    data_files: ClassVar[tuple[str, ...]] = ("eval.parquet", "eval.jsonl", "eval.json")
    data_subdirs: ClassVar[tuple[str, ...]] = ("primevul-plus",)

    # ------------------------------------------------------------------ locating

    def _where(self, data_dir: Path | str | None) -> tuple[str, str | Path | None]:
        """``("hub", id)``, ``("path", Path)`` or ``("none", None)``, and validate paths."""
        origin = "--data-dir"
        if data_dir is None:
            env = os.environ.get(DATA_DIR_ENV, "").strip()
            if not env:
                return ("hub", self.hub_id) if self.hub_id else ("none", None)
            data_dir, origin = env, DATA_DIR_ENV
        text = str(data_dir)
        if text.startswith(HUB_PREFIX):
            hub = text[len(HUB_PREFIX) :].strip()
            if not hub:
                raise UsageError(f"{origin} {text!r}: name a dataset after 'hub:'")
            return "hub", hub
        path = Path(text).expanduser()
        if not path.exists():
            raise DatasetUnavailable(f"{origin} {path} does not exist; {self._hint()}")
        return "path", path

    def _hint(self) -> str:
        return (
            "pass --data-dir with the output of `vul2safe build` (a save_to_disk folder, "
            f"eval.parquet or eval.jsonl) or hub:OWNER/NAME, or set {DATA_DIR_ENV}"
        )

    def source(self, data_dir: Path | str | None = None) -> str:
        kind, value = self._where(data_dir)
        if kind == "none":
            raise DatasetUnavailable(f"{self.name} has no published Hub copy yet; {self._hint()}")
        if kind == "path":
            return str(Path(value).resolve())  # type: ignore[arg-type]
        return f"{HUB_PREFIX}{value}"

    def _load_records(self, data_dir: Path | str | None) -> list[dict[str, Any]]:
        kind, value = self._where(data_dir)
        if kind == "none":
            raise DatasetUnavailable(f"{self.name} has no published Hub copy yet; {self._hint()}")
        if kind == "hub":
            return _hub_records(str(value), self._hint())
        path = Path(value)  # type: ignore[arg-type]
        if path.is_file():
            return _file_records(path)
        for folder in (path, *(path / sub for sub in self.data_subdirs)):
            found = _folder_records(folder)
            if found is not None:
                return found
        raise DatasetUnavailable(f"{path} holds no PrimeVul+ {CONFIG} data; {self._hint()}")

    # ------------------------------------------------------------------ tasks

    def _to_tasks(self, records: Sequence[dict[str, Any]], needed: int | None) -> list[Task]:
        """Every record is converted: ids must be unique across the whole split."""
        tasks = super()._to_tasks(records, None)
        counts = Counter(task.task_id for task in tasks)
        duplicate = next((tid for tid, n in counts.items() if n > 1), None)
        if duplicate is not None:
            raise InputError(f"{self.name}: id {duplicate!r} appears {counts[duplicate]} times")
        return tasks

    def _to_task(self, record: dict[str, Any], where: str) -> Task:
        missing = [name for name in REQUIRED if record.get(name) is None]
        if missing:
            raise InputError(f"{where}: missing field(s) {', '.join(missing)}")
        ident = record["id"]
        if isinstance(ident, bool) or not isinstance(ident, str | int) or str(ident) == "":
            raise InputError(f"{where}: 'id' must be a non-empty string or an integer")
        prompt, language = record["prompt"], record["language"]
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError(f"{where}: 'prompt' must be a non-empty string")
        if not isinstance(language, str) or not language.strip():
            raise InputError(f"{where}: 'language' must be a non-empty string")
        cwe = record["cwe"]
        if not isinstance(cwe, list | tuple) or not all(isinstance(c, str) for c in cwe):
            raise InputError(f"{where}: 'cwe' must be a list of strings such as ['CWE-787']")
        reference = record.get("reference")
        if reference is not None and not isinstance(reference, str):
            raise InputError(f"{where}: 'reference' must be a string")
        metadata: dict[str, Any] = {"id": ident, "cwe": normalize_cwes(list(cwe))}
        for name in OPTIONAL:
            value = record.get(name)
            if value is not None and not isinstance(value, str):
                raise InputError(f"{where}: {name!r} must be a string")
            metadata[name] = value
        metadata["mode"] = "chat"
        return Task(
            task_id=f"{self.name}/{ident}",
            prompt=prompt,
            language=normalize_language(language),
            metadata=metadata,
            reference=reference,
        )

    def resolve_task_id(self, value: object) -> str:
        """``"abc"`` and ``"primevul-plus/abc"`` name the same task."""
        text = str(value)
        return text if text.startswith(f"{self.name}/") else f"{self.name}/{text}"


# --------------------------------------------------------------------------- readers


def choose_split(names: Sequence[str], where: str) -> str:
    """``eval`` (configs saved as one dict), else ``test``, else the only split."""
    for wanted in (CONFIG, PREFERRED_SPLIT):
        if wanted in names:
            return wanted
    if len(names) == 1:
        return names[0]
    raise InputError(
        f"{where} has splits {', '.join(sorted(names))}; expected '{CONFIG}', "
        f"'{PREFERRED_SPLIT}' or a single split"
    )


def _datasets_module(why: str) -> Any:
    try:
        import datasets
    except ImportError:
        raise DatasetUnavailable(
            f"{why} needs the `datasets` package: pip install 'vul2safe[train]' (or datasets)"
        ) from None
    return datasets


def _rows(dataset: Any) -> list[dict[str, Any]]:
    return [dict(row) for row in dataset.to_list()]


def _is_saved(folder: Path) -> bool:
    return (folder / "dataset_dict.json").is_file() or (
        (folder / "state.json").is_file() and (folder / "dataset_info.json").is_file()
    )


def _saved_records(folder: Path) -> list[dict[str, Any]]:
    """A ``save_to_disk`` folder: a Dataset, or a DatasetDict keyed by configs or splits."""
    datasets = _datasets_module(f"reading {folder}")
    loaded = datasets.load_from_disk(str(folder))
    while isinstance(loaded, datasets.DatasetDict):
        loaded = loaded[choose_split(list(loaded), str(folder))]
    return _rows(loaded)


def _folder_records(folder: Path) -> list[dict[str, Any]] | None:
    """Records from a folder in any accepted layout, or ``None`` when it holds none."""
    if not folder.is_dir():
        return None
    if _is_saved(folder):
        return _saved_records(folder)
    sub = folder / CONFIG
    if sub.is_dir():
        if _is_saved(sub):
            return _saved_records(sub)
        files = _split_files(sub)
        if files:
            return [row for path in files for row in _file_records(path)]
    for name in PrimeVulPlus.data_files:
        if (folder / name).is_file():
            return _file_records(folder / name)
    return None


def _split_files(folder: Path) -> list[Path]:
    """Data files of one split in a Hub-style config folder (``test-00000-of-00001.parquet``)."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in _FILE_SUFFIXES)
    if not files:
        return []
    groups: dict[str, list[Path]] = {}
    for path in files:
        groups.setdefault(path.name.split("-")[0].split(".")[0], []).append(path)
    return groups[choose_split(list(groups), str(folder))]


def _file_records(path: Path) -> list[dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise DatasetUnavailable(
                f"reading {path} needs pyarrow: pip install pyarrow (or 'vul2safe[train]')"
            ) from None
        try:
            return list(pq.read_table(path).to_pylist())
        except Exception as exc:  # pyarrow raises several types for a bad file
            raise InputError(f"cannot read Parquet file {path}: {exc}") from None
    if suffix in (".jsonl", ".json"):
        from vul2safe.benchmark import read_records

        return read_records(path)
    raise InputError(f"{path}: unsupported file type {suffix!r}; use .parquet, .jsonl or .json")


def _hub_records(hub_id: str, hint: str) -> list[dict[str, Any]]:
    datasets = _datasets_module(f"loading {hub_id} from the Hub")
    try:
        loaded = datasets.load_dataset(hub_id, CONFIG)
    except Exception as exc:  # offline, network, auth, missing config: same fix
        raise DatasetUnavailable(
            f"could not load {hub_id} (config {CONFIG}) from the Hub "
            f"({type(exc).__name__}; offline?); {hint}"
        ) from exc
    return _rows(loaded[choose_split(list(loaded), hub_id)])


@hookimpl
def register_benchmarks(register: Register) -> None:
    register(PrimeVulPlus())
