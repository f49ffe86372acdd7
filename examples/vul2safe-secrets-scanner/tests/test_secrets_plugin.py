"""The installed example plugin is found through its entry point and scans for real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def _vul2safe(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VUL2SAFE_HOME": str(home)}  # a private cache for this test
    return subprocess.run(
        [sys.executable, "-m", "vul2safe", *args], capture_output=True, text=True, env=env
    )


def test_entry_point_plugin_is_listed_and_scans(tmp_path: Path) -> None:
    proc = _vul2safe("plugins", "--json", home=tmp_path / "home")
    assert proc.returncode == 0, proc.stderr
    rows = {row["name"]: row for row in json.loads(proc.stdout)}
    assert rows["secrets"]["provides"] == {"scanner": ["secrets"]}
    assert rows["secrets"]["distribution"]["name"] == "vul2safe-secrets-scanner"

    code = tmp_path / "code"
    code.mkdir()
    (code / "settings.py").write_text('DB_PASSWORD = "hunter22"\nDEBUG = False\n')
    proc = _vul2safe("scan", str(code), "-s", "secrets", "-f", "json", home=tmp_path / "home")
    assert proc.returncode == 1, proc.stderr
    (result,) = json.loads(proc.stdout)["results"]
    assert [(f["rule_id"], f["start_line"], f["cwe"]) for f in result["findings"]] == [
        ("hardcoded-password", 1, ["CWE-798"])
    ]
