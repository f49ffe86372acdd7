"""The scanner contract and the engine that runs scanners over many samples.

A scanner plugin implements :class:`Scanner`: ``scan`` receives a **batch** of files and runs
its tool once for all of them (tool start-up dominates per-sample runs: ~0.2 s for the
Semgrep engine, ~2.5 s for the Semgrep CLI).
The engine around it does what every scanner would otherwise repeat:

1. write each sample to a private work directory (so JSONL samples and files look alike);
2. serve unchanged code from the content-addressed cache;
3. run each scanner's misses as one batch (scanners in parallel, ``jobs`` threads);
4. when a batch crashes or times out, split it in halves and retry until the file that breaks
   the tool is isolated; that file gets an error record, every other file is still scanned;
5. map findings back to each sample by path.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from vul2safe.cache import Cache, content_key
from vul2safe.errors import ScannerFailed, ScannerNotAvailable, ScannerTimeout, UsageError
from vul2safe.languages import extension_for
from vul2safe.schema import Finding, Sample, SampleResult, ScanReport, Severity


@dataclass(frozen=True)
class Availability:
    """Whether a scanner's tool can run here, and if not, how to fix it."""

    ok: bool
    reason: str = ""


@dataclass(frozen=True)
class ScanTarget:
    """One sample as the tool sees it: a file in the batch's work directory."""

    sample_id: str
    language: str
    path: Path


@dataclass
class ScanOptions:
    """Knobs shared by all scanners; each scanner reads the ones it understands."""

    semgrep_configs: list[str] = field(default_factory=list)
    semgrep_packs: list[str] = field(default_factory=lambda: ["icd"])
    sarif_inputs: list[Path] = field(default_factory=list)
    jobs: int = max(1, os.cpu_count() or 1)
    batch_timeout_s: float = 600.0
    file_timeout_s: float = 60.0
    max_batch: int = 5000
    use_cache: bool = True


