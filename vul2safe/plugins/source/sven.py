"""SVEN (He & Vechev, CCS 2023): real vulnerability fixes, one function before and after.

Layout, as in the SVEN repository: a folder of ``cwe-XXX.jsonl`` files, or a folder with
``train/`` and ``val/`` sub-folders of them (a single file also works). One line per fix:
``func_name, func_src_before, func_src_after, line_changes, char_changes, commit_link,
file_name, vul_type``. ``line_changes``/``char_changes`` (SVEN's own curated localisation of
the fix) are kept verbatim in ``metadata``: they are ground truth for span localisation.
"""

from __future__ import annotations

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
    hub_rows,
    language_of,
    parse_changes,
    read_jsonl,
)
from vul2safe.errors import InputError
from vul2safe.hookspecs import Register
from vul2safe.schema import normalize_cwes

SPLIT_NAMES = ("train", "val", "valid", "validation", "test")
REQUIRED = ("func_src_before", "func_src_after")

CITATION = """\
@inproceedings{he2023sven,
  title     = {Large Language Models for Code: Security Hardening and Adversarial Testing},
  author    = {He, Jingxuan and Vechev, Martin},
  booktitle = {Proceedings of the 2023 ACM SIGSAC Conference on Computer and Communications
               Security (CCS)},
  year      = {2023},
  note      = {arXiv:2302.05319}
}"""


def _split_of(folder: Path) -> str | None:
    return folder.name if folder.name in SPLIT_NAMES else None


def jsonl_files(source: str, root: Path) -> list[tuple[Path, str | None]]:
    """``(file, split)`` in a stable order: the file itself, the folder's ``*.jsonl``, or
    those of its sub-folders (``train`` before ``val``/``test``, then the rest by name)."""
    if root.is_file():
        return [(root, _split_of(root.parent))]
    direct = sorted(root.glob("*.jsonl"))
    if direct:
        return [(path, _split_of(root)) for path in direct]
    subdirs = sorted(
        (d for d in root.iterdir() if d.is_dir()),
        key=lambda d: (SPLIT_NAMES.index(d.name) if d.name in SPLIT_NAMES else 99, d.name),
    )
    found: list[tuple[Path, str | None]] = [
        (path, d.name) for d in subdirs for path in sorted(d.glob("*.jsonl"))
    ]
    if not found:
        raise InputError(f"{source}: {root} holds no *.jsonl files (directly or in train/ or val/)")
    return found


class SvenSource(Source):
    """SVEN's JSONL records → repair pairs (one per line)."""

    name: ClassVar[str] = "sven"
    description: ClassVar[str] = (
        "SVEN: vulnerability-fixing commits (C/C++ and Python, 9 CWEs), one function before "
        "and after the fix, with curated changed lines"
    )
    licence: ClassVar[str] = "MIT"
    homepage: ClassVar[str] = "https://github.com/eth-sri/sven"
    citation: ClassVar[str] = CITATION
    layout_hint: ClassVar[str] = "a folder of cwe-*.jsonl files (or with train/ and val/)"

    def load(self, location: str | None, *, limit: int | None = None) -> list[RepairPair]:
        check_limit(limit)
        where = self.resolve(location)
        ids = PairIds(self.name)
        pairs: list[RepairPair] = []
        for record, origin, split, source_file in self._records(where):
            pairs.append(self.to_pair(record, ids, origin, split, source_file))
            if limit is not None and len(pairs) >= limit:
                break
        return pairs

    def _records(self, where: Path | str) -> Iterator[tuple[dict[str, Any], str, str | None, str]]:
        """``(record, "file: line N", split, file name)`` from local files or the Hub."""
        if isinstance(where, str):
            for index, (hub_split, row) in enumerate(hub_rows(self.name, where)):
                yield row, f"{where} ({hub_split}) row {index}", hub_split, f"hub:{where}"
            return
        for path, split in jsonl_files(self.name, where):
            relative = path.name if split is None else f"{path.parent.name}/{path.name}"
            for number, record in read_jsonl(path):
                yield record, f"{path}: line {number}", split, relative

    def to_pair(
        self,
        record: dict[str, Any],
        ids: PairIds,
        origin: str,
        split: str | None,
        source_file: str,
    ) -> RepairPair:
        """One SVEN-style record → a pair; missing code fields name the line."""
        missing = [f for f in REQUIRED if not isinstance(record.get(f), str)]
        if missing:
            raise InputError(f"{origin}: missing or non-text field(s) {', '.join(missing)}")
        project, sha, url = commit_parts(record.get("commit_link"))
        file_name = record.get("file_name") or None
        func_name = record.get("func_name") or None
        vul_type = record.get("vul_type")
        metadata: dict[str, Any] = {
            "vul_type": vul_type,
            "line_changes": parse_changes(record.get("line_changes"), origin),
            "char_changes": parse_changes(record.get("char_changes"), origin),
            "split": split,
            "source_file": source_file,
        }
        pair = RepairPair(
            pair_id=ids.next(sha, file_name, func_name),
            source=self.name,
            language=language_of(file_name),
            vulnerable=record["func_src_before"],
            fixed=record["func_src_after"],
            cwe=normalize_cwes([vul_type]) if vul_type else [],
            project=project,
            commit=sha,
            commit_url=url,
            file_name=file_name,
            func_name=func_name,
            metadata=metadata,
        )
        self.add_fields(pair, record)
        return pair

    def add_fields(self, pair: RepairPair, record: dict[str, Any]) -> None:
        """Hook for derived sources with extra columns (SafeCoder)."""


@hookimpl
def register_sources(register: Register) -> None:
    register(SvenSource())
