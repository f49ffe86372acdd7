"""PrimeVul (Ding et al., ICSE 2025): C/C++ functions from vulnerability-fixing commits.

Two published layouts, both read here:

* **paired** (``primevul_{train,valid,test}_paired.jsonl``): two adjacent lines per fix,
  the vulnerable function (``target: 1``) then its fixed version (``target: 0``), same
  ``commit_id``. Read in one streaming pass.
* **unpaired** (``primevul_{train,valid,test}.jsonl``): every function on its own line.
  Vulnerable functions are joined to a fixed function of the same commit, same
  ``file_name`` and same function name (PrimeVul has no name column, so the name is read
  from the signature); when several qualify, the most similar text wins. Unmatched
  vulnerable functions are counted and logged, not invented.

A folder may hold the split files (paired files are preferred when both layouts are there)
or any ``*.jsonl``; a single file is recognised by its content (a file named ``*_paired*``
must be paired, and a broken pairing is an error naming the line).

``func_hash``/``file_hash`` are 128-bit integers: they are read with Python's ``json``
(exact integers) and stored as decimal strings in ``metadata``; ``idx`` values may repeat
and are never used as ids. A Hub id (e.g. the community mirror ``colin/PrimeVul``) is
fetched as raw files with ``huggingface_hub`` rather than through ``datasets``: Arrow has no
128-bit integer type and would corrupt the hashes.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from vul2safe import hookimpl
from vul2safe.build.records import RepairPair
from vul2safe.build.source import (
    PairIds,
    Source,
    check_limit,
    commit_parts,
    language_of,
    read_jsonl,
)
from vul2safe.errors import InputError
from vul2safe.hookspecs import Register
from vul2safe.schema import normalize_cwes

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
PAIRED_FILES = tuple(f"primevul_{split}_paired.jsonl" for split in SPLITS)
UNPAIRED_FILES = tuple(f"primevul_{split}.jsonl" for split in SPLITS)
REQUIRED = ("commit_id", "target", "func")

CITATION = """\
@inproceedings{ding2025primevul,
  title     = {Vulnerability Detection with Code Language Models: How Far Are We?},
  author    = {Ding, Yangruibo and Fu, Yanjun and Ibrahim, Omniyyah and Sitawarin, Chawin
               and Chen, Xinyun and Alomair, Basel and Wagner, David and Ray, Baishakhi
               and Chen, Yizheng},
  booktitle = {Proceedings of the 47th IEEE/ACM International Conference on Software
               Engineering (ICSE)},
  year      = {2025},
  note      = {arXiv:2403.18624}
}"""

Row = tuple[int, dict[str, Any]]  # (line number, record)

# an identifier (C++ qualified names allowed) directly followed by "("
_CALLISH = re.compile(r"(~?[A-Za-z_]\w*(?:\s*::\s*~?[A-Za-z_]\w*)*)\s*\(\s*([A-Za-z_]\w*)?")
_NOT_NAMES = frozenset(
    {"if", "for", "while", "switch", "return", "sizeof", "defined", "alignas", "decltype"}
    | {"__attribute__", "__attribute", "__declspec", "__typeof__", "typeof", "throw"}
    | {"void", "char", "short", "int", "long", "float", "double", "signed", "unsigned"}
    | {"const", "static", "inline", "struct", "union", "enum", "noexcept", "operator"}
)
_MACRO = re.compile(r"^[A-Z][A-Z0-9_]*$")
_SHA_PREFIX = re.compile(r"[0-9a-fA-F]{7,64}\b")
_SPLIT_IN_NAME = re.compile(r"primevul_(train|valid|test)")


def function_name(code: str) -> str | None:
    """The defined function's name from its signature (text before the first ``{``).

    Definition macros (``SYSCALL_DEFINE3(open, ...)``, ``PHP_FUNCTION(name)``) would make
    every function of a file look alike, so for an all-caps name the first argument is
    kept too (``PHP_FUNCTION(fread``), unless a real name follows the macro at the top
    level (``AP_DECLARE(int) ap_run(...)`` → ``ap_run``).
    """
    head = code.split("{", 1)[0]
    macro: str | None = None
    for match in _CALLISH.finditer(head):
        name = re.sub(r"\s+", "", match.group(1))
        if name.rsplit("::", 1)[-1] in _NOT_NAMES:
            continue
        prefix = head[: match.start()]
        if prefix.count("(") != prefix.count(")"):
            continue  # inside a macro's or an attribute's parentheses
        if not _MACRO.match(name):
            return name
        if macro is None:
            macro = f"{name}({match.group(2)}" if match.group(2) else name
    return macro


def _exact_hash(value: Any, where: str) -> str | None:
    """A 128-bit hash as a decimal string; a float means a lossy reader already ran."""
    if value is None or value == "":
        return None
    if isinstance(value, bool | float):
        raise InputError(
            f"{where}: hash {value!r} is not an integer (read through a float?); "
            "read PrimeVul with Python's json, never through a float"
        )
    if isinstance(value, int):
        return str(value)
    text = str(value).strip()
    if not text.lstrip("-").isdigit():
        raise InputError(f"{where}: hash {value!r} is not an integer")
    return text


def _split_of(path: Path) -> str | None:
    match = _SPLIT_IN_NAME.search(path.name)
    return match.group(1) if match else None


def _check(path: Path, number: int, record: dict[str, Any]) -> None:
    missing = [f for f in REQUIRED if f not in record]
    if missing:
        raise InputError(f"{path}: line {number} lacks field(s) {', '.join(missing)}")
    if record["target"] not in (0, 1) or isinstance(record["target"], bool):
        raise InputError(f"{path}: line {number}: target must be 0 or 1, got {record['target']!r}")
    if not isinstance(record["func"], str):
        raise InputError(f"{path}: line {number}: func must be text")


def _rows(path: Path) -> Iterator[Row]:
    for number, record in read_jsonl(path):
        _check(path, number, record)
        yield number, record


def _pairing_error(path: Path, rows: list[Row]) -> str | None:
    """Why ``rows`` are not in the paired layout (naming the line), or ``None`` if they are."""
    for index in range(0, len(rows), 2):
        number, vulnerable = rows[index]
        if vulnerable["target"] != 1:
            return f"{path}: line {number}: expected a vulnerable function (target 1)"
        if index + 1 == len(rows):
            return f"{path}: line {number}: vulnerable function without its fixed version"
        next_number, fixed = rows[index + 1]
        if fixed["target"] != 0 or fixed["commit_id"] != vulnerable["commit_id"]:
            return (
                f"{path}: line {next_number}: expected the fixed version (target 0) of "
                f"commit {vulnerable['commit_id']} from line {number}"
            )
    return None


class PrimeVulSource(Source):
    """PrimeVul v0.1, paired or unpaired JSONL → repair pairs."""

    name: ClassVar[str] = "primevul"
    description: ClassVar[str] = (
        "PrimeVul: C/C++ functions from vulnerability-fixing commits (140+ CWEs) with "
        "accurate labels and chronological splits"
    )
    licence: ClassVar[str] = "MIT"
    homepage: ClassVar[str] = "https://github.com/DLVulDet/PrimeVul"
    citation: ClassVar[str] = CITATION
    layout_hint: ClassVar[str] = "a folder holding primevul_*[_paired].jsonl, or one such file"

    def load(self, location: str | None, *, limit: int | None = None) -> list[RepairPair]:
        check_limit(limit)
        where = self.resolve(location)
        root = self._hub_folder(where) if isinstance(where, str) else where
        ids = PairIds(self.name)
        pairs: list[RepairPair] = []
        for path in self._files(root):
            remaining = None if limit is None else limit - len(pairs)
            pairs.extend(self._load_file(path, ids, remaining))
            if limit is not None and len(pairs) >= limit:
                break
        return pairs

    # ---------------------------------------------------------------- files

    def _files(self, root: Path) -> list[Path]:
        if root.is_file():
            return [root]
        for names in (PAIRED_FILES, UNPAIRED_FILES):
            found = [root / name for name in names if (root / name).is_file()]
            if found:
                return found
        found = sorted(root.glob("*.jsonl"))
        if not found:
            raise InputError(
                f"{self.name}: {root} holds no primevul_*.jsonl (or other .jsonl) file"
            )
        return found

    def _hub_folder(self, hub_id: str) -> Path:
        """Download the paired split files of a Hub copy (raw JSONL, hashes intact)."""
        message = f"{self.name}: {hub_id!r} is no local path, and fetching it from the Hub failed"
        hint = f"; download PrimeVul and pass {self.name}:PATH instead"
        try:
            from huggingface_hub import snapshot_download
        except ImportError:
            raise InputError(f"{message} (huggingface_hub is not installed){hint}") from None
        try:
            folder = snapshot_download(
                hub_id, repo_type="dataset", allow_patterns=["*_paired.jsonl"]
            )
        except Exception as exc:  # offline, missing, auth: the same advice for all of them
            raise InputError(f"{message} ({type(exc).__name__}){hint}") from exc
        return Path(folder)

    def _load_file(self, path: Path, ids: PairIds, limit: int | None) -> list[RepairPair]:
        if "_paired" in path.name:
            return self._read_paired(path, ids, limit)
        # first pass keeps only (target, commit): the unpaired train split is ~470 MB
        skeleton = [
            (number, {"target": r["target"], "commit_id": r["commit_id"]})
            for number, r in _rows(path)
        ]
        if skeleton and _pairing_error(path, skeleton) is None:
            return self._read_paired(path, ids, limit)
        wanted = {str(r["commit_id"]) for _, r in skeleton if r["target"] == 1}
        del skeleton
        rows = [row for row in _rows(path) if str(row[1]["commit_id"]) in wanted]
        return self._join(path, rows, ids, limit)

    # ---------------------------------------------------------------- paired layout

    def _read_paired(self, path: Path, ids: PairIds, limit: int | None) -> list[RepairPair]:
        """Stream a paired file two lines at a time (the train split is ~50 MB)."""
        pairs: list[RepairPair] = []
        pending: list[Row] = []
        for row in _rows(path):
            pending.append(row)
            if len(pending) < 2:
                continue
            error = _pairing_error(path, pending)
            if error:
                raise InputError(f"{error} (paired layout)")
            pairs.append(self._to_pair(path, pending[0], pending[1], ids, "paired"))
            pending = []
            if limit is not None and len(pairs) >= limit:
                return pairs
        if pending:
            raise InputError(f"{_pairing_error(path, pending)} (paired layout)")
        return pairs

    # ---------------------------------------------------------------- unpaired layout

    def _join(
        self, path: Path, rows: list[Row], ids: PairIds, limit: int | None
    ) -> list[RepairPair]:
        """Join each vulnerable function to a fixed one of its commit (file + name match)."""
        by_commit: dict[str, list[Row]] = {}
        for row in rows:
            by_commit.setdefault(str(row[1]["commit_id"]), []).append(row)
        pairs: list[RepairPair] = []
        unmatched = 0
        for group in by_commit.values():
            fixed_rows = [row for row in group if row[1]["target"] == 0]
            used: set[int] = set()
            for vulnerable in (row for row in group if row[1]["target"] == 1):
                match = self._best_fixed(vulnerable, fixed_rows, used)
                if match is None:
                    unmatched += 1
                    continue
                used.add(match[0])
                pairs.append(self._to_pair(path, vulnerable, match, ids, "joined"))
                if limit is not None and len(pairs) >= limit:
                    return pairs
        if unmatched:
            log.warning(
                "%s: %d vulnerable function(s) in %s have no fixed function of the same "
                "commit, file and name; skipped",
                self.name,
                unmatched,
                path,
            )
        return pairs

    @staticmethod
    def _best_fixed(vulnerable: Row, fixed_rows: list[Row], used: set[int]) -> Row | None:
        record = vulnerable[1]
        name = function_name(record["func"])
        candidates = [
            row
            for row in fixed_rows
            if row[0] not in used
            and row[1].get("file_name") == record.get("file_name")
            and function_name(row[1]["func"]) == name
        ]
        if len(candidates) <= 1:
            return candidates[0] if candidates else None
        return max(
            candidates,
            key=lambda row: difflib.SequenceMatcher(
                None, record["func"], row[1]["func"], autojunk=False
            ).ratio(),
        )

    # ---------------------------------------------------------------- one pair

    def _to_pair(
        self, path: Path, vulnerable: Row, fixed: Row, ids: PairIds, layout: str
    ) -> RepairPair:
        (v_line, v), (f_line, f) = vulnerable, fixed
        where_v, where_f = f"{path}: line {v_line}", f"{path}: line {f_line}"
        raw_commit = str(v["commit_id"])
        sha = _SHA_PREFIX.match(raw_commit)  # copies sometimes carry "?w=1" or "#diff-..."
        commit = sha.group(0).lower() if sha else raw_commit
        project, _, url = commit_parts(v.get("commit_url"))
        file_name = v.get("file_name") or None
        func_name = function_name(v["func"])
        cwe = v.get("cwe") or []
        cve = v.get("cve")
        if isinstance(cve, list):
            cve = ", ".join(str(c) for c in cve if c)
        metadata: dict[str, Any] = {
            "layout": layout,
            "commit_id": raw_commit,
            "split": _split_of(path),
            "source_file": path.name,
            "vulnerable_line": v_line,
            "fixed_line": f_line,
            "vulnerable_idx": v.get("idx"),
            "fixed_idx": f.get("idx"),
            "vulnerable_func_hash": _exact_hash(v.get("func_hash"), where_v),
            "fixed_func_hash": _exact_hash(f.get("func_hash"), where_f),
            "vulnerable_file_hash": _exact_hash(v.get("file_hash"), where_v),
            "fixed_file_hash": _exact_hash(f.get("file_hash"), where_f),
            "primevul_project": v.get("project"),
            "project_url": v.get("project_url") or None,
            "cve_desc": v.get("cve_desc") or None,
            "nvd_url": v.get("nvd_url") or None,
        }
        return RepairPair(
            pair_id=ids.next(commit, file_name, func_name),
            source=self.name,
            language=language_of(file_name, default="c"),
            vulnerable=v["func"],
            fixed=f["func"],
            cwe=normalize_cwes(cwe if isinstance(cwe, list) else [cwe]),
            cve=cve or None,
            project=project or v.get("project") or None,
            commit=commit,
            commit_url=url or v.get("commit_url") or None,
            commit_message=v.get("commit_message") or None,
            file_name=file_name,
            func_name=func_name,
            metadata=metadata,
        )


@hookimpl
def register_sources(register: Register) -> None:
    register(PrimeVulSource())
