"""CodeQL: GitHub's semantic code analysis, one database per language per batch.

For each language group of a batch the samples are copied into a fresh source root, a
database is built without compiling (``--build-mode=none``: the only mode for Python and
JavaScript, supported for Java and C# and, from CodeQL 2.20-ish, C/C++; Go has no such mode,
so it uses ``autobuild``, which needs a Go toolchain), the ``<lang>-security-extended`` suite
is run, and the SARIF it writes is read with :func:`vul2safe.sarif.iter_sarif_results`.

**Offline.** ``--download`` is never passed: the query packs must already be on disk. The
CodeQL *bundle* (``codeql-bundle-<platform>.tar.gz`` from github.com/github/codeql-action
releases) ships the standard query packs; the bare CLI does not, in which case run
``codeql pack download codeql/<lang>-queries`` once while online. A missing pack is reported
as "scanner not available" with that advice instead of as a per-file failure.

**Configuration** (environment, ``<LANG>`` is the CodeQL language upper-cased: ``CPP``,
``PYTHON``, ``JAVA``, ``JAVASCRIPT``, ``CSHARP``, ``GO``):

- ``VUL2SAFE_CODEQL_SUITE_<LANG>``: query suites/packs to run instead of the default
  ``codeql/<lang>-queries:codeql-suites/<lang>-security-extended.qls`` (comma-separated);
- ``VUL2SAFE_CODEQL_BUILD_MODE_<LANG>``: ``none`` / ``autobuild`` override;
- ``CODEQL_HOME``: where the bundle was unpacked, when ``codeql`` is not on ``PATH``.

**Mapping back.** CodeQL writes URIs relative to the source root (``s000042.py``); each sample
is copied under its unique engine file name, so results map back by file name. CodeQL's
extractor diagnostics are *not* turned into sample errors: with no build, a snippet with
unresolved includes or a syntax slip is still extracted and analysed as far as possible.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any

from vul2safe import hookimpl
from vul2safe.errors import InputError, ScannerFailed, ScannerNotAvailable, ScannerTimeout
from vul2safe.hookspecs import Register
from vul2safe.sarif import iter_sarif_results, read_sarif_file
from vul2safe.scanning import (
    Availability,
    BatchResult,
    Scanner,
    ScanOptions,
    ScanTarget,
    last_line,
    run_tool,
)

#: our language name → the CodeQL extractor that handles it
CODEQL_LANGUAGES: dict[str, str] = {
    "c": "cpp",
    "cpp": "cpp",
    "python": "python",
    "java": "java",
    "javascript": "javascript",
    "csharp": "csharp",
    "go": "go",
}
#: build modes that differ from ``none`` (Go cannot be extracted without building)
DEFAULT_BUILD_MODES: dict[str, str] = {"go": "autobuild"}

INSTALL_HINT = (
    "CodeQL CLI not found; download the CodeQL bundle from GitHub "
    "(github.com/github/codeql-action/releases), unpack it and put `codeql` on PATH"
)

_GO_MOD = "module vul2safe.local/scan\n\ngo 1.21\n"
_MISSING_PACK_RE = re.compile(
    r"(pack|suite|quer(y|ies)).*(not found|cannot be found|could not be found|"
    r"could not resolve|cannot resolve|no such)",
    re.IGNORECASE,
)
_BAD_BUILD_MODE_RE = re.compile(r"build[- ]mode.*(not supported|unsupported|invalid)", re.I)


def find_codeql() -> str | None:
    """``codeql`` on ``PATH``, else ``$CODEQL_HOME/codeql`` (or the bundle's ``codeql/codeql``)."""
    exe = shutil.which("codeql")
    if exe:
        return exe
    home = os.environ.get("CODEQL_HOME")
    if home:
        for candidate in (Path(home) / "codeql", Path(home) / "codeql" / "codeql"):
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    return None


def default_suite(language: str) -> str:
    """The security-extended suite of the language's standard query pack."""
    return f"codeql/{language}-queries:codeql-suites/{language}-security-extended.qls"


def suites_for(language: str) -> list[str]:
    """Suites for a CodeQL language: ``VUL2SAFE_CODEQL_SUITE_<LANG>`` or the default."""
    raw = os.environ.get(f"VUL2SAFE_CODEQL_SUITE_{language.upper()}", "")
    chosen = [item.strip() for item in raw.split(",") if item.strip()]
    return chosen or [default_suite(language)]


def build_mode_for(language: str) -> str:
    """``VUL2SAFE_CODEQL_BUILD_MODE_<LANG>``, else ``none`` (``autobuild`` for Go)."""
    raw = os.environ.get(f"VUL2SAFE_CODEQL_BUILD_MODE_{language.upper()}", "").strip()
    return raw or DEFAULT_BUILD_MODES.get(language, "none")


class CodeQLScanner(Scanner):
    name = "codeql"
    languages = frozenset(CODEQL_LANGUAGES)
    description = "CodeQL: semantic dataflow analysis, <lang>-security-extended suites"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._versions: dict[str, str] = {}

    def version(self) -> str:
        """``codeql version --format=json``; cached per executable (it cannot change mid-run)."""
        exe = find_codeql()
        if exe is None:
            return "unavailable"
        with self._lock:
            if exe not in self._versions:
                self._versions[exe] = _query_version(exe)
            return self._versions[exe]

    def available(self) -> Availability:
        if find_codeql() is None:
            return Availability(False, INSTALL_HINT)
        return Availability(True)

    def rules_hash(self, options: ScanOptions) -> str:
        """CLI version (it pins the bundled packs) + suites + build modes of every language."""
        digest = hashlib.sha256(self.version().encode())
        for language in sorted(set(CODEQL_LANGUAGES.values())):
            digest.update(f"|{language}:{build_mode_for(language)}:".encode())
            digest.update(",".join(suites_for(language)).encode())
        return digest.hexdigest()[:16]

    def scan_batch(
        self, targets: Sequence[ScanTarget], options: ScanOptions, timeout_s: float
    ) -> BatchResult:
        exe = find_codeql()
        if exe is None:
            raise ScannerNotAvailable(INSTALL_HINT)
        deadline = time.monotonic() + timeout_s
        groups: dict[str, list[ScanTarget]] = {}
        for target in targets:
            language = CODEQL_LANGUAGES.get(target.language)
            if language is not None:
                groups.setdefault(language, []).append(target)
        result = BatchResult()
        workdir = Path(tempfile.mkdtemp(prefix="vul2safe-codeql-"))
        try:
            for language, group in groups.items():
                doc = _analyze(exe, language, group, workdir, options, deadline)
                result.update(map_codeql_sarif(doc, group))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return result


def _query_version(exe: str) -> str:
    try:
        proc = run_tool([exe, "version", "--format=json"], timeout_s=120, tool="codeql")
    except (ScannerNotAvailable, ScannerFailed):
        return "unknown"
    try:
        data = json.loads(proc.stdout)
    except json.JSONDecodeError:
        first = proc.stdout.strip().splitlines()
        return first[0].split()[-1].rstrip(".") if first else "unknown"
    version = data.get("version") if isinstance(data, dict) else None
    return str(version) if version else "unknown"


def _analyze(
    exe: str,
    language: str,
    group: Sequence[ScanTarget],
    workdir: Path,
    options: ScanOptions,
    deadline: float,
) -> dict[str, Any]:
    """Build one database for ``group`` and run the suites over it; returns the SARIF log."""
    source = workdir / f"src-{language}"
    database = workdir / f"db-{language}"
    output = workdir / f"{language}.sarif"
    source.mkdir()
    for target in group:
        shutil.copyfile(target.path, source / target.path.name)
    build_mode = build_mode_for(language)
    if language == "go" and not (source / "go.mod").exists():
        (source / "go.mod").write_text(_GO_MOD, encoding="utf-8")
    threads = f"--threads={max(1, options.jobs)}"
    suites = suites_for(language)
    create = [
        exe,
        "database",
        "create",
        str(database),
        f"--language={language}",
        f"--build-mode={build_mode}",
        f"--source-root={source}",
        "--overwrite",
        threads,
    ]
    _run_step(create, "database create", deadline, workdir, suites)
    analyze = [
        exe,
        "database",
        "analyze",
        str(database),
        *suites,
        "--format=sarif-latest",
        f"--output={output}",
        threads,
    ]
    _run_step(analyze, "database analyze", deadline, workdir, suites)
    try:
        return read_sarif_file(output)
    except InputError as exc:
        raise ScannerFailed(f"codeql wrote no usable SARIF: {exc}") from None


def _run_step(cmd: list[str], step: str, deadline: float, cwd: Path, suites: Sequence[str]) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise ScannerTimeout(f"codeql ran out of time before {step}")
    proc = run_tool(cmd, timeout_s=remaining, cwd=cwd, tool="codeql")
    if proc.returncode == 0:
        return
    output = f"{proc.stdout}\n{proc.stderr}"
    lines = output.splitlines()
    if step == "database analyze" and any(_MISSING_PACK_RE.search(line) for line in lines):
        packs = ", ".join(sorted({s.split(":", 1)[0] for s in suites}))
        raise ScannerNotAvailable(
            f"codeql: query pack not available offline ({packs}): {last_line(proc.stderr)}; "
            "use the CodeQL bundle, which ships the standard packs, or run "
            "`codeql pack download PACK` once while online"
        )
    if step == "database create" and any(_BAD_BUILD_MODE_RE.search(line) for line in lines):
        raise ScannerNotAvailable(
            f"codeql: {last_line(proc.stderr)}; upgrade the CodeQL bundle or set "
            "VUL2SAFE_CODEQL_BUILD_MODE_<LANG>=autobuild"
        )
    raise ScannerFailed(f"codeql {step} failed (exit {proc.returncode}): {last_line(output)}")


def map_codeql_sarif(doc: dict[str, Any], targets: Sequence[ScanTarget]) -> BatchResult:
    """CodeQL results → findings keyed by the target path, matched by file name.

    CodeQL's URIs are relative to the source root we built (``s000042.py``, maybe with a
    ``%SRCROOT%`` base id); each sample was copied there under its unique engine name, so the
    name alone identifies it. Results in files we did not put there (none expected) are
    dropped.
    """
    by_name = {target.path.name: target for target in targets}
    result = BatchResult()
    for imported in iter_sarif_results(doc, default_scanner="codeql"):
        name = PurePosixPath(imported.finding.path.replace("\\", "/")).name
        target = by_name.get(name)
        if target is None:
            continue
        key = str(target.path)
        finding = replace(imported.finding, path=key, scanner="codeql")
        result.findings.setdefault(key, []).append(finding)
    return result


@hookimpl
def register_scanners(register: Register) -> None:
    register(CodeQLScanner())
