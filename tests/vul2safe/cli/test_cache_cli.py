"""`vul2safe cache info|clear` on a real cache filled by a real scan."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vul2safe", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=300,
    )


def _info() -> dict:
    proc = run_cli("cache", "info", "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_info_counts_entries_by_kind_and_clear_frees_one_kind(tmp_path: Path) -> None:
    from vul2safe.cache import Cache

    assert _info()["kinds"] == {}
    (tmp_path / "run.py").write_text("import os\n\ndef run(c):\n    os.system(c)\n")
    scan = run_cli("scan", str(tmp_path), "--scanner", "bandit", "--format", "json")
    assert scan.returncode in (0, 1), scan.stderr
    cache = Cache()
    cache.put_many("teacher", {"a": {"reply": "x"}, "b": {"reply": "y"}})
    cache.close()

    info = _info()
    assert info["path"] == str(Path(os.environ["VUL2SAFE_HOME"]) / "cache.sqlite3")
    assert info["kinds"]["teacher"]["entries"] == 2
    scan_kinds = [k for k in info["kinds"] if k.startswith("scan")]
    assert scan_kinds and all(info["kinds"][k]["entries"] >= 1 for k in scan_kinds)
    assert info["bytes_on_disk"] > 0

    cleared = run_cli("cache", "clear", "--kind", "teacher", "--yes")
    assert cleared.returncode == 0, cleared.stderr
    assert "deleted 2 entries" in cleared.stdout
    after = _info()["kinds"]
    assert "teacher" not in after
    assert set(scan_kinds) <= set(after)

    table = run_cli("cache", "info")
    assert table.returncode == 0 and scan_kinds[0] in table.stdout


def test_clear_unknown_kind_is_one_line_error() -> None:
    proc = run_cli("cache", "clear", "--kind", "nope", "--yes")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "no cached entries of kind 'nope'" in proc.stderr
    assert "Traceback" not in proc.stderr
