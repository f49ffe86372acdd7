"""Where vul2safe keeps its state (cache, merged rule packs). ``VUL2SAFE_HOME`` overrides."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """``$VUL2SAFE_HOME`` or ``$XDG_CACHE_HOME/vul2safe`` or ``~/.cache/vul2safe``, created."""
    explicit = os.environ.get("VUL2SAFE_HOME")
    if explicit:
        path = Path(explicit)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        path = Path(base) / "vul2safe"
    path.mkdir(parents=True, exist_ok=True)
    return path
