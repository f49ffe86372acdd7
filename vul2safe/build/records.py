"""The record every PrimeVul+ stage reads and writes, and the stage files around it.

A :class:`RepairPair` starts as a source record (vulnerable and fixed function of one real
fix) and gathers each stage's output in its own field: ``reflection`` (the teacher's
verdicts), ``evidence`` (scanners before/after), ``spans`` (vulnerable and secure character
spans), ``prompts`` (implicit task prompts). Stages never delete information: a pair a stage
rejects is written to that stage's ``dropped`` file with the reason.

Stage files (``OUTPUT/stages/``): ``<stage>.jsonl`` holds the pairs that survived,
``<stage>.dropped.jsonl`` the dropped ones (``drop_reason`` set), ``<stage>.done`` marks a
finished stage (written last, so an interrupted stage is re-run — its teacher calls come
from the cache). Hashes such as PrimeVul's 128-bit ``func_hash`` are kept as decimal
strings: JSON readers that go through floats would corrupt them.

The readers of stage files (:func:`read_done`, :func:`stage_counts`) live here rather than in
the pipeline, so that a stage (publish) can read earlier stages' files without importing the
pipeline that runs it.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from vul2safe.fileio import atomic_writer, write_text_atomic

STAGES: tuple[str, ...] = ("pairs", "reflect", "localize", "prompts", "assemble", "publish")


@dataclass
class RepairPair:
    """One vulnerability fix: the function before and after, plus what each stage found."""

    pair_id: str  # stable across runs: "<source>:<commit or record id>:<n>"
    source: str  # primevul | sven | safecoder | a plugin's name
    language: str  # vul2safe.languages spelling: c, cpp, python, javascript, ...
    vulnerable: str  # function before the fix
    fixed: str  # function after the fix
    cwe: list[str] = field(default_factory=list)  # normalised "CWE-79"
    cve: str | None = None
    project: str | None = None
    commit: str | None = None
    commit_url: str | None = None
    commit_message: str | None = None
    file_name: str | None = None
    func_name: str | None = None
    date: str | None = None
    diff: str = ""  # unified diff vulnerable → fixed (pairs stage)
    metadata: dict[str, Any] = field(
        default_factory=dict
    )  # source-specific, e.g. SVEN line_changes
    reflection: dict[str, Any] | None = None  # reflect stage: votes, verdict, confidence, reasons
    evidence: dict[str, Any] | None = None  # reflect stage: per scanner before_flagged/after_clean
    spans: dict[str, Any] | None = None  # localize: vulnerable_spans / secure_spans [[start, end]]
    prompts: list[dict[str, Any]] | None = None  # prompts stage: [{style, text}]
    split: str | None = None  # assemble: train | validation | test | eval
    drop_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RepairPair:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def stage_dir(output: Path) -> Path:
    path = output / "stages"
    path.mkdir(parents=True, exist_ok=True)
    return path


def kept_path(output: Path, stage: str) -> Path:
    return stage_dir(output) / f"{stage}.jsonl"


def dropped_path(output: Path, stage: str) -> Path:
    return stage_dir(output) / f"{stage}.dropped.jsonl"


def done_path(output: Path, stage: str) -> Path:
    return stage_dir(output) / f"{stage}.done"


def is_done(output: Path, stage: str) -> bool:
    return done_path(output, stage).exists()


def read_pairs(path: Path) -> list[RepairPair]:
    """Read a stage file; a torn last line (crash mid-write) is ignored."""
    if not path.exists():
        return []
    pairs: list[RepairPair] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            pairs.append(RepairPair.from_dict(json.loads(line)))
        except json.JSONDecodeError:
            if number == len(lines) - 1:
                break  # torn tail of an interrupted append
            raise
    return pairs


def write_pairs(path: Path, pairs: Iterable[RepairPair]) -> None:
    """Write a whole stage file atomically (temp file + rename)."""
    with atomic_writer(path) as handle:
        for pair in pairs:
            handle.write(json.dumps(pair.to_dict(), ensure_ascii=False) + "\n")


def append_pair(path: Path, pair: RepairPair) -> None:
    """Append one record and flush: long stages checkpoint pair by pair."""
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(pair.to_dict(), ensure_ascii=False) + "\n")
        handle.flush()


def iter_ids(pairs: Iterable[RepairPair]) -> Iterator[str]:
    return (pair.pair_id for pair in pairs)


def fold_reason(reason: str | None) -> str:
    """A reason's category, so that counts add up: a leading code (``"too_long: 612
    lines"`` → ``too_long``), else the text before any parenthesis, digits as ``N``."""
    text = (reason or "unknown").strip()
    head, sep, _ = text.partition(": ")
    if sep and head and " " not in head:
        return head
    text = text.split(" (", 1)[0].strip() or text
    return re.sub(r"\d+(?:\.\d+)?", "N", text)


def read_done(output: Path, stage: str) -> dict[str, Any] | None:
    """The done record of a stage, ``None`` when it is not done."""
    path = done_path(output, stage)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "{}")
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def write_done(output: Path, stage: str, record: dict[str, Any]) -> None:
    """Mark ``stage`` done (atomically: a done file is either whole or absent)."""
    text = json.dumps(record, indent=2, default=str, ensure_ascii=False) + "\n"
    write_text_atomic(done_path(output, stage), text)


def stage_counts(output: Path, stage: str) -> dict[str, Any]:
    """Pairs in, kept, dropped and folded drop reasons of a stage, from its files."""
    kept = read_pairs(kept_path(output, stage))
    dropped = read_pairs(dropped_path(output, stage))
    reasons = Counter(fold_reason(p.drop_reason) for p in dropped)
    return {
        "stage": stage,
        "pairs_in": len(kept) + len(dropped),
        "kept": len(kept),
        "dropped": len(dropped),
        "drop_reasons": dict(reasons.most_common()),
    }
