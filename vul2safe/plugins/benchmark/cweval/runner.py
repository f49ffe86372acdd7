"""Compile (C, C++, Go) and run one CWEval test file inside the sandbox; read its verdicts.

Each program gets a private host work dir holding exactly what upstream's evaluation folder
holds for it: ``<prefix>_task.<ext>`` (the assembled answer), ``<prefix>_test.py`` (copied),
``compiled/<prefix>_task`` (C/C++/Go) and upstream's ``pytest.ini``. Both steps run through
:func:`vul2safe.sandbox.run_command` (bubblewrap, no network, rlimits, a wall-clock timeout
that kills the whole process tree): the compiler too, because a model's ``#include`` of a
device or a huge template is hostile input as well.

The test protocol is upstream's ``cweval/run_tests.py``: ``pytest <test> -k "not _unsafe"``,
a 3-second timeout per test (signal method), ``functional`` = every ``functionality`` test
passed, ``secure`` = every ``security`` test passed. Differences, on purpose: a file that
fails to compile or to collect has ``passed = False`` and ``secure = None`` (upstream drops
it from its result file, so the sample silently leaves the denominator); a task whose
security tests need upstream's ``recheck`` binary (ReDoS) gets ``secure = None`` with a note,
never ``True``.

Compiler flags are upstream's (``cweval/commons.py``): ``gcc``/``g++ SRC -o OUT -lsqlite3
-ljwt -lssl -lcrypto -larchive $(xml2-config --cflags --libs)``, plus
``-fsanitize=address`` for the ``lang/c`` tasks except ``cwe_476_0``; those then run without
an address-space limit (ASan reserves terabytes of it). ``xml2-config`` is asked once, on the
host (it is a trusted system tool).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vul2safe.benchmark import Task

__all__ = ["APT_PACKAGES", "RunOutcome", "RunSettings", "run_sample", "unsupported_tasks"]

_COLLECT = Path(__file__).with_name("_collect.py")
_PLUGIN = "v2s_cweval_collect"
_RESULTS = "v2s_results.json"
_PYTEST_INI = "[pytest]\nmarkers =\n    functionality: functionality\n    security: security\n"
_LIBS = ["-lsqlite3", "-ljwt", "-lssl", "-lcrypto", "-larchive"]
#: what each compiled language needs on PATH, and the Debian packages that provide it
_TOOLS = {
    "c": ("gcc", "gcc"),
    "cpp": ("g++", "g++"),
    "go": ("go", "golang-go"),
    "js": ("node", "nodejs"),
}
APT_PACKAGES = (
    "gcc",
    "g++",
    "libsqlite3-dev",
    "libjwt-dev",
    "libssl-dev",
    "libarchive-dev",
    "libxml2-dev",
    "nodejs",
)


@dataclass(frozen=True)
class RunSettings:
    """Limits of one sample's run: per-test timeout (upstream: 3 s) and the whole run's."""

    test_timeout_s: float = 3.0
    timeout_s: float = 120.0
    compile_timeout_s: float = 120.0
    memory_mb: int = 2048
    allow_unsafe: bool = False


@dataclass
class RunOutcome:
    """One sample's verdicts; ``passed``/``secure`` are ``None`` where the tests did not run."""

    status: str  # ran, compile_error, collection_error, timeout, error, unsupported
    passed: bool | None
    secure: bool | None
    failing: dict[str, list[str]] = field(default_factory=dict)
    n_tests: dict[str, int] = field(default_factory=dict)
    detail: str = ""
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "passed": self.passed,
            "secure": self.secure,
            "failing": self.failing,
            "n_tests": self.n_tests,
            "detail": self.detail,
            "duration_s": round(self.duration_s, 3),
        }


@functools.cache
def _xml2_flags() -> tuple[str, ...]:
    """``xml2-config --cflags --libs`` (upstream puts it on every C/C++ command line)."""
    exe = shutil.which("xml2-config")
    if exe is None:
        return ("-I/usr/include/libxml2", "-lxml2")
    out = subprocess.run([exe, "--cflags", "--libs"], capture_output=True, text=True, check=False)
    return tuple(out.stdout.split()) or ("-I/usr/include/libxml2", "-lxml2")


_GOPATH = "/usr/share/gocode"  # Debian's golang-*-dev packages
_NODE_PATH = "/usr/lib/node_modules:/usr/share/nodejs:/usr/local/lib/node_modules"
_REQUIRE = re.compile(r"""require\(\s*['"]([^'"./][^'"]*)['"]\s*\)""")
_GO_IMPORT = re.compile(r'"([a-z0-9.-]+\.[a-z]+/[^"]+)"')


