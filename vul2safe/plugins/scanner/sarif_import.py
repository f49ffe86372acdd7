"""``sarif``: findings from SARIF files another tool already wrote (``--sarif FILE``).

This lets results produced elsewhere (CodeQL in CI, a Semgrep Pro run, an earlier
``vul2safe scan --format sarif``) be counted and compared exactly like our own scanners'.
It runs no tool: it reads ``options.sarif_inputs`` and assigns each result to a sample.

**Mapping rule.** The engine hands scanners temporary copies (``s000042.py``), but a SARIF
log names the user's *original* files, so a result is matched by the target's ``sample_id``
(for files: the path as given on the command line; for JSONL: the record id). The first rule
that yields a target wins:

1. *exact*: the result's decoded URI equals a ``sample_id`` (after ``os.path.normpath``), or
   the log is ours and its ``properties.sample_id`` equals one (JSONL samples);
2. *resolved*: the URI made absolute, through the log's ``originalUriBaseIds`` when they pin
   it down, else against the current directory, equals a ``sample_id`` made absolute against
   the current directory;
3. *unique suffix*: the URI's path components end with a ``sample_id``'s components or the
   other way round (``src/app.py`` ↔ ``/ci/work/src/app.py``), whole components only, and
   exactly one sample matches; two candidates is ambiguous and maps to nothing.

Results that match no sample are about files outside this scan and are ignored.
Error-level tool notifications that map to a sample (a log written by our own export records
per-file scanner failures that way) become that sample's error, but only when no finding was
imported for it: an error means "not scanned", and findings prove it was.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from vul2safe import hookimpl
from vul2safe.errors import ScannerNotAvailable
from vul2safe.hookspecs import Register
from vul2safe.languages import SUFFIXES
from vul2safe.sarif import SARIF_VERSION, iter_sarif_results, read_sarif_file, sarif_errors
from vul2safe.scanning import Availability, BatchResult, Scanner, ScanOptions, ScanTarget

NO_INPUT_MESSAGE = "no SARIF input; pass --sarif FILE"


class SarifImportScanner(Scanner):
    name = "sarif"
    languages = frozenset(SUFFIXES)
    description = "Import findings from SARIF files (--sarif FILE): CodeQL, Semgrep, Bandit, ..."
    default = False
    cacheable = False  # the findings come from the SARIF file, not from the code

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._docs: dict[tuple[str, int, int], dict[str, Any]] = {}

    def version(self) -> str:
        return f"sarif-{SARIF_VERSION}"

    def available(self) -> Availability:
        # Nothing to install; a missing --sarif is reported when the scan starts (scan_batch).
        return Availability(True)

    def rules_hash(self, options: ScanOptions) -> str:
        """Which SARIF contents were imported: recorded in every report for provenance."""
        digest = hashlib.sha256()
        for path in options.sarif_inputs:
            digest.update(str(path).encode())
            try:
                digest.update(hashlib.sha256(Path(path).read_bytes()).digest())
            except OSError:
                digest.update(b"<unreadable>")
        return digest.hexdigest()[:16] if options.sarif_inputs else ""

    def scan_batch(
        self, targets: Sequence[ScanTarget], options: ScanOptions, timeout_s: float
    ) -> BatchResult:
        if not options.sarif_inputs:
            # Not ScannerFailed: the engine would bisect the batch and repeat this per file.
            raise ScannerNotAvailable(f"scanner 'sarif' cannot run: {NO_INPUT_MESSAGE}")
        docs = [self._load(Path(p)) for p in options.sarif_inputs]
        return map_sarif_to_targets(docs, targets, cwd=Path.cwd())

    def _load(self, path: Path) -> dict[str, Any]:
        """Parse each file once per scan (the engine calls us once per batch of 5000)."""
        try:
            stat = path.stat()
            key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
        except OSError:
            return read_sarif_file(path)  # raises the explanatory InputError
        with self._lock:
            if key not in self._docs:
                self._docs[key] = read_sarif_file(path)
            return self._docs[key]


class TargetIndex:
    """Lookup tables for the three matching rules of the module docstring."""

    def __init__(self, targets: Sequence[ScanTarget], cwd: Path) -> None:
        self.cwd = str(cwd)
        self.by_id: dict[str, ScanTarget] = {}
        self.by_abs: dict[str, ScanTarget] = {}
        self.by_name: dict[str, list[tuple[tuple[str, ...], ScanTarget]]] = {}
        for target in targets:
            self.by_id.setdefault(target.sample_id, target)
            self.by_id.setdefault(os.path.normpath(target.sample_id), target)
            self.by_abs.setdefault(self._absolute(target.sample_id), target)
            parts = _parts(target.sample_id)
            if parts:
                self.by_name.setdefault(parts[-1], []).append((parts, target))

    def _absolute(self, path: str) -> str:
        return os.path.normpath(os.path.join(self.cwd, path))

    def match(self, path: str, resolved: str | None, sample_id: str | None) -> ScanTarget | None:
        """The target a SARIF location denotes, or ``None`` (see the module docstring)."""
        if not path and not sample_id:
            return None
        for key in (path, os.path.normpath(path) if path else "", sample_id):
            if key and key in self.by_id:
                return self.by_id[key]
        if path:
            absolute = resolved or self._absolute(path)
            if absolute in self.by_abs:
                return self.by_abs[absolute]
        return self._suffix_match(_parts(resolved or path))

    def _suffix_match(self, parts: tuple[str, ...]) -> ScanTarget | None:
        if not parts:
            return None
        found: list[ScanTarget] = []
        for target_parts, target in self.by_name.get(parts[-1], []):
            shorter = min(len(parts), len(target_parts))
            if parts[-shorter:] == target_parts[-shorter:] and target not in found:
                found.append(target)
        return found[0] if len(found) == 1 else None


def _parts(path: str) -> tuple[str, ...]:
    """Path components for suffix comparison: normalised, without the root, ``.`` and the
    leading ``..`` (``../proj/app.py`` says nothing about the parent's name)."""
    normalised = os.path.normpath(path.replace("\\", "/")) if path else ""
    parts = [p for p in normalised.split("/") if p and p != "."]
    while parts and parts[0] == "..":
        parts.pop(0)
    return tuple(parts)


def map_sarif_to_targets(
    docs: Sequence[dict[str, Any]], targets: Sequence[ScanTarget], *, cwd: Path
) -> BatchResult:
    """Assign every result of every log to a target; findings are re-pathed to the target's
    temp file because that is the key the engine maps back by."""
    index = TargetIndex(targets, cwd)
    result = BatchResult()
    for doc in docs:
        for imported in iter_sarif_results(doc):
            target = index.match(imported.finding.path, imported.resolved, imported.sample_id)
            if target is None:
                continue
            key = str(target.path)
            result.findings.setdefault(key, []).append(replace(imported.finding, path=key))
    for doc in docs:
        for error in sarif_errors(doc):
            target = index.match(error.path, error.resolved, error.sample_id)
            if target is None:
                continue
            key = str(target.path)
            if key in result.findings:
                continue
            message = f"{error.scanner}: {error.message}"
            previous = result.errors.get(key)
            result.errors[key] = message if previous is None else f"{previous}; {message}"
    return result


@hookimpl
def register_scanners(register: Register) -> None:
    register(SarifImportScanner())
