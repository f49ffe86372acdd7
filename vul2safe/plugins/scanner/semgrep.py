"""Semgrep with rule packs, run offline, once per batch.

Default pack ``icd``: the MIT-licensed Insecure Code Detector rules that ship in the PyPI
package ``codeshield`` (the rule set behind CodeShield and CyberSecEval) — its Semgrep rules
for C, C++, Python, Java, JavaScript, PHP and C#, plus its regex rules translated into Semgrep
``pattern-regex`` rules so that one semgrep process runs both. ``icd-semgrep`` is the Semgrep
rules alone. Users add their own rule files with ``--semgrep-config``. This is an approximation
of ICD (one rule set, Semgrep's regex semantics); the ``icd`` scanner reproduces ICD exactly.

Packs are merged into one JSON rule file under ``$VUL2SAFE_RULES_DIR`` (default
``$VUL2SAFE_HOME/rules``) whose SHA-256 (with the
user configs' contents) is the ``rules_hash`` recorded in every report and cache key.

Semgrep and codeshield live in vul2safe's tool environment (:mod:`vul2safe.tools`), and the
plugin runs the ``osemgrep`` engine binary of that Semgrep wheel directly, as ICD does: the
Python ``semgrep`` CLI wraps the same engine but costs ~2.3 s more per call to start (same
findings; ``tests/vul2safe/plugins/test_semgrep_engine.py`` compares them on real data).
It is always called with ``--metrics=off``: without it each call waits for the network, and
with ``--disable-nosem``: the code scanned is model output, and a ``# nosemgrep`` comment
the model appended must not hide the finding (``options_id`` puts this in the cache key).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any

from vul2safe import hookimpl, tools
from vul2safe.config import home
from vul2safe.errors import ScannerFailed, ScannerNotAvailable, UsageError
from vul2safe.fileio import write_text_atomic
from vul2safe.hookspecs import Register
from vul2safe.scanning import (
    Availability,
    BatchResult,
    Scanner,
    ScanOptions,
    ScanTarget,
    batch_directory,
    run_tool,
)
from vul2safe.schema import Finding, normalize_cwes
from vul2safe.severity import normalize

#: ICD regex rule files → the languages they apply to (C rules hold for C++ too)
_REGEX_LANGUAGES: dict[str, list[str]] = {
    "c": ["c", "cpp"],
    "cpp": ["cpp"],
    "python": ["python"],
    "java": ["java"],
    "javascript": ["javascript"],
    "php": ["php"],
    "csharp": ["csharp"],
    "rust": ["rust"],
    "swift": ["swift"],
    "ruby": ["ruby"],
    "language_agnostic": ["regex"],
}
#: ICD's severity words → Semgrep's (the normalisation table then maps Semgrep's to ours);
#: ``advice`` is medium, as in the ``codeshield`` row: every ICD issue is "insecure code"
_ICD_TO_SEMGREP = {"error": "ERROR", "warning": "WARNING", "advice": "WARNING"}
PACKS = ("icd", "icd-semgrep")
#: the one ICD Semgrep rule that ships without a CWE; ICD's own regex twin says CWE-120
_MISSING_CWE = {"vulnerable-strcpy": "CWE-120"}
_pack_lock = threading.Lock()


def engine_command() -> tuple[str, ...]:
    """``osemgrep --experimental`` from the tool environment (raises with the install line)."""
    return (str(tools.osemgrep()), "--experimental")


def engine_args(configs: Sequence[str]) -> list[str]:
    """The engine call the plugin makes, less ``--jobs`` and the folder to scan."""
    return [
        *engine_command(),
        "--json",
        "--quiet",
        "--metrics=off",
        "--disable-nosem",  # model output is untrusted: `# nosemgrep` must not hide it
        "--no-git-ignore",
        *(f"--config={config}" for config in configs),
    ]


def build_pack(pack: str) -> list[dict[str, Any]]:
    """The rules of one pack as Semgrep rule dicts (ids de-duplicated across languages)."""
    import yaml  # pyyaml: a core dependency

    if pack not in PACKS:
        raise UsageError(f"unknown semgrep rule pack {pack!r}; available: {', '.join(PACKS)}")
    root = tools.icd_rules_dir()
    rules: dict[str, dict[str, Any]] = {}
    for path in sorted((root / "semgrep" / "_generated_").glob("*_cyberseceval.json")):
        for rule in json.loads(path.read_text())["rules"]:
            metadata = rule.setdefault("metadata", {})
            if rule["id"] in _MISSING_CWE and not metadata.get("cwe_id"):
                metadata["cwe_id"] = _MISSING_CWE[rule["id"]]
            rules.setdefault(rule["id"], rule)
    if pack == "icd":
        for language, targets in _REGEX_LANGUAGES.items():
            path = root / "regex" / f"{language}.yaml"
            if not path.exists():
                continue
            for entry in yaml.safe_load(path.read_text()) or []:
                rule_id = f"regex-{entry['pattern_id']}"
                rules.setdefault(rule_id, _regex_rule(rule_id, entry, targets))
    return [rules[key] for key in sorted(rules)]


def _regex_rule(rule_id: str, entry: dict[str, Any], languages: list[str]) -> dict[str, Any]:
    severity = _ICD_TO_SEMGREP.get(str(entry.get("severity", "warning")).lower(), "WARNING")
    return {
        "id": rule_id,
        "languages": languages,
        "message": entry.get("description", rule_id),
        "severity": severity,
        "pattern-regex": entry["rule"],
        "metadata": {"cwe_id": entry.get("cwe_id", ""), "source": "codeshield-icd-regex"},
    }


@cache
def pack_file(pack: str) -> Path:
    """Write the merged pack once (content-addressed name, so concurrent runs agree).

    Rules that this Semgrep version cannot parse (one ICD Java rule, at the time of writing)
    make every call exit 2; they are found with one validation run and left out.
    """
    rules = build_pack(pack)
    text = json.dumps({"rules": rules}, sort_keys=True, indent=1)
    return parsable_pack(f"semgrep-{pack}", text, rules, indent=1)[0]


def parsable_pack(
    stem: str, text: str, rules: Sequence[dict[str, Any]], *, indent: int | None = None
) -> tuple[Path, list[str]]:
    """``rules`` (whose JSON is ``text``) minus those this engine cannot parse, written once
    as ``<rules dir>/<stem>-<digest>.json``; the digest covers the engine version and
    ``text``, so concurrent runs agree. Returns the file and the dropped rule ids (kept
    beside it in ``.dropped``). Shared by :func:`pack_file` and the ``icd`` scanner."""
    digest = hashlib.sha256((SemgrepScanner().version() + text).encode()).hexdigest()[:16]
    rules_dir = Path(os.environ.get("VUL2SAFE_RULES_DIR") or home() / "rules")
    path = rules_dir / f"{stem}-{digest}.json"
    dropped_file = path.with_suffix(".dropped")
    with _pack_lock:
        if not path.exists():
            rules_dir.mkdir(parents=True, exist_ok=True)
            broken = unparsable_rules(text, rules_dir)
            kept = [rule for rule in rules if rule["id"] not in broken]
            write_text_atomic(dropped_file, "\n".join(sorted(broken)))
            write_text_atomic(path, json.dumps({"rules": kept}, sort_keys=True, indent=indent))
        listed = dropped_file.read_text() if dropped_file.is_file() else ""
    return path, [rule for rule in listed.splitlines() if rule]


def unparsable_rules(text: str, workdir: Path) -> set[str]:
    """Ids of rules Semgrep rejects, from one run over an empty file."""
    command = engine_command()
    probe_dir = Path(tempfile.mkdtemp(dir=workdir))
    try:
        config = probe_dir / "rules.json"
        config.write_text(text)
        target = probe_dir / "empty.txt"
        target.write_text("")
        proc = run_tool(
            [
                *command,
                "--json",
                "--quiet",
                "--metrics=off",
                f"--config={config}",
                str(target),
            ],
            timeout_s=300,
            tool="semgrep",
        )
        try:
            errors = json.loads(proc.stdout).get("errors", [])
        except json.JSONDecodeError:
            return set()
        return {_rule_id(e["rule_id"]) for e in errors if e.get("rule_id")}
    finally:
        shutil.rmtree(probe_dir, ignore_errors=True)


def _hash_config(config: str) -> str:
    """User configs are hashed by content (files, or every rule file in a directory)."""
    path = Path(config)
    digest = hashlib.sha256(config.encode())
    if path.is_file():
        digest.update(path.read_bytes())
    elif path.is_dir():
        for child in sorted(path.rglob("*")):
            if child.suffix in {".yaml", ".yml", ".json"} and child.is_file():
                digest.update(str(child.relative_to(path)).encode())
                digest.update(child.read_bytes())
    return digest.hexdigest()


class SemgrepScanner(Scanner):
    name = "semgrep"
    languages = frozenset(
        {
            "c",
            "cpp",
            "python",
            "java",
            "javascript",
            "typescript",
            "php",
            "csharp",
            "go",
            "ruby",
            "rust",
            "swift",
            "kotlin",
        }
    )
    description = "Semgrep with the CodeShield/ICD rule pack (MIT) and any --semgrep-config"
    options_id = "disable-nosem"

    @cache  # noqa: B019 - the installed binary cannot change during a run
    def version(self) -> str:
        """The version the engine binary itself reports (not a Python package's)."""
        try:
            command = engine_command()
        except ScannerNotAvailable:
            return "unavailable"
        out = subprocess.run([*command, "--version"], capture_output=True, text=True)
        return out.stdout.strip() or "unknown"

    def available(self) -> Availability:
        try:
            engine_command()
        except ScannerNotAvailable as exc:
            return Availability(False, str(exc))
        return Availability(True)

    def _configs(self, options: ScanOptions) -> list[str]:
        configs = [str(pack_file(pack)) for pack in options.semgrep_packs]
        configs += options.semgrep_configs
        if not configs:
            raise UsageError("semgrep has no rules: pass --semgrep-config or a rule pack")
        return configs

    def rules_hash(self, options: ScanOptions) -> str:
        digest = hashlib.sha256()
        for config in self._configs(options):
            digest.update(_hash_config(config).encode())
        return digest.hexdigest()[:16]

    def scan_batch(
        self, targets: Sequence[ScanTarget], options: ScanOptions, timeout_s: float
    ) -> BatchResult:
        args = engine_args(self._configs(options))
        parts = split_for_engines(targets, options.jobs)
        if len(parts) == 1:
            return _run_engine([*args, f"--jobs={max(1, options.jobs)}"], targets, timeout_s)
        merged = BatchResult()
        with ThreadPoolExecutor(max_workers=len(parts)) as pool:
            futures = [
                pool.submit(_run_engine, [*args, "--jobs=1"], part, timeout_s) for part in parts
            ]
            for future in futures:
                merged.update(future.result())
        return merged


#: a batch smaller than this per extra process runs in one engine process: each process
#: costs ~0.15 s to start, more than a split saves on a few dozen short functions
SPLIT_BYTES = 256 * 1024


def split_for_engines(targets: Sequence[ScanTarget], jobs: int) -> list[list[ScanTarget]]:
    """Split a large batch over ``jobs + 1`` engine processes, run at once.

    Separate single-threaded processes, because the engine's own ``--jobs`` lost here. On the
    600 functions of ``benchmarks/scan_throughput`` (2 cores, three rounds, interleaved):
    one process ``--jobs=2`` 5.3-5.8 s, two ``--jobs=1`` processes 4.2-4.6 s, three 3.2 s.
    Matching cost grows much faster than size on a few huge functions (one 114 KB C function
    took 1.4 s of 3.3 s, 0.9 s alone), so files are dealt largest first to the lightest part
    by ``size ** 2``, which isolates such outliers; the extra process lets the kernel balance
    what the estimate gets wrong. Hand-written: a greedy deal of a few lines.
    """
    sizes = {str(t.path): t.path.stat().st_size for t in targets}
    count = max(1, min(jobs + 1 if jobs > 1 else 1, sum(sizes.values()) // SPLIT_BYTES))
    count = min(count, len(targets))
    if count == 1:
        return [list(targets)]
    parts: list[list[ScanTarget]] = [[] for _ in range(count)]
    loads = [0] * count
    for target in sorted(targets, key=lambda t: -sizes[str(t.path)]):
        lightest = loads.index(min(loads))
        parts[lightest].append(target)
        loads[lightest] += sizes[str(target.path)] ** 2
    return parts


def _run_engine(args: list[str], targets: Sequence[ScanTarget], timeout_s: float) -> BatchResult:
    """One engine process over a directory holding exactly ``targets``."""
    with batch_directory(targets) as (root, mapping):
        proc = run_tool([*args, str(root)], timeout_s=timeout_s, tool="semgrep")
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        raise ScannerFailed(f"semgrep failed (exit {proc.returncode}): {tail[0][:300]}") from None
    if proc.returncode not in (0, 1) and not report.get("results"):
        messages = [e.get("message", "") for e in report.get("errors", [])]
        raise ScannerFailed(
            f"semgrep failed (exit {proc.returncode}): {(messages or ['unknown error'])[0][:300]}"
        )
    result = parse_semgrep_json(report)
    return BatchResult(
        findings={mapping.get(path, path): found for path, found in result.findings.items()},
        errors=result.errors,
    )


def _rule_id(check_id: str) -> str:
    """Semgrep prefixes ids with the config's directory (``root..cache.x.rule``): drop it."""
    return check_id.rsplit(".", 1)[-1]


def parse_semgrep_json(report: dict[str, Any]) -> BatchResult:
    """Semgrep's ``--json`` → findings keyed by path. Parse errors are not fatal: Semgrep
    still matches the parts it parsed, so they are not reported as per-file errors."""
    result = BatchResult()
    for item in report.get("results", []):
        extra = item.get("extra", {})
        metadata = extra.get("metadata", {}) or {}
        raw_cwes: list[str | int] = []
        for key in ("cwe", "cwe_id"):
            value = metadata.get(key)
            if isinstance(value, list):
                raw_cwes.extend(value)
            elif value:
                raw_cwes.append(value)
        tool_severity = str(extra.get("severity", "WARNING"))
        finding = Finding(
            scanner="semgrep",
            rule_id=_rule_id(item["check_id"]),
            severity=normalize("semgrep", tool_severity),
            tool_severity=tool_severity,
            message=" ".join(str(extra.get("message", "")).split()),
            path=item["path"],
            start_line=int(item["start"]["line"]),
            end_line=int(item["end"]["line"]),
            start_column=int(item["start"].get("col", 1)),
            end_column=int(item["end"].get("col", 1)),
            cwe=normalize_cwes(raw_cwes),
        )
        result.findings.setdefault(item["path"], []).append(finding)
    return result


@hookimpl
def register_scanners(register: Register) -> None:
    register(SemgrepScanner())