def _missing_node_modules(modules: set[str]) -> set[str]:
    """Which of ``modules`` node cannot resolve (builtins resolve); asked once, on the host."""
    if not modules:
        return set()
    script = (
        "for (const m of process.argv.slice(1)) { try { require.resolve(m) } "
        "catch (e) { console.log(m) } }"
    )
    out = subprocess.run(
        ["node", "-e", script, *sorted(modules)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "NODE_PATH": _NODE_PATH},
    )
    return set(out.stdout.split()) if out.returncode == 0 else set(modules)


def unsupported_tasks(tasks: Sequence[Task]) -> dict[str, str]:
    """Task id → why it cannot be built or run here: a missing compiler, library or module.

    Decided from the reference files (a model's answer needs what the reference needs).
    """
    problems: dict[str, str] = {}
    langs = {task.metadata["lang"] for task in tasks}
    missing = {
        lang: f"{tool} not found (apt-get install {package})"
        for lang, (tool, package) in _TOOLS.items()
        if lang in langs and shutil.which(tool) is None
    }
    if langs & {"c", "cpp", "go"} and not _has_lib("libjwt.so"):
        for lang in ("c", "cpp"):
            missing.setdefault(lang, "libjwt not found (apt-get install libjwt-dev)")
    needed = {
        task.task_id: set(_REQUIRE.findall(_sources(task)))
        for task in tasks
        if task.metadata["lang"] == "js" and "js" not in missing
    }
    absent = _missing_node_modules(set().union(*needed.values()) if needed else set())
    absent_py = _missing_python_modules(tasks)
    runner = [m for m in ("pytest", "pytest_timeout") if importlib.util.find_spec(m) is None]
    if runner:  # every task's tests run under pytest with pytest-timeout
        why = f"{', '.join(runner)} missing (pip install 'vul2safe[cweval]')"
        return {task.task_id: why for task in tasks}
    for task in tasks:
        lang = task.metadata["lang"]
        if lang in missing:
            problems[task.task_id] = missing[lang]
        elif lang == "py" and task.task_id in absent_py:
            problems[task.task_id] = absent_py[task.task_id]
        elif lang == "js" and needed[task.task_id] & absent:
            names = ", ".join(sorted(needed[task.task_id] & absent))
            problems[task.task_id] = (
                f"node module(s) not installed: {names} (apt-get install node-<name> where "
                "Debian packages it, else npm install -g <name>)"
            )
        elif lang == "go":
            gone = sorted(
                p
                for p in set(_GO_IMPORT.findall(_sources(task)))
                if not Path(_GOPATH, "src", p).is_dir()
            )
            if gone:
                problems[task.task_id] = f"Go package(s) not in {_GOPATH}: {', '.join(gone)}"
    return problems


#: third-party modules CWEval's Python tasks and tests import → their PyPI distributions
_PY_DISTS = {
    "Crypto": "pycryptodome",
    "argon2": "argon2-cffi",
    "lxml": "lxml",
    "jwt": "PyJWT",
    "yaml": "PyYAML",
    "requests": "requests",
    "wrapt_timeout_decorator": "wrapt_timeout_decorator",
}
_PY_IMPORT = re.compile(r"^\s*(?:from|import)\s+(\w+)", re.M)


def _missing_python_modules(tasks: Sequence[Task]) -> dict[str, str]:
    """Python task id → the missing test dependencies (this interpreter runs the tests)."""
    found: dict[str, bool] = {}
    problems: dict[str, str] = {}
    for task in tasks:
        if task.metadata["lang"] != "py":
            continue
        used = set(_PY_IMPORT.findall((task.tests or "") + (task.reference or "")))
        gone = []
        for module in sorted(used & _PY_DISTS.keys()):
            if module not in found:
                found[module] = importlib.util.find_spec(module) is not None
            if not found[module]:
                gone.append(_PY_DISTS[module])
        if gone:
            problems[task.task_id] = (
                f"Python package(s) missing: {', '.join(gone)} (pip install 'vul2safe[cweval]')"
            )
    return problems


def _sources(task: Task) -> str:
    return (
        (task.reference or "")
        + str(task.metadata.get("entrypoint") or "")
        + str(task.metadata.get("unsafe_reference") or "")
    )


def _has_lib(name: str) -> bool:
    return any(
        Path(d, name).exists()
        for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib")
    )


def _compile_argv(task: Task, source: str, target: str, goimports: bool) -> list[str]:
    lang = task.metadata["lang"]
    if lang == "go":  # upstream runs goimports on an answer (not on a reference file)
        fix = f"goimports -w {source} 2>/dev/null; " if goimports else ""
        return ["/bin/sh", "-c", f"{fix}exec go build -o {target} {source}"]
    argv = ["gcc" if lang == "c" else "g++", source, "-o", target, *_LIBS, *_xml2_flags()]
    if task.metadata.get("asan"):
        argv.append("-fsanitize=address")
    return argv


