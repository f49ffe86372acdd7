"""One way to write a file that readers may be watching: temp file in the same folder, then rename.

Results, leaderboards and stage files are read by people and by resumed runs; a crash or Ctrl-C
half-way through a plain ``write_text`` would leave a truncated file that looks complete.
``os.replace`` within one folder is atomic on POSIX, so a reader sees the old file or the new
one, never a mix. (Hand-written because the standard library has no such helper and the few
lines do not justify a dependency.)
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_writer(path: Path | str, mode: int = 0o644) -> Iterator[IO[str]]:
    """Yield a text handle; on a clean exit the content replaces ``path`` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)  # mkstemp makes the file private; outputs are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path | str, text: str) -> None:
    """Replace ``path`` with ``text`` atomically."""
    with atomic_writer(path) as handle:
        handle.write(text)


def write_json_atomic(path: Path | str, data: Any) -> None:
    """Replace ``path`` with indented UTF-8 JSON (and a final newline) atomically."""
    with atomic_writer(path) as handle:
        json.dump(data, handle, indent=2, ensure_ascii=False)
        handle.write("\n")
