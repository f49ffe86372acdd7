"""What the scanners that drive a command-line tool share: finding it and asking its version.

Not a plugin (no hooks); the leading underscore keeps it out of ``DEFAULT_PLUGINS``' way.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


def installed_command(name: str) -> tuple[str, ...] | None:
    """A console script ``name`` beside the running interpreter (its virtualenv), else on
    PATH: the interpreter's own environment wins over whatever PATH happens to hold."""
    sibling = Path(sys.executable).parent / name
    if sibling.is_file():
        return (str(sibling),)
    found = shutil.which(name)
    return (found,) if found else None


def cli_version(command: tuple[str, ...] | None) -> str:
    """The last word of the first line ``command --version`` prints (what actually runs)."""
    if command is None:
        return "unavailable"
    try:
        out = subprocess.run(
            [*command, "--version"], capture_output=True, text=True, check=False, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    first = (out.stdout or out.stderr).strip().splitlines()
    return first[0].split()[-1] if first else "unknown"