@dataclass
class BatchResult:
    """Findings keyed by target path (absent = clean), and per-file tool errors.

    ``errors`` are the tool's own verdicts on a file (e.g. "cannot parse"): deterministic, so
    they are cached like findings. ``failed`` marks files on which the tool itself crashed or
    timed out; those may be transient and are never cached.
    """

    findings: dict[str, list[Finding]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    failed: set[str] = field(default_factory=set)

    def update(self, other: BatchResult) -> None:
        """Add another part of the same batch (disjoint files) to this one."""
        self.findings.update(other.findings)
        self.errors.update(other.errors)
        self.failed.update(other.failed)


class Scanner:
    """Base class for scanner plugins. Subclasses set the class attributes and implement
    :meth:`version`, :meth:`available` and :meth:`scan_batch`."""

    name: ClassVar[str]
    languages: ClassVar[frozenset[str]]
    description: ClassVar[str] = ""
    #: run when the user names no scanner (off for ones that need extra input, like ``sarif``)
    default: ClassVar[bool] = True
    #: False when results depend on something outside the code (e.g. an imported SARIF file)
    cacheable: ClassVar[bool] = True
    #: the verdict-changing options the plugin passes its tool (e.g. "suppression comments
    #: ignored"); part of the cache key, so changing them never serves a stale verdict
    options_id: ClassVar[str] = ""

    def version(self) -> str:
        raise NotImplementedError

    def available(self) -> Availability:
        raise NotImplementedError

    def rules_hash(self, options: ScanOptions) -> str:
        """Hash of the rules in force; part of the cache key and of every report."""
        return ""

    def scan_batch(
        self, targets: Sequence[ScanTarget], options: ScanOptions, timeout_s: float
    ) -> BatchResult:
        """Run the tool once over all ``targets``. Raise :class:`ScannerFailed` (or
        :class:`ScannerTimeout`) when the tool as a whole fails on this batch."""
        raise NotImplementedError


def run_tool(
    cmd: Sequence[str], *, timeout_s: float, cwd: Path | None = None, tool: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run an external tool; on timeout kill its whole process group (tools fork workers)."""
    name = tool or Path(cmd[0]).name
    try:
        proc = subprocess.Popen(
            list(cmd),
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise ScannerNotAvailable(f"{name}: executable {cmd[0]!r} not found") from exc
    try:
        stdout, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise ScannerTimeout(f"{name} did not finish within {timeout_s:.0f} s") from None
    except BaseException:
        _kill_group(proc)
        raise
    return subprocess.CompletedProcess(list(cmd), proc.returncode, stdout, stderr)


def _kill_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()


@contextlib.contextmanager
def batch_directory(targets: Sequence[ScanTarget]) -> Iterator[tuple[Path, dict[str, str]]]:
    """A fresh directory holding exactly this batch (hard links, else copies).

    Some tools are much faster given one directory than thousands of file arguments (Semgrep:
    15 s vs 80 s for 600 files here). Yields the directory and a map from each linked path to
    the target's own path, so findings can be keyed the way the engine expects.
    """
    root = Path(tempfile.mkdtemp(prefix="vul2safe-batch-"))
    mapping: dict[str, str] = {}
    try:
        for target in targets:
            link = root / target.path.name
            try:
                os.link(target.path, link)
            except OSError:
                shutil.copyfile(target.path, link)
            mapping[str(link)] = str(target.path)
        yield root, mapping
    finally:
        shutil.rmtree(root, ignore_errors=True)


#: maps a path as a tool printed it to the target's key (``None``: not one of ours)
PathFor = Callable[[str], str | None]


def path_lookup(targets: Sequence[ScanTarget], cwd: str | None = None) -> PathFor:
    """Map whatever path form a tool prints back to the exact ``str(target.path)`` the engine
    keys results by.

    The printed path may be relative to ``cwd`` (the tool's working directory), absolute, or
    reached through a symlinked directory (``/tmp`` → ``/private/tmp``): both sides are compared
    by their real path. A path that is none of ``targets`` maps to ``None``. Each distinct
    printed path is resolved once (a file with many findings is printed many times).
    """
    by_real = {os.path.realpath(t.path): str(t.path) for t in targets}
    seen: dict[str, str | None] = {}

    def path_for(printed: str) -> str | None:
        if printed not in seen:
            full = os.path.join(cwd, printed) if cwd and not os.path.isabs(printed) else printed
            seen[printed] = by_real.get(os.path.realpath(full))
        return seen[printed]

    return path_for


def path_as_printed(printed: str) -> str | None:
    """The identity :data:`PathFor`: keys results by the path exactly as the tool printed it
    (the default of output parsers, e.g. when reading recorded tool output)."""
    return printed


def last_line(text: str) -> str:
    """The last non-empty line of a tool's stderr: usually the one that says what broke."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no output)"


# --------------------------------------------------------------------------- the engine


ProgressCallback = Callable[[str, int], None]


@dataclass
class ScanRun:
    """Everything one ``scan`` produced: per-sample results and which scanners ran."""

    results: list[SampleResult]
    scanners: dict[str, dict[str, str]]
    skipped_scanners: dict[str, str]
    duration_s: float


def select_scanners(
    names: Sequence[str] | None, languages: set[str]
) -> tuple[list[Scanner], dict[str, str]]:
    """Resolve ``--scanner`` names (or the defaults) to available scanners.

    A scanner the user named must be available (else a one-line error saying how to install
    it); a default scanner that is missing is skipped and reported, not fatal.
    """
    from vul2safe import plugins

    skipped: dict[str, str] = {}
    chosen: list[Scanner] = []
    if names:
        for name in dict.fromkeys(names):
            scanner = plugins.scanners.get(name)
            status = scanner.available()
            if not status.ok:
                raise ScannerNotAvailable(f"scanner {name!r} cannot run: {status.reason}")
            chosen.append(scanner)
        return chosen, skipped
    for scanner in plugins.scanners:
        if not scanner.default or not (scanner.languages & languages):
            continue
        status = scanner.available()
        if status.ok:
            chosen.append(scanner)
        else:
            skipped[scanner.name] = status.reason
    return chosen, skipped


def scan_samples(
    samples: Sequence[SampleResult],
    scanner_names: Sequence[str] | None = None,
    options: ScanOptions | None = None,
    *,
    cache: Cache | None = None,
    progress: ProgressCallback | None = None,
) -> ScanRun:
    """Scan every valid sample with every scanner covering its language.

    ``samples`` are :class:`SampleResult` shells from :mod:`vul2safe.inputs`; the ones that
    already carry an input error are passed through untouched, so nothing is dropped.
    """
    options = options or ScanOptions()
    started = time.perf_counter()
    valid = [r for r in samples if r.error is None]
    languages = {r.sample.language for r in valid}
    scanners, skipped = select_scanners(scanner_names, languages)
    if cache is None and options.use_cache:
        cache = Cache()
    covered = set().union(*(s.languages for s in scanners)) if scanners else set()
    for result in valid:
        if result.sample.language not in covered:
            result.error = _no_scanner_message(result.sample.language, skipped)

    meta: dict[str, dict[str, str]] = {}
    pending: list[_Pending] = []
    for scanner in scanners:
        version, rules = scanner.version(), scanner.rules_hash(options)
        meta[scanner.name] = {"version": version, "rules_hash": rules}
        mine = [r for r in valid if r.error is None and r.sample.language in scanner.languages]
        job = _Pending(scanner, version, rules, mine)
        _serve_from_cache(job, options, cache, progress)
        if job.misses:
            pending.append(job)

    if pending:  # only code some scanner has not seen is written to disk and scanned
        needed = {id(r): r for job in pending for r in job.misses}
        workdir = Path(tempfile.mkdtemp(prefix="vul2safe-scan-"))
        try:
            targets = _materialize(list(needed.values()), workdir)
            workers = max(1, min(options.jobs, len(pending)))
            with ThreadPoolExecutor(max_workers=workers) as pool:
                futures = [
                    pool.submit(_scan_misses, job, targets, options, cache, progress)
                    for job in pending
                ]
                for future in futures:
                    future.result()
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    order = {scanner.name: index for index, scanner in enumerate(scanners)}
    for result in valid:  # threads finish in any order; reports follow the scanner order
        result.reports.sort(key=lambda report: order.get(report.scanner, len(order)))
    return ScanRun(list(samples), meta, skipped, time.perf_counter() - started)


@dataclass
class _Pending:
    """One scanner's share of a scan: its samples, their cache keys, what the cache lacked."""

    scanner: Scanner
    version: str
    rules: str
    results: list[SampleResult]
    keys: dict[str, str] = field(default_factory=dict)
    misses: list[SampleResult] = field(default_factory=list)

    @property
    def use_cache(self) -> bool:
        return self.scanner.cacheable


def _no_scanner_message(language: str, skipped: dict[str, str]) -> str:
    from vul2safe import plugins

    could = [s.name for s in plugins.scanners if language in s.languages]
    if not could:
        return f"no scanner covers language {language!r}; pass --lang to override detection"
    reasons = "; ".join(f"{n}: {skipped[n]}" for n in could if n in skipped)
    return (
        f"no available scanner for {language!r} ({reasons or 'not selected: ' + ', '.join(could)})"
    )


def _materialize(results: Sequence[SampleResult], workdir: Path) -> dict[str, ScanTarget]:
    """Write each sample to ``workdir`` under a short unique name with its language's suffix."""
    targets: dict[str, ScanTarget] = {}
    for index, result in enumerate(results):
        sample = result.sample
        path = workdir / f"s{index:06d}{extension_for(sample.language)}"
        path.write_text(sample.code, encoding="utf-8", newline="")
        targets[sample.id] = ScanTarget(sample.id, sample.language, path)
    return targets


def _cache_key(sample: Sample, scanner: str, version: str, rules: str, options: str = "") -> str:
    parts = (sample.code, sample.language, scanner, version, rules)
    return content_key(*parts, options) if options else content_key(*parts)


#: bump the suffix when the cached value layout changes: old entries are then simply missed
_NAMESPACE = "scan-v2"


def _serve_from_cache(
    job: _Pending, options: ScanOptions, cache: Cache | None, progress: ProgressCallback | None
) -> None:
    """Fill reports for cache hits; leave the rest in ``job.misses``."""
    name = job.scanner.name
    job.keys = {
        r.sample.id: _cache_key(r.sample, name, job.version, job.rules, job.scanner.options_id)
        for r in job.results
    }
    use_cache = cache is not None and options.use_cache and job.use_cache
    hits = cache.get_many(_NAMESPACE, job.keys.values()) if use_cache and cache else {}
    for result in job.results:
        hit = hits.get(job.keys[result.sample.id])
        if hit is None:
            job.misses.append(result)
            continue
        sample = result.sample
        findings = [Finding.from_dict({**f, "path": sample.path}) for f in hit["findings"]]
        result.reports.append(
            ScanReport(
                sample.id,
                sample.path,
                sample.language,
                name,
                job.version,
                job.rules,
                findings,
                error=hit["error"],
                cached=True,
            )
        )
    if progress and len(job.misses) < len(job.results):
        progress(name, len(job.results) - len(job.misses))


def _scan_misses(
    job: _Pending,
    targets: dict[str, ScanTarget],
    options: ScanOptions,
    cache: Cache | None,
    progress: ProgressCallback | None,
) -> None:
    """Scan the cache misses in batches of at most ``max_batch`` and store the answers."""
    use_cache = cache is not None and options.use_cache and job.use_cache
    for start in range(0, len(job.misses), options.max_batch):
        chunk = job.misses[start : start + options.max_batch]
        started = time.perf_counter()
        outcome = _scan_isolating(job.scanner, [targets[r.sample.id] for r in chunk], options)
        elapsed = (time.perf_counter() - started) / max(1, len(chunk))
        fresh: dict[str, dict[str, object]] = {}
        for result in chunk:
            sample = result.sample
            key = str(targets[sample.id].path)
            error = outcome.errors.get(key)
            findings = [] if error else outcome.findings.get(key, [])
            for finding in findings:
                finding.path = sample.path
            result.reports.append(
                ScanReport(
                    sample.id,
                    sample.path,
                    sample.language,
                    job.scanner.name,
                    job.version,
                    job.rules,
                    findings,
                    error=error,
                    duration_s=elapsed,
                )
            )
            if key not in outcome.failed:
                fresh[job.keys[sample.id]] = {
                    "findings": [
                        {k: v for k, v in f.to_dict().items() if k != "path"} for f in findings
                    ],
                    "error": error,
                }
        if use_cache and cache and fresh:
            cache.put_many(_NAMESPACE, fresh)
        if progress:
            progress(job.scanner.name, len(chunk))


def _scan_isolating(
    scanner: Scanner, targets: list[ScanTarget], options: ScanOptions
) -> BatchResult:
    """Scan a batch; if the tool fails on it, bisect until the failing files are isolated."""
    timeout = options.batch_timeout_s if len(targets) > 1 else options.file_timeout_s
    try:
        return scanner.scan_batch(targets, options, timeout)
    except ScannerNotAvailable:
        raise
    except ScannerFailed as exc:
        if len(targets) == 1:
            path = str(targets[0].path)
            return BatchResult(errors={path: str(exc)}, failed={path})
        middle = len(targets) // 2
        merged = BatchResult()
        for half in (targets[:middle], targets[middle:]):
            part = _scan_isolating(scanner, half, _shrunk(options, len(half)))
            merged.update(part)
        return merged


def _shrunk(options: ScanOptions, size: int) -> ScanOptions:
    """Retries of smaller batches get a proportionally smaller (but ≥ per-file) timeout."""
    from dataclasses import replace

    budget = max(options.file_timeout_s, options.file_timeout_s * size / 4)
    return replace(options, batch_timeout_s=min(options.batch_timeout_s, budget))


def filter_findings(results: Sequence[SampleResult], minimum: Severity) -> None:
    """Drop findings below ``minimum`` from every report (for ``--min-severity``)."""
    for result in results:
        for report in result.reports:
            report.findings = [f for f in report.findings if f.severity.at_least(minimum)]


def require_scanners(names: Sequence[str]) -> None:
    """Validate names early (before any work) so typos fail in one line."""
    from vul2safe import plugins

    for name in names:
        if name not in plugins.scanners:
            raise UsageError(
                plugins.unknown_name_message("scanner", name, plugins.scanners.names())
            )
