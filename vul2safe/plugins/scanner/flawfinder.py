"""flawfinder, the lexical C/C++ checker, run once per batch (CSV output, every level kept).

Command (``FILES`` relative to the batch directory, which is the working directory)::

    python -X utf8 -m flawfinder --csv --dataonly --quiet --columns --minlevel=0 --neverignore \
        -- FILES

Why these flags:

- ``--minlevel=0``: keep every hit; our own table (levels 4–5 high, 3 medium, 0–2 low) and the
  user's ``--min-severity`` decide later what to show, so one cached scan serves every threshold.
- ``--neverignore``: the code we scan is untrusted (model output). Without it a
  ``/* flawfinder: ignore */`` comment silences the next hit, which a model under a
  scanner-based reward would learn to emit.
- ``-X utf8``: flawfinder opens files with the locale encoding; UTF-8 mode makes the result
  independent of ``LANG`` (the engine always writes samples as UTF-8).
- ``--`` and relative names: a name can never be mistaken for an option, and a 5,000-file batch
  stays far below the command-line length limit (flawfinder has no file-list option).

flawfinder's rules are compiled into the tool, so the rules hash is the version plus the flags.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import os
import re
import sys
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from vul2safe import hookimpl
from vul2safe.errors import ScannerFailed
from vul2safe.hookspecs import Register
from vul2safe.plugins.scanner._tool import cli_version, installed_command
from vul2safe.scanning import (
    Availability,
    BatchResult,
    PathFor,
    Scanner,
    ScanOptions,
    ScanTarget,
    last_line,
    path_as_printed,
    path_lookup,
    run_tool,
)
from vul2safe.schema import Finding, normalize_cwes
from vul2safe.severity import from_flawfinder_level

#: flags for every run; part of the rules hash because they change what is reported
FLAGS: tuple[str, ...] = (
    "--csv",
    "--dataonly",
    "--quiet",
    "--columns",
    "--minlevel=0",
    "--neverignore",
)
#: bump when the mapping from flawfinder's CSV to findings changes (invalidates cached scans)
PARSER_REVISION = "1"

_CWE_RE = re.compile(r"CWE-\d+", re.IGNORECASE)
# flawfinder prints this (then a ~20-line explanation) on stdout, among the CSV rows, when a
# file is not valid in its input encoding; the file is skipped and the exit code becomes 15.
_ENCODING_ERROR_RE = re.compile(r"^Warning: encoding error in (?P<file>.+) -- skipping file\.$")
_HEADER_START = "File,Line,Column,"
_OK_EXIT_CODES = {0, 15}  # 15: some files had encoding errors (reported per file)


@cache
def _flawfinder_command() -> tuple[str, ...] | None:
    """The interpreter's own flawfinder module first (same environment as vul2safe, and
    ``-X utf8`` can be set), then a console script beside the interpreter, then on PATH."""
    if importlib.util.find_spec("flawfinder") is not None:
        return (sys.executable, "-X", "utf8", "-m", "flawfinder")
    return installed_command("flawfinder")


class FlawfinderScanner(Scanner):
    name = "flawfinder"
    languages = frozenset({"c", "cpp"})
    description = (
        "flawfinder: lexical scan for risky C/C++ calls (levels 4-5 high, 3 medium, 0-2 low)"
    )

    @cache  # noqa: B019 - one instance per process; the tool version cannot change under us
    def version(self) -> str:
        return cli_version(_flawfinder_command())

    def available(self) -> Availability:
        if _flawfinder_command() is None:
            return Availability(
                False, "flawfinder not found; install it with `pip install flawfinder`"
            )
        return Availability(True)

    def rules_hash(self, options: ScanOptions) -> str:
        """The rules are built into flawfinder: its version, our flags and parser revision."""
        text = "\n".join(["flawfinder", self.version(), *FLAGS, PARSER_REVISION])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def scan_batch(
        self, targets: Sequence[ScanTarget], options: ScanOptions, timeout_s: float
    ) -> BatchResult:
        command = _flawfinder_command()
        assert command is not None  # guarded by available()
        result = BatchResult()
        present: list[ScanTarget] = []
        for target in targets:
            if target.path.is_file():
                present.append(target)
            else:  # flawfinder --quiet skips a missing file silently: it would look clean
                result.errors[str(target.path)] = "file to scan does not exist"
        if not present:
            return result

        cwd = os.path.commonpath([os.path.dirname(os.path.abspath(t.path)) for t in present])
        names = [os.path.relpath(os.path.abspath(t.path), cwd) for t in present]
        proc = run_tool(
            [*command, *FLAGS, "--", *names],
            timeout_s=timeout_s,
            cwd=Path(cwd),
            tool="flawfinder",
        )
        if proc.returncode not in _OK_EXIT_CODES:
            raise ScannerFailed(
                f"flawfinder failed (exit {proc.returncode}): {last_line(proc.stderr)}"
            )
        result.update(parse_flawfinder_csv(proc.stdout, path_lookup(present, cwd)))
        return result


def parse_flawfinder_csv(text: str, path_for: PathFor = path_as_printed) -> BatchResult:
    """flawfinder's ``--csv`` stdout → findings keyed by target path; files it skipped for an
    encoding error → per-file errors. Hits in files ``path_for`` does not know are dropped.

    Raises :class:`ScannerFailed` when the output is not flawfinder CSV at all (so the engine
    bisects the batch instead of recording every file as clean).
    """
    result = BatchResult()
    # One record per physical line (flawfinder escapes control characters in every cell), so
    # each line is parsed on its own: a line that is not a record of the header's width is
    # the tool talking (e.g. the ~20-line explanation after an encoding error), not a hit.
    # Split on "\n" only: str.splitlines() would also split a Context cell at U+2028 etc.
    lines = text.split("\n")
    header_at = next((i for i, line in enumerate(lines) if line.startswith(_HEADER_START)), None)
    if header_at is None:
        raise ScannerFailed(f"flawfinder printed no CSV header: {last_line(text)}")
    header = next(csv.reader([lines[header_at]]))
    for line in lines[header_at + 1 :]:
        match = _ENCODING_ERROR_RE.match(line)
        if match:
            key = path_for(match.group("file"))
            if key is not None:
                result.errors[key] = (
                    "flawfinder could not decode the file in its input encoding; not scanned"
                )
            continue
        cells = next(csv.reader([line]), [])
        if len(cells) != len(header) or not cells[1].isdigit():
            continue
        row = dict(zip(header, cells, strict=True))
        try:
            finding = _finding_from_row(row)
        except (KeyError, ValueError) as exc:
            raise ScannerFailed(f"unexpected flawfinder CSV row {line!r}: {exc}") from None
        key = path_for(row["File"])
        if key is None or key in result.errors:
            continue
        finding.path = key
        result.findings.setdefault(key, []).append(finding)
    for findings in result.findings.values():
        findings.sort(key=lambda f: (f.start_line, f.start_column, f.rule_id))
    return result


def _finding_from_row(row: dict[str, str]) -> Finding:
    """One CSV row → a finding. ``rule_id`` is ``FF1001:buffer/strcpy`` (stable rule id, then
    category/function, which is what a reader recognises); older flawfinders lack RuleId."""
    level = int(row["Level"])
    line = int(row["Line"])
    column = int(row["Column"] or 0)
    name = row["Name"]
    readable = f"{row['Category']}/{name}"
    rule = row.get("RuleId") or ""
    message = row["Warning"].strip()
    if row.get("Note"):
        message += f" {row['Note'].strip()}"
    if row.get("Suggestion"):
        message += f" Suggestion: {row['Suggestion'].strip()}"
    return Finding(
        scanner="flawfinder",
        rule_id=f"{rule}:{readable}" if rule else readable,
        severity=from_flawfinder_level(level),
        tool_severity=f"level {level}",
        message=f"{name}: {message}",
        path=row["File"],
        start_line=line,
        end_line=line,
        start_column=column,
        end_column=column + len(name) if column else 0,
        cwe=normalize_cwes(_CWE_RE.findall(row.get("CWEs") or "")),
    )


@hookimpl
def register_scanners(register: Register) -> None:
    register(FlawfinderScanner())