def _pytest_argv(test_file: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pytest",
        test_file,
        "-k",
        "not _unsafe",
        "-p",
        _PLUGIN,
        "-p",
        "pytest_timeout",
        "-p",
        "no:cacheprovider",
        "-q",
        "--tb=short",
        "-o",
        "addopts=",
        "--rootdir",
        ".",
    ]


def _env(settings: RunSettings) -> dict[str, str]:
    env = {
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
        "V2S_RESULTS": _RESULTS,
        "V2S_TEST_TIMEOUT": f"{settings.test_timeout_s:g}",
        "GO111MODULE": "off",
        "GOPATH": _GOPATH,
        "GOCACHE": "/tmp/go-cache",
        "NODE_PATH": _NODE_PATH,
    }
    return env


def _verdicts(work: Path, task: Task) -> RunOutcome:
    """Read the collector's JSON: functional and security verdicts, failing test ids."""
    try:
        data = json.loads((work / _RESULTS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return RunOutcome("error", False, None, detail="the test session wrote no results")
    tests = data.get("tests") or []
    if not tests:
        errors = data.get("collection_errors") or ["no test collected"]
        return RunOutcome("collection_error", False, None, detail=str(errors[-1])[-500:])
    failing: dict[str, list[str]] = {"functionality": [], "security": []}
    counts = {"functionality": 0, "security": 0}
    first_error = ""
    for test in tests:
        kind = test.get("kind")
        if kind not in counts:
            continue
        counts[kind] += 1
        if not test.get("passed"):
            failing[kind].append(str(test.get("id", "")).split("::", 1)[-1])
            first_error = first_error or str(test.get("error", ""))
    secure: bool | None = not failing["security"]
    detail = first_error[-300:]  # the first failure's message, e.g. a timeout
    if task.metadata.get("needs_recheck"):
        secure = None
        detail = "security tests need upstream's recheck binary (ReDoS), unavailable: not judged"
    return RunOutcome("ran", not failing["functionality"], secure, failing, counts, detail)


def run_sample(
    task: Task, program: str, settings: RunSettings, *, goimports: bool = True
) -> RunOutcome:
    """Build ``program`` for ``task`` and run its test file in the sandbox."""
    from vul2safe.sandbox import ExecStatus, SandboxLimits, run_command

    lang, prefix = task.metadata["lang"], task.metadata["file_prefix"]
    work = Path(tempfile.mkdtemp(prefix="vul2safe-cweval-"))
    try:
        source = f"{prefix}_task.{lang}"
        (work / source).write_text(program, encoding="utf-8")
        (work / f"{prefix}_test.py").write_text(task.tests or "", encoding="utf-8")
        (work / "pytest.ini").write_text(_PYTEST_INI, encoding="utf-8")
        shutil.copyfile(_COLLECT, work / f"{_PLUGIN}.py")
        (work / "compiled").mkdir()
        for path in work.iterdir():
            path.chmod(0o777 if path.is_dir() else 0o666)
        work.chmod(0o777)
        memory = None if task.metadata.get("asan") or lang == "go" else settings.memory_mb
        limits = SandboxLimits(
            timeout_s=settings.compile_timeout_s,
            memory_mb=memory,
            max_processes=256 if lang == "go" else 64,
            disk_mb=64,  # the work folder: sources, one binary, the verdicts (Go cache: /tmp)
        )
        elapsed = 0.0
        if lang in ("c", "cpp", "go"):
            built = run_command(
                _compile_argv(task, source, f"compiled/{prefix}_task", goimports),
                workdir=work,
                limits=limits,
                env=_env(settings),
                allow_unsafe=settings.allow_unsafe,
            )
            elapsed += built.duration_s
            if built.status is not ExecStatus.PASSED:
                tail = (built.stderr_tail or built.detail)[-500:]
                return RunOutcome("compile_error", False, None, detail=tail, duration_s=elapsed)
        result = run_command(
            _pytest_argv(f"{prefix}_test.py"),
            workdir=work,
            limits=replace(limits, timeout_s=settings.timeout_s),
            env=_env(settings),
            allow_unsafe=settings.allow_unsafe,
        )
        elapsed += result.duration_s
        if result.status in (ExecStatus.TIMEOUT, ExecStatus.KILLED):
            return RunOutcome(
                result.status.value, False, None, detail=result.detail, duration_s=elapsed
            )
        outcome = _verdicts(work, task)
        if outcome.status == "error":
            outcome.detail = (result.stderr_tail or result.stdout_tail or result.detail)[-500:]
        outcome.duration_s = elapsed
        return outcome
    finally:
        shutil.rmtree(work, ignore_errors=True)
