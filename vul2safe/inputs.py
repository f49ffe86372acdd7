"""Turn command-line paths (files, directories, JSONL) into samples or per-item errors.

Nothing is dropped silently: a file we cannot read becomes a :class:`SampleResult` with an
``error`` that the summary counts; only files in a directory whose suffix is not source code
are skipped, and those are counted as ``skipped``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vul2safe.errors import UsageError
from vul2safe.languages import detect_language, normalize_language
from vul2safe.schema import Sample, SampleResult

MAX_FILE_BYTES = 2_000_000
_SKIP_DIRS = {".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv", "venv", ".tox"}


@dataclass
class CollectedInputs:
    """Samples ready to scan (some carrying an input error) and the count of skipped files."""

    samples: list[SampleResult] = field(default_factory=list)
    skipped: int = 0


def collect_inputs(paths: Sequence[str | Path], language: str | None = None) -> CollectedInputs:
    """Read every path. A missing path is a usage error (nothing would be scanned for it)."""
    forced = normalize_language(language) if language else None
    collected = CollectedInputs()
    seen: set[str] = set()
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise UsageError(f"path not found: {raw} (check the spelling, or quote globs)")
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if any(part in _SKIP_DIRS for part in child.relative_to(path).parts):
                    continue
                if not child.is_file():
                    continue
                if forced is None and detect_language(child) is None:
                    collected.skipped += 1
                    continue
                _add(collected, _read_file(child, forced), seen)
        elif path.suffix.lower() == ".jsonl":
            for result in read_jsonl_samples(path, forced):
                _add(collected, result, seen)
        else:
            _add(collected, _read_file(path, forced), seen)
    return collected


def _add(collected: CollectedInputs, result: SampleResult, seen: set[str]) -> None:
    """Keep ids unique: the same file named twice is scanned once."""
    if result.sample.id in seen:
        return
    seen.add(result.sample.id)
    collected.samples.append(result)


def _read_file(path: Path, forced: str | None) -> SampleResult:
    display = str(path)
    language = forced or detect_language(path) or "unknown"
    sample = Sample(id=display, code="", language=language, path=display)
    result = SampleResult(sample)
    if language == "unknown":
        result.error = f"unknown language for {path.suffix or 'a file without suffix'}; pass --lang"
        return result
    try:
        data = path.read_bytes()
    except OSError as exc:
        result.error = f"cannot read file: {exc.strerror or exc}"
        return result
    result.error = check_code_bytes(data)
    if result.error is None:
        sample.code = data.decode("utf-8")
    return result


def check_code_bytes(data: bytes) -> str | None:
    """Why these bytes are not scannable source code, or ``None`` when they are."""
    if not data.strip():
        return "empty file"
    if len(data) > MAX_FILE_BYTES:
        return f"file larger than {MAX_FILE_BYTES // 1_000_000} MB; not scanned"
    if b"\x00" in data[:8192]:
        return "binary file (contains NUL bytes)"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not UTF-8 (invalid byte at offset {exc.start}); re-encode it as UTF-8"
    return None


def read_jsonl_samples(path: Path, forced: str | None = None) -> list[SampleResult]:
    """``{"id", "code", "language"}`` per line; a bad line becomes an error record."""
    results: list[SampleResult] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 (byte {exc.start}); re-encode it as UTF-8") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            results.append(_bad(where, f"malformed JSON ({exc.msg} at column {exc.colno})"))
            continue
        if not isinstance(record, dict):
            results.append(_bad(where, "expected a JSON object per line"))
            continue
        missing = [k for k in ("id", "code") if k not in record]
        if "language" not in record and forced is None:
            missing.append("language")
        if missing:
            results.append(_bad(where, f"missing field(s) {', '.join(missing)}"))
            continue
        language = forced or normalize_language(str(record["language"]))
        sample = Sample(str(record["id"]), "", language, path=f"{path}#{record['id']}")
        result = SampleResult(sample)
        code = record["code"]
        if not isinstance(code, str):
            result.error = "field 'code' must be a string"
        elif not code.strip():
            result.error = "empty code"
        else:
            sample.code = code
        results.append(result)
    return results


def _bad(where: str, message: str) -> SampleResult:
    return SampleResult(Sample(id=where, code="", language="unknown", path=where), error=message)
